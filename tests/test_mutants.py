"""The graded cells tell wrong solutions apart: every realistic wrong solution kept in
tests/mutants/ loses points on its own part, and the harness itself can fail."""
from pathlib import Path

import pytest

from vizlib.course import grading, mutants

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("assignment", grading.assignment_ids(ROOT))
def test_every_mutant_loses_points_on_its_own_part(assignment, record_property):
    report = mutants.run(assignment, ROOT)
    record_property("mutation score", report.summary())
    assert len(report.outcomes) >= 3 * len(mutants.program(assignment, ROOT).solutions)
    assert not report.problems, "\n".join(report.problems)
    assert report.score == 1.0


def _one(cell, **kw):
    return mutants.Mutant(name=kw.pop("name", "test mutant"), cell=cell, **kw)


def test_the_harness_reports_survivors_and_scores_hangs_and_warnings_as_nbgrader_does():
    # a "mistake" that changes nothing must be reported as surviving; an endless loop is a failed
    # cell (as nbgrader's cell timeout makes it), not a hung harness
    survivor = _one("total_variation", name="no change", edits=(("beta / 2", "beta / 2"),))
    hang = _one("total_variation", name="hangs", source="def total_variation(x, beta):\n    while True:\n        pass\n")
    # a cell that writes to stderr scores zero under nbgrader, so in the harness too
    noisy = _one("total_variation", name="prints", edits=(("return ", "print('debug', file=__import__('sys').stderr)\n    return "),))
    report = mutants.run("assignment3", ROOT, mutants=[survivor, hang, noisy], min_per_function=0, timeout=2)
    survived, hung, printed = report.outcomes
    assert "wrote to stderr, which nbgrader scores as failing: debug" in printed.failed["test_total_variation"]
    assert not survived.caught and not survived.failed
    assert any("'no change' is not caught" in p for p in report.problems)
    assert hung.caught and "ran past 2 s" in hung.failed["test_total_variation"]


def test_mutants_that_cannot_apply_or_are_malformed_are_named(tmp_path):
    with pytest.raises(ValueError, match="does not apply to ascent_step: 'nowhere' is not in"):
        mutants.run("assignment3", ROOT, mutants=[_one("ascent_step", edits=(("nowhere", "x"),))])
    with pytest.raises(ValueError, match="names 'no_such_cell', which is not a solution cell"):
        mutants.run("assignment3", ROOT, mutants=[_one("no_such_cell", source="pass")])
    (tmp_path / "tests" / "mutants").mkdir(parents=True)
    (tmp_path / "tests" / "mutants" / "a.toml").write_text('[[mutant]]\nname = "x"\ncell = "c"\nold = "a"\n')
    with pytest.raises(ValueError, match="a.toml, mutant 1 \\('x'\\): give either 'source' or both 'old' and 'new'"):
        mutants.load_mutants("a", tmp_path)


def test_check_assignments_mutants_prints_the_score(capsys):
    assert grading.main(["check", "--mutants", "--course", str(ROOT), "assignment3"]) == 0
    out = capsys.readouterr().out
    assert f"course: {ROOT}" in out and "assignment3: 21/21 mutants caught (100%)" in out
