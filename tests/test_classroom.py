"""Grading a class: every submission graded once, with the score it deserves and the reason.

The synthetic class (vizlib.course.synthetic) is built from the real assignments; a sample with
one submission of every kind is graded here, the whole class of 200 in the opt-in slow test.
"""
import csv
from pathlib import Path

import pytest

from vizlib.config import VizlibWarning

from vizlib.course import classroom, sandbox, synthetic
from vizlib.course.grading import assignment_ids

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "assignment1"
# mutants graded end to end by nbgrader: their expected scores come from the mutation harness's
# verified lists of failing cells, so this is the check that the harness agrees with `vizlib grade`
GRADED_MUTANTS = ("hook never removed", "normalises the caller's tensor in place",
                  "only forwards to vizlib's reference")


RESOURCE_ATTACKS = ("hostile: allocates 64 GiB", "hostile: forks without end", "hostile: fills the disk",
                    "hostile: prints gigabytes")


def _rows(csv_path: Path) -> dict[str, dict]:
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    students = [r["student"] for r in rows]
    assert len(students) == len(set(students)), "a submission appears twice"
    return {r["student"]: r for r in rows}


def _check(expected, rows):
    assert sorted(rows) == sorted(e.student for e in expected), "every input appears exactly once"
    wrong = []
    for e in expected:
        row = rows[e.student]
        score = float(row["score"])
        if e.at_most:  # a hostile submission: never more than its honest part, whatever its attack destroyed
            if score > e.score or e.reason not in row["reason"]:
                wrong.append(f"{e.student} ({e.kind}): expected at most {e.score:g}, got {row['score']} / {row['reason']!r}")
            continue
        if score != e.score or e.reason not in row["reason"] or (not e.reason and row["reason"]):
            wrong.append(f"{e.student} ({e.kind}): expected {e.score:g} / {e.reason!r}, "
                         f"got {row['score']} / {row['reason']!r}")
    assert not wrong, "\n".join(wrong)


def test_one_submission_of_every_kind_gets_the_expected_score_and_reason(tmp_path):
    """Every failure, mistake and (where the machine can sandbox) every attack on the grader in one
    class run: each scores only what its honest answers earn, and every other entry is graded
    exactly as it is without them."""
    a = synthetic._Assignment(ASSIGNMENT, ROOT)
    hostile = not sandbox.unavailable()  # the attacks are only safe to run in the sandbox
    kinds = [k for k, *_ in synthetic.failure_kinds(a, ROOT)] + [
        "correct", "blank", *(f"mistake: {name}" for name in GRADED_MUTANTS)]
    if hostile:
        # the attacks on the grader itself; those on its resources (memory, fork bomb, disk, endless
        # printing) are checked at the sandbox in test_sandbox, and end to end in the slow class of 200
        kinds += [k for k, *_ in synthetic.hostile_kinds(a) if k not in RESOURCE_ATTACKS]
    expected = synthetic.make_class(ASSIGNMENT, tmp_path / "class", n=len(kinds), kinds=kinds, hostile=hostile)
    assert len(expected) == len(kinds)
    canary = tmp_path / "elsewhere" / "grades.csv"  # another run's grades, which no submission may touch
    canary.parent.mkdir()
    canary.write_text("student,score\nbob,3\n")
    summary = classroom.grade_class(ASSIGNMENT, tmp_path / "class" / "submissions", tmp_path / "out",
                                    jobs=2, cell_timeout=8, progress=False)
    assert summary["sandboxed"] is hostile
    _check(expected, _rows(summary["csv"]))
    assert canary.read_text() == "student,score\nbob,3\n"
    assert not list(tmp_path.rglob("vizlib-hostile-marker")) and not (ROOT / "vizlib-hostile-marker").exists()
    feedback = sorted(p.stem for p in (tmp_path / "out" / "feedback").glob("*.html"))
    graded = [e.student for e in expected if e.kind in {"correct", "blank", "edited read-only test"}]
    assert set(graded) <= set(feedback)
    page = (tmp_path / "out" / "feedback" / f"{graded[0]}.html").read_text()
    assert "test_normalize_filter" in page or "normalize_filter" in page
    big = next(e.student for e in expected if e.kind == "prints megabytes")
    assert (tmp_path / "out" / "feedback" / f"{big}.html").stat().st_size < 2_000_000


def test_without_a_sandbox_grading_warns_once_and_every_row_says_so(tmp_path):
    expected = synthetic.make_class(ASSIGNMENT, tmp_path / "class", n=2, kinds=["empty file", "not a notebook"])
    with pytest.warns(VizlibWarning, match="WITHOUT a sandbox") as caught:
        summary = classroom.grade_class(ASSIGNMENT, tmp_path / "class" / "submissions", tmp_path / "out",
                                        progress=False, sandboxed=False)
    assert len([w for w in caught if "sandbox" in str(w.message)]) == 1
    rows = _rows(summary["csv"])
    assert summary["sandboxed"] is False and len(rows) == len(expected)
    assert all(classroom.UNSANDBOXED in r["reason"] for r in rows.values())


def test_bad_arguments_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown assignment 'assignment99'"):
        classroom.grade_class("assignment99", tmp_path, tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        classroom.grade_class(ASSIGNMENT, tmp_path / "nowhere", tmp_path / "out")


def test_two_entries_for_one_student_are_both_graded(tmp_path):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / "assignment1.ipynb").write_text("{}")
    (tmp_path / "alice.ipynb").write_text("{}")
    (tmp_path / ".DS_Store").write_text("")
    subs = classroom.find_submissions(tmp_path, ASSIGNMENT)
    assert sorted(s.student for s in subs) == ["alice", "alice.ipynb"]


@pytest.mark.slow
def test_the_whole_synthetic_class_of_200(tmp_path):
    for assignment in assignment_ids(ROOT):
        hostile = not sandbox.unavailable()  # every attack, the resource ones included
        expected = synthetic.make_class(assignment, tmp_path / assignment, n=200, hostile=hostile)
        summary = classroom.grade_class(assignment, tmp_path / assignment / "submissions",
                                        tmp_path / assignment / "out", cell_timeout=15, progress=False)
        print(f"{assignment}: {summary['graded']} submissions in {summary['seconds']:.0f} s, "
              f"{summary['per_minute']:.1f} per minute")
        _check(expected, _rows(summary["csv"]))
