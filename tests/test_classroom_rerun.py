"""Grading a class again: only what changed, everything after a test is fixed, a killed run resumed,
and the course graded is the one named. (Apart from test_classroom.py so the two run in parallel.)"""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_classroom import ASSIGNMENT, ROOT, _check, _rows
from vizlib.course import classroom, synthetic
from vizlib.course.root import CourseNotFoundError, course_root


def test_a_second_run_grades_only_new_or_changed_submissions(tmp_path):
    subs = tmp_path / "subs"
    expected = synthetic.make_class(ASSIGNMENT, tmp_path / "class", n=4,
                                    kinds=["empty file", "no notebook", "not a notebook", "correct"])
    (tmp_path / "class" / "submissions").rename(subs)
    out = tmp_path / "out"
    first = classroom.grade_class(ASSIGNMENT, subs, out, jobs=2, progress=False)
    assert (first["graded"], first["unchanged"]) == (4, 0)
    _three_shards_merged_equal_one_run(subs, out / "grades.csv", tmp_path / "shards")
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


def _three_shards_merged_equal_one_run(subs, unsharded_csv, folder):
    """``--shard K/3`` three times, then ``--merge``: the same grades.csv, byte for byte; a missing,
    repeated or foreign shard is refused."""
    outs = [folder / f"shard{k}" for k in (1, 2, 3)]
    graded = []
    for k, out in enumerate(outs, 1):
        graded += [r for r in _rows(classroom.grade_class(ASSIGNMENT, subs, out, jobs=2, progress=False,
                                                          shard=(k, 3))["csv"])]
    assert sorted(graded) == sorted(_rows(unsharded_csv)), "the shards cover the class exactly once"
    merged = classroom.merge(outs, folder / "merged")
    assert merged.read_bytes() == unsharded_csv.read_bytes()
    with pytest.raises(ValueError, match="missing shard 3/3"):
        classroom.merge(outs[:2], folder / "bad")
    with pytest.raises(ValueError, match="shard 2/3 given twice"):
        classroom.merge([*outs, outs[1]], folder / "bad")
    with pytest.raises(ValueError, match="not the output of a sharded run"):
        classroom.merge([*outs, unsharded_csv.parent], folder / "bad")
    assert classroom.parse_shard("2/3") == (2, 3)
    for bad in ("0/3", "4/3", "3", "a/b"):
        with pytest.raises(ValueError, match="K/N"):
            classroom.parse_shard(bad)


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


def test_a_slow_read_only_instructor_cell_does_not_cost_the_student(tmp_path):
    # the imports cell is the instructor's: a cold `import torch` on a busy machine must not zero
    # a correct submission under a tight per-cell limit (it did, twice, in a class of 200)
    course = _course_copy(tmp_path / "course")
    source = course / "solutions" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    nb = json.loads(source.read_text())
    imports = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("grade_id") == "imports")
    imports["source"] = "import time\ntime.sleep(8)\n" + "".join(imports["source"])
    source.write_text(json.dumps(nb))
    subprocess.run([sys.executable, "-m", "vizlib.course.grading", "release", "--course", str(course)],
                   check=True, capture_output=True)
    expected = synthetic.make_class(ASSIGNMENT, tmp_path / "class", n=1, kinds=["correct"], root=course)
    summary = classroom.grade_class(ASSIGNMENT, tmp_path / "class" / "submissions", tmp_path / "out",
                                    jobs=1, cell_timeout=4, progress=False, root=course)
    _check(expected, _rows(summary["csv"]))


def test_a_prepared_template_is_kept_and_reused_until_the_course_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    course = tmp_path / "course"
    shutil.copytree(ROOT, course, ignore=shutil.ignore_patterns(".venv", ".git", "build", "lectures", "bench"))
    first = classroom.prepare_template(ASSIGNMENT, tmp_path / "t1", root=course)
    (kept,) = classroom.template_cache().iterdir()
    start = time.perf_counter()
    again = classroom.prepare_template(ASSIGNMENT, tmp_path / "t2", root=course)
    assert again == first and time.perf_counter() - start < 2, "the second run copies the kept template"
    assert sorted(p.name for p in (tmp_path / "t2").iterdir()) == sorted(p.name for p in (tmp_path / "t1").iterdir())
    nb = next((course / "solutions" / ASSIGNMENT).glob("*.ipynb"))
    nb.write_text(nb.read_text().replace("assert receptive_field_size([]) == 1", "assert receptive_field_size([]) == 1 "))
    classroom.prepare_template(ASSIGNMENT, tmp_path / "t3", root=course)     # a changed test: a new template
    assert len(list(classroom.template_cache().iterdir())) == 2 and kept.exists()
