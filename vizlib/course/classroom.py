"""Grade a whole class: a folder of submissions in, a grades CSV and one feedback page per student out.

    vizlib grade assignment1 downloads/ -o grades/          # one worker per core
    vizlib grade assignment1 downloads/ -o grades/ --jobs 4 --cell-timeout 60

The submissions folder holds one entry per student: a folder named for the student holding the
notebook (``alice/assignment1.ipynb``, or nbgrader's ``alice/assignment1/assignment1.ipynb``), or a
notebook file named for the student (``alice.ipynb``). Every entry appears in ``grades.csv`` exactly
once, with its score, the score of every graded cell and, where something went wrong, the reason:

- an empty, truncated or corrupted file, a folder without a notebook, a notebook of another
  assignment: zero, with the reason;
- a read-only graded cell that was edited: the original is restored before grading (nbgrader does
  this) and the CSV says so; a graded cell that was deleted scores zero;
- a cell that runs past ``cell_timeout`` is interrupted and the rest of the notebook still runs
  (the instructor's read-only cells, such as the imports, get ten times the limit);
  a kernel that dies scores zero; a submission whose grading outlives its whole budget is killed;
- megabytes of printed output are cut to ``MAX_OUTPUT_CHARS`` per output in the feedback.

Each submission is graded by nbgrader in a child process with a course folder of its own (so
workers share no gradebook and a crash takes down one submission only). Results are appended to
``.state/results.jsonl`` in the output folder as each submission finishes, keyed by the
submission's SHA-256, the assignment's tests (the SHA-256 of its source folder), vizlib's version
and the mode: a second run grades only new or changed submissions, and all of them again after a
test is fixed (the summary says why each was regraded); a run killed midway resumes where it
stopped without losing or double-counting anything. The course graded is the folder with
``nbgrader_config.py`` at or above the current directory, or ``--course DIR``.
"""
from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__, cli
from .grading import assignment_ids, cell_text, nbgrader_api, nbgrader_environment, scratch_course
from .root import course_root

MAX_OUTPUT_CHARS = 20_000
STATE_FILE = Path(".state") / "results.jsonl"
TEMPLATE_VERSION = 1


@dataclass(frozen=True)
class Submission:
    """One entry of the submissions folder: ``student`` id, the ``entry`` it came from, and the
    ``notebook`` to grade (``None`` when the entry holds none, with ``problem`` saying why)."""
    student: str
    entry: Path
    notebook: Path | None
    problem: str = ""


# ----------------------------------------------------------------------------------------
# Finding the submissions
# ----------------------------------------------------------------------------------------

def _pick_notebook(folder: Path, assignment: str) -> tuple[Path | None, str]:
    notebooks = sorted(p for p in folder.rglob("*.ipynb")
                       if ".ipynb_checkpoints" not in p.parts and not p.name.startswith("."))
    if not notebooks:
        return None, f"no notebook in the submission (expected {assignment}.ipynb)"
    named = [p for p in notebooks if p.name == f"{assignment}.ipynb"]
    if len(named) == 1:
        return named[0], ""
    if len(notebooks) == 1:
        return notebooks[0], ""
    return None, (f"{len(notebooks)} notebooks and none is {assignment}.ipynb: "
                  + ", ".join(str(p.relative_to(folder)) for p in notebooks[:5]))


def find_submissions(folder: Path, assignment: str) -> list[Submission]:
    """Every entry of ``folder`` as a :class:`Submission` (hidden files are skipped).

    The student id is the folder's name or the notebook's stem; a file that is not a notebook, or
    a second entry with the same stem (``alice/`` and ``alice.ipynb``), keeps its full name.
    Raises ``FileNotFoundError`` if ``folder`` is not a folder.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"submissions folder {folder} does not exist or is not a folder")
    found: dict[str, Submission] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name.startswith("__"):
            continue
        if entry.is_dir():
            notebook, problem = _pick_notebook(entry, assignment)
            sub = Submission(entry.name, entry, notebook, problem)
        elif entry.suffix == ".ipynb":
            sub = Submission(entry.stem, entry, entry)
        else:
            sub = Submission(entry.name, entry, None,
                             f"{entry.name} is not a notebook (expected a .ipynb file or a folder)")
        if sub.student in found:  # alice/ and alice.ipynb: both are graded, under their full names
            sub = Submission(entry.name, sub.entry, sub.notebook, sub.problem)
        found[sub.student] = sub
    return list(found.values())


def _digest(sub: Submission) -> str:
    h = hashlib.sha256(sub.problem.encode())
    if sub.notebook is not None:
        h.update(sub.notebook.read_bytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------
# The course template: released once per run, copied for each submission
# ----------------------------------------------------------------------------------------

def _cells(nb: dict) -> dict[str, dict]:
    """grade_id -> {source, grade, locked, solution, points} of the nbgrader cells of ``nb``."""
    cells = {}
    for cell in nb.get("cells", []):
        meta = cell.get("metadata", {}).get("nbgrader")
        if not meta or "grade_id" not in meta:
            continue
        cells[meta["grade_id"]] = {
            "source": cell_text(cell),
            "grade": bool(meta.get("grade")), "locked": bool(meta.get("locked")),
            "solution": bool(meta.get("solution")), "points": float(meta.get("points", 0) or 0),
        }
    return cells


def prepare_template(assignment: str, dest: Path, root: Path | None = None) -> dict:
    """Write a course folder for ``assignment`` (source, release, gradebook) to ``dest`` and return
    the facts grading needs: notebook name, graded cells and points, read-only cells' sources."""
    root = course_root(root)
    if assignment not in assignment_ids(root):
        raise ValueError(f"unknown assignment {assignment!r}; the course has {assignment_ids(root)}")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with nbgrader_environment(quick=False):
        scratch_course(root, assignment, dest)
        result = nbgrader_api(dest).generate_assignment(assignment, force=True)
    if not result.get("success"):
        raise RuntimeError(f"nbgrader could not release {assignment}:\n{result.get('log', '')}")
    (source_nb,) = sorted((dest / "release" / assignment).glob("*.ipynb"))
    release_cells = _cells(json.loads(source_nb.read_text()))
    others = {}
    for other in assignment_ids(root):
        if other != assignment:
            for nb in (root / "solutions" / other).glob("*.ipynb"):
                others[other] = sorted(_cells(json.loads(nb.read_text())))
    facts = {
        "version": TEMPLATE_VERSION, "assignment": assignment, "notebook": source_nb.name,
        "graded": {k: c["points"] for k, c in release_cells.items() if c["grade"]},
        "readonly": {k: c["source"] for k, c in release_cells.items() if c["locked"]},
        "others": others,
    }
    (dest / "facts.json").write_text(json.dumps(facts))
    return facts


# ----------------------------------------------------------------------------------------
# Grading one submission (in a child process)
# ----------------------------------------------------------------------------------------

def _zero(facts: dict, reason: str) -> dict:
    return {"cells": {k: 0.0 for k in facts["graded"]}, "reasons": [reason]}


def _inspect(nb_path: Path, facts: dict) -> tuple[dict | None, list[str]]:
    """Read the submitted notebook and compare it with the release. Returns (notebook or None if
    it cannot be graded, reasons)."""
    data = nb_path.read_bytes()
    if not data.strip():
        return None, ["empty file"]
    try:
        nb = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [f"corrupted notebook: not valid JSON ({exc.__class__.__name__} near byte "
                      f"{getattr(exc, 'pos', getattr(exc, 'start', '?'))})"]
    try:
        import nbformat
        nbformat.validate(nbformat.from_dict(nb) if nb.get("nbformat") == 4 else nb)
        if nb.get("nbformat") != 4:
            raise ValueError(f"nbformat {nb.get('nbformat')!r}, expected 4")
    except Exception as exc:  # nbformat raises several kinds
        return None, [f"corrupted notebook: not a valid Jupyter notebook ({str(exc).splitlines()[0][:120]})"]
    cells = _cells(nb)
    ours = set(facts["graded"]) | set(facts["readonly"])
    # cell ids every assignment has ("intro", "imports") say nothing about which one this is
    shared = set.intersection(ours, *map(set, facts["others"].values())) if facts["others"] else set()
    overlap = {name: len(cells.keys() & (set(ids) - shared)) for name, ids in facts["others"].items()}
    mine = len(cells.keys() & (ours - shared))
    best = max(overlap, key=overlap.get, default=None)
    if best is not None and overlap[best] > mine:
        return None, [f"belongs to {best}, not {facts['assignment']}"]
    if mine == 0:
        return None, [f"not a copy of {facts['assignment']} (it has none of the assignment's cells)"]
    reasons = []
    for grade_id in facts["graded"]:
        if grade_id not in cells:
            reasons.append(f"graded cell {grade_id} deleted (scores 0)")
    for grade_id, source in facts["readonly"].items():
        if grade_id in cells and cells[grade_id]["source"].strip() != source.strip():
            reasons.append(f"read-only cell {grade_id} edited (the original was restored for grading)")
    return nb, reasons


def _cap_outputs(nb: dict) -> int:
    """Cut every output longer than MAX_OUTPUT_CHARS; return how many characters were cut."""
    cut = 0

    def shorten(text):
        nonlocal cut
        text = "".join(text) if isinstance(text, list) else text
        if len(text) <= MAX_OUTPUT_CHARS:
            return text
        cut += len(text) - MAX_OUTPUT_CHARS
        return text[:MAX_OUTPUT_CHARS] + f"\n… [{len(text) - MAX_OUTPUT_CHARS:,} characters cut by the grader]"

    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []):
            if "text" in out:
                out["text"] = shorten(out["text"])
            for key, value in list(out.get("data", {}).items()):
                if key.startswith("text/"):
                    out["data"][key] = shorten(value)
    return cut


def _cell_errors(nb: dict) -> dict[str, list[str]]:
    """grade_id -> names of the errors its execution raised (a timed-out cell shows
    ``KeyboardInterrupt`` then ``CellTimeoutError``)."""
    errors: dict[str, list[str]] = {}
    for cell in nb.get("cells", []):
        grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                errors.setdefault(grade_id, []).append(out.get("ename", "error"))
    return errors


def grade_one(template: Path, student: str, notebook: Path, work: Path, cell_timeout: int) -> dict:
    """Autograde one notebook with nbgrader in a copy of ``template``. Returns
    ``{"cells": {grade_id: score}, "reasons": [...], "feedback": path or None}``."""
    from nbgrader.api import Gradebook

    facts = json.loads((template / "facts.json").read_text())
    assignment = facts["assignment"]
    nb, reasons = _inspect(notebook, facts)
    if nb is None:
        return _zero(facts, reasons[0])
    course = work / "course"
    shutil.copytree(template, course)
    target = course / "submitted" / student / assignment / facts["notebook"]
    target.parent.mkdir(parents=True)
    target.write_text(json.dumps(nb))
    api = nbgrader_api(course, cell_timeout)
    result = api.autograde(assignment, student, force=True, create=True)
    if not result.get("success"):
        log = (result.get("log") or "") + (result.get("error") or "")
        if "DeadKernelError" in log or "Kernel died" in log:
            return _zero(facts, "the kernel died while running the notebook (e.g. os._exit, a crash "
                                "or running out of memory): nothing could be graded")
        last = [line.strip() for line in log.splitlines() if line.strip()][-1:] or ["unknown error"]
        return _zero(facts, f"nbgrader could not grade it: {last[0][:200]}")
    graded_nb = course / "autograded" / student / assignment / facts["notebook"]
    out_nb = json.loads(graded_nb.read_text())
    cut = _cap_outputs(out_nb)
    if cut:
        graded_nb.write_text(json.dumps(out_nb))
        reasons.append(f"printed too much: {cut:,} characters of output cut from the feedback")
    cells = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for sub_nb in gb.find_submission(assignment, student).notebooks:
            for grade in sub_nb.grades:
                cells[grade.name] = float(grade.score or 0.0)
    errors = _cell_errors(out_nb)
    failed = [k for k in facts["graded"] if cells.get(k, 0.0) < facts["graded"][k]]
    timeouts = [k for k, names in errors.items() if "CellTimeoutError" in names]
    crashed = [f"{k} ({names[-1]})" for k, names in errors.items()
               if k not in facts["graded"] and "CellTimeoutError" not in names]
    if crashed:
        reasons.append("errors in cells: " + ", ".join(crashed))
    if timeouts:
        reasons.append(f"cell {', '.join(timeouts)} ran past the {cell_timeout} s limit and was interrupted")
    deleted = {r.split()[2] for r in reasons if r.endswith("deleted (scores 0)")}
    failed = [k for k in failed if k not in deleted]
    if failed:
        reasons.append("tests failed: " + ", ".join(
            f"{k} ({errors[k][-1]})" if k in errors else k for k in failed))
    feedback = None
    if api.generate_feedback(assignment, student, force=True).get("success"):
        page = course / "feedback" / student / assignment / facts["notebook"].replace(".ipynb", ".html")
        if page.exists():
            feedback = str(page)
    return {"cells": {k: cells.get(k, 0.0) for k in facts["graded"]}, "reasons": reasons,
            "feedback": feedback}


def _child(argv: list[str]) -> int:
    """``python -m vizlib.course.classroom --one TEMPLATE STUDENT NOTEBOOK WORK TIMEOUT OUT``"""
    template, student, notebook, work, timeout, out = argv
    result = grade_one(Path(template), student, Path(notebook), Path(work), int(timeout))
    Path(out).write_text(json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------
# The class
# ----------------------------------------------------------------------------------------

def _run_child(template: Path, sub: Submission, cell_timeout: int, budget: float,
               feedback_dir: Path, quick: bool) -> dict:
    facts = json.loads((template / "facts.json").read_text())
    if sub.notebook is None:
        return _zero(facts, sub.problem)
    with tempfile.TemporaryDirectory(prefix="vizlib-grade-one-") as tmp:
        work = Path(tmp)
        out = work / "result.json"
        env = dict(os.environ, VIZLIB_OFFLINE="1", PYTHONUNBUFFERED="1")
        if quick:
            env["VIZLIB_QUICK"] = "1"
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        cmd = [sys.executable, "-m", "vizlib.course.classroom", "--one", str(template), "student",
               str(sub.notebook.resolve()), str(work), str(cell_timeout), str(out)]
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=budget)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            return _zero(facts, f"grading took longer than {budget:.0f} s and was stopped")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode != 0 or not out.exists():
            tail = [l for l in err.decode(errors="replace").splitlines() if l.strip()][-1:] or ["no output"]
            return _zero(facts, f"the grader failed: {tail[0][:200]}")
        result = json.loads(out.read_text())
        if result.get("feedback"):
            feedback_dir.mkdir(parents=True, exist_ok=True)
            page = feedback_dir / f"{sub.student}.html"
            shutil.copy(result["feedback"], page)
            result["feedback"] = str(page.name)
        return result


def _load_state(path: Path) -> dict[str, dict]:
    """The last complete record per student (a line cut short by a kill is ignored)."""
    state = {}
    if path.exists():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
                state[record["student"]] = record
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return state


def _append(path: Path, record: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _write_csv(path: Path, records: list[dict], graded: dict[str, float]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "submission", "score", "max_score", *graded, "reason"])
        total = sum(graded.values())
        for r in records:
            cells = r["result"]["cells"]
            writer.writerow([r["student"], r["entry"], f"{sum(cells.values()):g}", f"{total:g}",
                             *(f"{cells.get(k, 0.0):g}" for k in graded),
                             "; ".join(r["result"]["reasons"])])
    os.replace(tmp, path)


def tests_digest(assignment: str, root: Path) -> str:
    """SHA-256 of what a grade depends on besides the submission: the assignment's source folder
    (its notebooks hold the hidden tests) and the template format."""
    h = hashlib.sha256(f"template {TEMPLATE_VERSION}".encode())
    folder = Path(root) / "solutions" / assignment
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _regrade_reason(previous: dict | None, record_key: dict) -> str:
    """Why a submission is graded again ("" when its last grade still holds)."""
    if previous is None:
        return "new"
    if previous.get("sha256") != record_key["sha256"]:
        return "changed"
    if previous.get("assignment") != record_key["assignment"]:
        return "graded for another assignment"
    if previous.get("tests") != record_key["tests"]:
        return "the assignment's tests changed"
    if previous.get("vizlib") != record_key["vizlib"]:
        return f"vizlib changed ({previous.get('vizlib', 'unknown')} -> {record_key['vizlib']})"
    if previous.get("quick") != record_key["quick"]:
        return "quick/full mode changed"
    return ""


def grade_class(assignment: str, submissions: Path, out: Path, *, root: Path | None = None,
                jobs: int | None = None, cell_timeout: int = 60, budget: float | None = None,
                quick: bool = True, progress: bool = True) -> dict:
    """Autograde every submission in ``submissions`` and write ``out/grades.csv`` and
    ``out/feedback/<student>.html``.

    Args:
        assignment: e.g. ``"assignment1"`` (a folder of ``solutions/``).
        submissions: folder with one entry per student (see the module docstring).
        out: output folder; its ``.state/`` lets a later run skip unchanged submissions.
        jobs: parallel workers (default: one per core).
        cell_timeout: seconds any one cell may run.
        budget: seconds one whole submission may take (default: a generous multiple of
            ``cell_timeout``); past it the grader is killed and the submission scores zero.
        quick: run the notebooks with ``VIZLIB_QUICK=1``.
        root: the course folder (default: :func:`~vizlib.course.root.course_root`).

    A submission is graded again when it is new or changed, or when what its last grade depended
    on changed: the assignment's tests (its source notebook), vizlib's version or the mode.

    Returns:
        ``{"csv": path, "graded": n, "unchanged": n, "why": {reason: n}, "seconds": s,
        "per_minute": rate}``.
    """
    start = time.perf_counter()
    root = course_root(root)
    if assignment not in assignment_ids(root):
        raise ValueError(f"unknown assignment {assignment!r}; the course at {root} has {assignment_ids(root)}")
    out = Path(out)
    subs = find_submissions(Path(submissions), assignment)
    state_path = out / STATE_FILE
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state = _load_state(state_path)
    jobs = max(1, jobs or os.cpu_count() or 1)
    with tempfile.TemporaryDirectory(prefix="vizlib-class-") as tmp:
        template = Path(tmp) / "template"
        facts = prepare_template(assignment, template, root)
        n_cells = len(facts["graded"]) + len(facts["readonly"])
        budget = budget or cell_timeout * (n_cells + 4) + 120
        tests = tests_digest(assignment, root)  # once: it hashes the whole source folder
        keys = {s.student: {"assignment": assignment, "sha256": _digest(s), "tests": tests,
                            "vizlib": __version__, "quick": quick} for s in subs}
        why = {s.student: _regrade_reason(state.get(s.student), keys[s.student]) for s in subs}
        todo = [s for s in subs if why[s.student]]
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(todo), desc=f"grading {assignment}", unit="submission")
        with cf.ThreadPoolExecutor(jobs) as pool:
            futures = {pool.submit(_run_child, template, s, cell_timeout, budget,
                                   out / "feedback", quick): s for s in todo}
            for future in cf.as_completed(futures):
                sub = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # never lose a submission to a grader bug
                    result = _zero(facts, f"the grader failed: {exc!r}"[:300])
                record = {"student": sub.student, "entry": sub.entry.name, **keys[sub.student],
                          "result": result}
                _append(state_path, record)
                state[sub.student] = record
                if bar is not None:
                    bar.update(1)
        if bar is not None:
            bar.close()
    records = [state[s.student] for s in subs]
    csv_path = out / "grades.csv"
    _write_csv(csv_path, records, facts["graded"])
    seconds = time.perf_counter() - start
    reasons: dict[str, int] = {}
    for s in todo:
        reasons[why[s.student]] = reasons.get(why[s.student], 0) + 1
    return {"csv": csv_path, "graded": len(todo), "unchanged": len(subs) - len(todo), "why": reasons,
            "seconds": seconds, "per_minute": len(todo) / seconds * 60 if todo else 0.0}


def add_arguments(parser) -> None:
    """``vizlib grade ASSIGNMENT SUBMISSIONS [-o OUT] ...``."""
    parser.description = ("Autograde a folder of submissions with nbgrader, in parallel: writes OUT/grades.csv "
                          "and OUT/feedback/<student>.html; a second run grades only new or changed submissions.")
    parser.add_argument("assignment", help="e.g. assignment1")
    parser.add_argument("submissions", help="folder with one notebook or folder per student")
    parser.add_argument("-o", "--out", default="grades", help="output folder (default: grades/)")
    parser.add_argument("-j", "--jobs", type=int, default=None, help="parallel workers (default: cores)")
    parser.add_argument("--cell-timeout", type=int, default=60, help="seconds per cell (default 60)")
    parser.add_argument("--full", action="store_true", help="run notebooks in full mode, not quick mode")
    parser.add_argument("--course", help="the course folder whose tests grade (default: the one with "
                                         "nbgrader_config.py at or above the current directory)")
    parser.set_defaults(run=_grade_command)


def _grade_command(args) -> int:
    try:
        root = course_root(args.course)
        print(f"course: {root}")
        summary = grade_class(args.assignment, Path(args.submissions), Path(args.out), jobs=args.jobs,
                              cell_timeout=args.cell_timeout, quick=not args.full, root=root)
    except (FileNotFoundError, ValueError) as exc:  # CourseNotFoundError is a ValueError
        print(f"vizlib grade: {exc}", file=sys.stderr)
        return 2
    why = ", ".join(f"{n} {reason}" if reason in ("new", "changed") else f"{n}: {reason}"
                    for reason, n in summary["why"].items())
    print(f"graded {summary['graded']} submissions ({why + '; ' if why else ''}{summary['unchanged']} unchanged) "
          f"in {summary['seconds']:.0f} s, {summary['per_minute']:.1f} per minute -> {summary['csv']}")
    return 0


def main(argv=None) -> int:
    """``python -m vizlib.course.classroom ...``: ``vizlib grade`` of the one command tree."""
    return cli.main(["grade", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        sys.exit(_child(sys.argv[2:]))
    sys.exit(main())
