"""Grading a class: every submission graded once, with the score it deserves and the reason.

The synthetic class (vizlib.course.synthetic) is built from the real assignments; a sample with
one submission of every kind is graded here, the whole class of 200 in the opt-in slow test.
"""
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vizlib.course import classroom, synthetic
from vizlib.course.grading import CourseNotFoundError, assignment_ids, course_root

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


def test_a_second_run_grades_only_new_or_changed_submissions(tmp_path):
    subs = tmp_path / "subs"
    expected = synthetic.make_class(ASSIGNMENT, tmp_path / "class", n=4,
                                    kinds=["empty file", "no notebook", "not a notebook", "correct"])
    (tmp_path / "class" / "submissions").rename(subs)
    out = tmp_path / "out"
    first = classroom.grade_class(ASSIGNMENT, subs, out, jobs=2, progress=False)
    assert (first["graded"], first["unchanged"]) == (4, 0)
    correct = next(e.student for e in expected if e.kind == "correct")
    empty = next(e.student for e in expected if e.kind == "empty file")
    (subs / empty / f"{ASSIGNMENT}.ipynb").write_bytes(b"{")          # changed
    (subs / "late.txt").write_text("sorry")                              # new
    second = classroom.grade_class(ASSIGNMENT, subs, out, jobs=2, progress=False)
    assert (second["graded"], second["unchanged"]) == (2, 3)
    rows = _rows(second["csv"])
    assert len(rows) == 5 and rows[correct]["score"] == "22"
    assert "corrupted notebook" in rows[empty]["reason"] and "not a notebook" in rows["late.txt"]["reason"]
    (subs / "late.txt").unlink()                                          # withdrawn: leaves the CSV
    assert "late.txt" not in _rows(classroom.grade_class(ASSIGNMENT, subs, out, progress=False)["csv"])


def test_a_fixed_test_regrades_everyone_and_says_why(tmp_path):
    course = _course_copy(tmp_path / "course")
    subs, out = tmp_path / "subs", tmp_path / "out"
    expected = synthetic.make_class(ASSIGNMENT, tmp_path / "class", n=2, kinds=["empty file", "correct"],
                                    root=course)
    (tmp_path / "class" / "submissions").rename(subs)
    first = classroom.grade_class(ASSIGNMENT, subs, out, jobs=2, progress=False, root=course)
    assert first["why"] == {"new": 2}
    again = classroom.grade_class(ASSIGNMENT, subs, out, jobs=2, progress=False, root=course)
    assert (again["graded"], again["unchanged"], again["why"]) == (0, 2, {})
    # the instructor fixes a test: every submission is graded again, with the reason
    source = course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = json.loads(source.read_text())
    graded = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade"))
    graded["source"] = "".join(graded["source"]).replace("### END HIDDEN TESTS", "assert True\n### END HIDDEN TESTS", 1)
    source.write_text(json.dumps(nb))
    fixed = classroom.grade_class(ASSIGNMENT, subs, out, jobs=2, progress=False, root=course)
    assert (fixed["graded"], fixed["why"]) == (2, {"the assignment's tests changed": 2})
    _check(expected, _rows(fixed["csv"]))


def _course_copy(dest: Path) -> Path:
    """A second course folder, as an instructor's other checkout would be."""
    dest.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", dest)
    for folder in ("solutions", "assignments", "tests/mutants"):
        shutil.copytree(ROOT / folder, dest / folder)
    return dest


def test_the_course_graded_is_the_one_here_or_named(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CourseNotFoundError, match="no course folder at or above .* or pass --course DIR"):
        course_root()
    assert classroom.main([ASSIGNMENT, str(tmp_path), "-o", str(tmp_path / "out")]) == 2
    assert "vizlib grade: no course folder at or above" in capsys.readouterr().err
    assert classroom.main([ASSIGNMENT, str(tmp_path), "--course", str(tmp_path)]) == 2
    assert "is not a course folder: it needs nbgrader_config.py and solutions/" in capsys.readouterr().err
    course = _course_copy(tmp_path / "other")
    monkeypatch.chdir(course / "solutions")                    # anywhere inside a course finds it
    assert course_root() == course.resolve()
    (tmp_path / "empty").mkdir()
    assert classroom.main([ASSIGNMENT, str(tmp_path / "empty"), "-o", str(tmp_path / "out")]) == 0
    assert f"course: {course.resolve()}" in capsys.readouterr().out


def test_a_run_killed_midway_resumes_without_losing_or_double_counting(tmp_path):
    expected = synthetic.make_class(ASSIGNMENT, tmp_path / "class", n=5, kinds=[
        "correct", "empty file", "no notebook", "corrupted notebook", "flat file, renamed"])
    subs, out = tmp_path / "class" / "submissions", tmp_path / "out"
    state = out / classroom.STATE_FILE
    proc = subprocess.Popen([sys.executable, "-m", "vizlib.course.classroom", ASSIGNMENT, str(subs),
                             "-o", str(out), "--jobs", "1"], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not (state.exists() and state.read_text().count("\n") >= 2):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = state.read_text().count("\n")
    assert 2 <= done < 5, "the kill should land midway"
    with open(state, "a") as f:
        f.write('{"student": "student000", "res')                          # a line cut by the kill
    summary = classroom.grade_class(ASSIGNMENT, subs, out, jobs=2, progress=False)
    assert summary["graded"] == 5 - done and summary["unchanged"] == done
    _check(expected, _rows(summary["csv"]))


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
