"""The graded cells tell wrong solutions apart: every realistic wrong solution kept in
tests/mutants/ loses points on its own part, and the harness itself can fail."""
from pathlib import Path

import pytest

from vizlib.course import contracts, grading, mutants, operators

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("assignment", grading.assignment_ids(ROOT))
def test_every_mistake_loses_points_on_its_own_part_and_every_correct_solution_keeps_them(assignment,
                                                                                        record_property):
    # the course's mutants, the blind set (written from the released text alone) and the alternative
    # correct solutions; then every generic operator at every site of every solution
    report = mutants.run(assignment, ROOT, generic=True)
    record_property("mutation score", report.summary())
    assert len(report.outcomes) >= 3 * len(mutants.program(assignment, ROOT).solutions)
    assert any(o.mutant.blind for o in report.outcomes)
    assert not report.problems, "\n".join(report.problems)
    assert report.score == 1.0
    generic = report.generic
    record_property("generic mutation score", generic.summary())
    assert not generic.problems, "\n".join(generic.problems)
    assert {o.status for o in generic.outcomes} <= {"caught", "equivalent", "does not apply"}


@pytest.mark.parametrize("assignment", grading.assignment_ids(ROOT))
def test_every_graded_function_states_its_contract_and_holds_each_clause(assignment):
    assert not contracts.problems(assignment, ROOT)
    found = contracts.clauses(assignment, ROOT)
    assert set(found) == set(mutants.program(assignment, ROOT).solutions)


def test_generic_operators_rewrite_one_site_each_and_name_it():
    source = ("def f(model, x, k=2):\n"
              "    y = x.detach().clone()\n"
              "    for i in range(k):\n"
              "        y = (y + 1).clamp(0, 1)\n"
              "    return y.mean(dim=1)\n")
    sites = operators.sites("f", source)
    by_op = {}
    for s in sites:
        by_op.setdefault(s.operator, []).append(s.where)
        compile(s.source, "<mutant>", "exec")
    assert sorted(by_op["drop_call"]) == ["(y + 1).clamp(0, 1)", "x.detach()", "x.detach().clone()"]
    assert by_op["hoist_method"] == ["y = (y + 1).clamp(0, 1)"]
    assert by_op["ignore_argument"] == ["k"] and by_op["whole_batch"] == ["y.mean(dim=1)"]
    assert set(by_op["flip_mode"]) == {"model", "x", "k"}
    assert len({s.source for s in sites}) == len(sites)          # every site its own mutant
    hoisted = next(s for s in sites if s.operator == "hoist_method").source
    assert "        y = y + 1\n    y = y.clamp(0, 1)\n" in hoisted
    # an argument operator applies only to a value of its kind (flip_mode to a module), and says so
    flip_model = next(s for s in sites if s.operator == "flip_mode" and s.where == "model").source
    for value, applies in (("torch.zeros(2, 3)", False), ("torch.nn.Linear(2, 2)", True)):
        ns = {}
        exec(flip_model, ns)
        ns["f"](eval(value, {"torch": __import__("torch")}), __import__("torch").zeros(1, 3))
        assert ns["_mut_state"]["applies"] is applies


def test_a_declared_equivalent_that_no_longer_survives_is_a_problem(tmp_path):
    import shutil
    shutil.copytree(ROOT / "solutions" / "assignment3", tmp_path / "solutions" / "assignment3")
    shutil.copytree(ROOT / "assignments" / "assignment3", tmp_path / "assignments" / "assignment3")
    (tmp_path / "tests" / "mutants").mkdir(parents=True)
    (tmp_path / "tests" / "mutants" / "assignment3.toml").write_text(
        '[[equivalent]]\ncell = "total_variation"\noperator = "arith"\nwhere = "beta / 2"\nreason = "wrong"\n')
    report = mutants.run_generic("assignment3", tmp_path, cells=["total_variation"])  # the smallest part
    assert report.outcomes and all(o.status in ("caught", "does not apply") for o in report.outcomes)
    assert any("[[equivalent]] arith @ 'beta / 2' matches no surviving generic mutant" in p for p in report.problems)


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


def test_check_assignments_mutants_prints_the_score(capsys, monkeypatch):
    # the runs themselves are tested above: here, what the command prints and returns
    kept = mutants.load_mutants("assignment3", ROOT)[:2]
    caught = mutants.Report("assignment3", [mutants.Outcome(m, {m.cell: "x"}, [m.cell]) for m in kept], [])
    survivor = operators.Site("ascent_step", "arith", "a + b", "")
    generic_report = mutants.GenericReport("assignment3", [mutants.GenericOutcome(survivor, "survived")],
                                    ["assignment3/ascent_step: generic mutant arith @ 'a + b' survives"])
    def fake_run(a, root, generic=False):
        caught.generic = generic_report if generic else None
        return caught

    monkeypatch.setattr(mutants, "run", fake_run)
    assert grading.main(["check", "--mutants", "--course", str(ROOT), "assignment3"]) == 0
    out = capsys.readouterr().out
    assert f"course: {ROOT}" in out and "assignment3: 2/2 mutants caught (100%)" in out
    assert grading.main(["check", "--mutants", "--generic", "--course", str(ROOT), "assignment3"]) == 1
    out = capsys.readouterr().out
    assert "assignment3: 0/1 generic mutants caught, 0 equivalent, 0 do not apply" in out
    assert "SURVIVED       ascent_step: arith @ a + b" in out and "1 problems" in out
    assert grading.main(["check", "--contracts", "--course", str(ROOT), "assignment1"]) == 0
    out = capsys.readouterr().out
    assert "  normalize_filter: " in out and "    dtype      the dtype of w" in out
