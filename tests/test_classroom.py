"""Grading a class: every submission graded once, with the score it deserves and the reason.

The synthetic class (vizlib.course.synthetic) is built from the real assignments; a sample with
one submission of every kind is graded here, the whole class of 200 in the opt-in slow test.
"""
import csv
from pathlib import Path

import pytest

from vizlib.course import classroom, synthetic
from vizlib.course.grading import assignment_ids

ROOT = Path(__file__).resolve().parents[1]
ASSIGNMENT = "assignment1"
# mutants graded end to end by nbgrader: their expected scores come from the mutation harness's
# verified lists of failing cells, so this is the check that the harness agrees with `vizlib grade`
GRADED_MUTANTS = ("hook never removed", "normalises the caller's tensor in place",
                  "only forwards to vizlib's reference")


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
        if float(row["score"]) != e.score or e.reason not in row["reason"] or (not e.reason and row["reason"]):
            wrong.append(f"{e.student} ({e.kind}): expected {e.score:g} / {e.reason!r}, "
                         f"got {row['score']} / {row['reason']!r}")
    assert not wrong, "\n".join(wrong)


def test_one_submission_of_every_kind_gets_the_expected_score_and_reason(tmp_path):
    a = synthetic._Assignment(ASSIGNMENT, ROOT)
    kinds = [k for k, *_ in synthetic.failure_kinds(a, ROOT)] + [
        "correct", "blank", *(f"mistake: {name}" for name in GRADED_MUTANTS)]
    expected = synthetic.make_class(ASSIGNMENT, tmp_path / "class", n=len(kinds), kinds=kinds)
    assert len(expected) == len(kinds)
    summary = classroom.grade_class(ASSIGNMENT, tmp_path / "class" / "submissions", tmp_path / "out",
                                    jobs=2, cell_timeout=8, progress=False)
    _check(expected, _rows(summary["csv"]))
    feedback = sorted(p.stem for p in (tmp_path / "out" / "feedback").glob("*.html"))
    graded = [e.student for e in expected if e.kind in {"correct", "blank", "edited read-only test"}]
    assert set(graded) <= set(feedback)
    page = (tmp_path / "out" / "feedback" / f"{graded[0]}.html").read_text()
    assert "test_normalize_filter" in page or "normalize_filter" in page
    big = next(e.student for e in expected if e.kind == "prints megabytes")
    assert (tmp_path / "out" / "feedback" / f"{big}.html").stat().st_size < 2_000_000


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
        expected = synthetic.make_class(assignment, tmp_path / assignment, n=200)
        summary = classroom.grade_class(assignment, tmp_path / assignment / "submissions",
                                        tmp_path / assignment / "out", cell_timeout=15, progress=False)
        print(f"{assignment}: {summary['graded']} submissions in {summary['seconds']:.0f} s, "
              f"{summary['per_minute']:.1f} per minute")
        _check(expected, _rows(summary["csv"]))
