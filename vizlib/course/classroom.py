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
workers share no gradebook and a crash takes down one submission only); its kernel runs in a
sandbox (:mod:`vizlib.course.sandbox`: no course files, no network, limits on memory, processes and
disk) and is watched between cells (:mod:`vizlib.course.guard`): a graded cell that ran while the
student's code had replaced a check scores zero, and the reason says what was replaced where.
``--shard K/N`` grades one of N slices and :func:`merge` joins the slices' folders. Results are appended to
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
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__, cli, config
from . import grading, sandbox
from .grading import assignment_ids, cell_text, nbgrader_api, nbgrader_environment, scratch_course
from .root import course_root

MAX_OUTPUT_CHARS = 20_000
STATE_FILE = Path(".state") / "results.jsonl"
SHARD_FILE = "shard.json"
TEMPLATE_VERSION = 2
UNSANDBOXED = "graded WITHOUT a sandbox: student code ran with the grader's rights"


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


def _template_key(assignment: str, root: Path) -> str:
    """What a prepared template depends on: every solution notebook of the course (the facts list the
    other assignments' cells too), the template format, nbgrader and the code that prepares it."""
    import nbgrader._version

    h = hashlib.sha256(f"{assignment} {TEMPLATE_VERSION} nbgrader {nbgrader._version.__version__}".encode())
    for module in (__file__, grading.__file__):
        h.update(Path(module).read_bytes())
    folder = Path(root) / "solutions"
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and ".ipynb_checkpoints" not in p.parts):
        h.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:32]


def template_cache() -> Path:
    """Where prepared templates are kept between runs: ``$XDG_CACHE_HOME/vizlib/templates``
    (default ``~/.cache``). Each is named by :func:`_template_key`, so none is ever stale."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vizlib" / "templates"


def prepare_template(assignment: str, dest: Path, root: Path | None = None) -> dict:
    """Write a course folder for ``assignment`` (source, release, gradebook) to ``dest`` and return
    the facts grading needs: notebook name, graded cells and points, read-only cells' sources.

    nbgrader's release takes seconds; a template prepared before from the same course, nbgrader and
    vizlib is copied from :func:`template_cache` instead (a grade run again, a shard, the next class)."""
    root = course_root(root)
    if assignment not in assignment_ids(root):
        raise ValueError(f"unknown assignment {assignment!r}; the course has {assignment_ids(root)}")
    dest = Path(dest)
    cached = template_cache() / _template_key(assignment, root)
    if (cached / "facts.json").exists():
        shutil.copytree(cached, dest, dirs_exist_ok=True)
        return json.loads((dest / "facts.json").read_text())
    facts = _prepare_template(assignment, dest, root)
    try:                      # keep a copy; another run writing the same one at once is harmless
        partial = cached.with_name(f"{cached.name}.{os.getpid()}.partial")
        shutil.copytree(dest, partial, dirs_exist_ok=True)
        os.replace(partial, cached)
    except OSError:
        shutil.rmtree(partial, ignore_errors=True)
    return facts


def _prepare_template(assignment: str, dest: Path, root: Path) -> dict:
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


def grade_one(template: Path, student: str, notebook: Path, work: Path, cell_timeout: int,
              limits: dict | None = None) -> dict:
    """Autograde one notebook with nbgrader in a copy of ``template``, its kernel in a sandbox under
    ``limits`` (:class:`~vizlib.course.sandbox.Limits` fields; empty or None: unsandboxed) and
    watched by :mod:`vizlib.course.guard`. Returns
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
    report = work / "watch.json"
    api = nbgrader_api(course, cell_timeout, untrusted=limits or {}, report=report)
    result = api.autograde(assignment, student, force=True, create=True)
    try:
        watched = json.loads(report.read_text())
    except (OSError, ValueError):
        watched = {"replaced": [], "dropped": 0}
    reasons += [f"replaced {', '.join(r['replaced'])} in cell {r['cell']}" for r in watched["replaced"]]
    if not result.get("success"):
        log = (result.get("log") or "") + (result.get("error") or "")
        if "DeadKernelError" in log or "Kernel died" in log:
            return _zero(facts, "; ".join([*reasons, "the kernel died while running the notebook (e.g. os._exit, "
                                "a crash, a killed process or running out of memory): nothing could be graded"]))
        last = [line.strip() for line in log.splitlines() if line.strip()][-1:] or ["unknown error"]
        return _zero(facts, f"nbgrader could not grade it: {last[0][:200]}")
    graded_nb = course / "autograded" / student / assignment / facts["notebook"]
    out_nb = json.loads(graded_nb.read_text())
    cut = _cap_outputs(out_nb) + watched["dropped"]
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
    """``python -m vizlib.course.classroom --one TEMPLATE STUDENT NOTEBOOK WORK TIMEOUT LIMITS OUT``"""
    template, student, notebook, work, timeout, limits, out = argv
    result = grade_one(Path(template), student, Path(notebook), Path(work), int(timeout), json.loads(limits))
    Path(out).write_text(json.dumps(result))
    return 0


# ----------------------------------------------------------------------------------------
# The class
# ----------------------------------------------------------------------------------------

def _run_child(template: Path, sub: Submission, cell_timeout: int, budget: float,
               feedback_dir: Path, quick: bool, limits: dict | None) -> dict:
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
               str(sub.notebook.resolve()), str(work), str(cell_timeout), json.dumps(limits or {}), str(out)]
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
            reasons = list(r["result"]["reasons"])
            if r.get("sandboxed") is False:
                reasons.append(UNSANDBOXED)
            writer.writerow([r["student"], r["entry"], f"{sum(cells.values()):g}", f"{total:g}",
                             *(f"{cells.get(k, 0.0):g}" for k in graded), "; ".join(reasons)])
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
    if previous.get("sandboxed", True) != record_key["sandboxed"]:
        return "sandboxing changed"
    if previous.get("quick") != record_key["quick"]:
        return "quick/full mode changed"
    return ""


def parse_shard(text: str) -> tuple[int, int]:
    """``"2/3"`` -> ``(2, 3)``; refuses anything but ``K/N`` with 1 <= K <= N."""
    try:
        k, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"--shard must be K/N (e.g. 2/3), got {text!r}") from None
    if not 1 <= k <= n:
        raise ValueError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return k, n


def shard_of(subs: list[Submission], shard: tuple[int, int] | None) -> list[Submission]:
    """The ``K``-th of ``N`` deterministic slices of the class: every N-th submission in the sorted
    order of the folder's entries, starting at the K-th. The N slices cover the class exactly once."""
    if shard is None:
        return list(subs)
    k, n = shard
    return [s for i, s in enumerate(subs) if i % n == k - 1]


def sandbox_policy(sandboxed: bool | None = None) -> tuple[bool, str]:
    """Whether kernels run sandboxed: ``sandboxed`` None means "wherever it can". Returns
    ``(sandboxed, why not)``; asking for a sandbox the machine cannot give raises ``RuntimeError``."""
    why = sandbox.unavailable() if sandboxed is not False else "turned off by the caller"
    if sandboxed and why:
        raise RuntimeError(f"cannot sandbox student code here: {why}")
    return not why, why


def grade_class(assignment: str, submissions: Path, out: Path, *, root: Path | None = None,
                jobs: int | None = None, cell_timeout: int = 60, budget: float | None = None,
                quick: bool = True, progress: bool = True, limits: sandbox.Limits | None = None,
                sandboxed: bool | None = None, shard: tuple[int, int] | None = None) -> dict:
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
        limits: what each submission's kernel may use (default :class:`~vizlib.course.sandbox.Limits`).
        sandboxed: True: refuse to grade without the sandbox; None: sandbox where the machine
            allows it, else grade unsandboxed with a loud warning and a note in every row; False: never.
        shard: ``(K, N)``: grade only the K-th of N slices (:func:`shard_of`) and record it in
            ``out/shard.json`` for :func:`merge`.

    A submission is graded again when it is new or changed, or when what its last grade depended
    on changed: the assignment's tests (its source notebook), vizlib's version, the mode or the sandbox.

    Returns:
        ``{"csv": path, "graded": n, "unchanged": n, "why": {reason: n}, "seconds": s,
        "per_minute": rate, "sandboxed": bool}``.
    """
    start = time.perf_counter()
    root = course_root(root)
    if assignment not in assignment_ids(root):
        raise ValueError(f"unknown assignment {assignment!r}; the course at {root} has {assignment_ids(root)}")
    out = Path(out)
    everyone = find_submissions(Path(submissions), assignment)
    subs = shard_of(everyone, shard)
    boxed, why_not = sandbox_policy(sandboxed)
    if not boxed:
        config.warn(f"grading {assignment} WITHOUT a sandbox ({why_not}): student code runs with your "
                    "rights and can read, write and reach whatever you can; grades.csv says so in every row")
    limits = limits or sandbox.Limits()
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
                            "vizlib": __version__, "quick": quick, "sandboxed": boxed} for s in subs}
        why = {s.student: _regrade_reason(state.get(s.student), keys[s.student]) for s in subs}
        todo = [s for s in subs if why[s.student]]
        bar = None
        if progress and todo:
            from tqdm.auto import tqdm
            bar = tqdm(total=len(todo), desc=f"grading {assignment}", unit="submission")
        child_limits = asdict(limits) if boxed else {}
        with cf.ThreadPoolExecutor(jobs) as pool:
            futures = {pool.submit(_run_child, template, s, cell_timeout, budget,
                                   out / "feedback", quick, child_limits): s for s in todo}
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
    if shard is not None:
        (out / SHARD_FILE).write_text(json.dumps({
            "assignment": assignment, "shard": list(shard), "class": [s.student for s in everyone],
            "students": [s.student for s in subs], "graded": facts["graded"], "tests": tests,
            "vizlib": __version__, "quick": quick}, indent=1))
    else:
        (out / SHARD_FILE).unlink(missing_ok=True)
    seconds = time.perf_counter() - start
    reasons: dict[str, int] = {}
    for s in todo:
        reasons[why[s.student]] = reasons.get(why[s.student], 0) + 1
    return {"csv": csv_path, "graded": len(todo), "unchanged": len(subs) - len(todo), "why": reasons,
            "seconds": seconds, "per_minute": len(todo) / seconds * 60 if todo else 0.0, "sandboxed": boxed}


def merge(shards: list[Path], out: Path) -> Path:
    """Join the output folders of ``vizlib grade --shard K/N`` runs into ``out/grades.csv`` (and
    ``out/feedback/``), exactly once per student, as one unsharded run would have written it.

    Refuses (``ValueError``) shards of different classes, assignments, tests, vizlib versions or
    modes, a shard given twice, a missing shard, and a shard whose grades are incomplete.
    """
    if not shards:
        raise ValueError("--merge needs the output folders of the shards")
    infos = []
    for folder in map(Path, shards):
        try:
            infos.append((folder, json.loads((folder / SHARD_FILE).read_text())))
        except (OSError, ValueError):
            raise ValueError(f"{folder} is not the output of a sharded run (no readable {SHARD_FILE})") from None
    first = infos[0][1]
    n = first["shard"][1]
    seen: dict[int, Path] = {}
    for folder, info in infos:
        for key in ("assignment", "class", "graded", "tests", "vizlib", "quick"):
            if info[key] != first[key]:
                raise ValueError(f"{folder} and {infos[0][0]} graded different {key}s: they cannot be merged")
        k, n_here = info["shard"]
        if n_here != n:
            raise ValueError(f"{folder} is shard {k}/{n_here}, but {infos[0][0]} is one of {n}")
        if k in seen:
            raise ValueError(f"shard {k}/{n} given twice: {seen[k]} and {folder}")
        seen[k] = folder
    missing = [f"{k}/{n}" for k in range(1, n + 1) if k not in seen]
    if missing:
        raise ValueError(f"missing shard {', '.join(missing)}: every one of the {n} is needed")
    records: dict[str, dict] = {}
    for folder, info in infos:
        state = _load_state(folder / STATE_FILE)
        for student in info["students"]:
            if student in records:
                raise ValueError(f"{student} was graded by two shards")
            if student not in state:
                raise ValueError(f"{folder} (shard {info['shard'][0]}/{n}) is incomplete: no grade for {student}")
            records[student] = state[student]
        for page in (folder / "feedback").glob("*.html") if (folder / "feedback").is_dir() else ():
            if page.stem in info["students"]:
                (out / "feedback").mkdir(parents=True, exist_ok=True)
                shutil.copy(page, out / "feedback" / page.name)
    lost = [s for s in first["class"] if s not in records]
    if lost:
        raise ValueError(f"no shard graded {', '.join(lost[:5])}")
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "grades.csv"
    _write_csv(csv_path, [records[s] for s in first["class"]], first["graded"])
    return csv_path


def add_arguments(parser) -> None:
    """``vizlib grade ASSIGNMENT SUBMISSIONS [-o OUT] ...`` and ``vizlib grade --merge OUT1 OUT2 ... -o OUT``."""
    parser.description = ("Autograde a folder of submissions with nbgrader, in parallel, each kernel in a sandbox: "
                          "writes OUT/grades.csv and OUT/feedback/<student>.html; a second run grades only new or "
                          "changed submissions.")
    parser.add_argument("assignment", nargs="?", help="e.g. assignment1")
    parser.add_argument("submissions", nargs="?", help="folder with one notebook or folder per student")
    parser.add_argument("-o", "--out", default="grades", help="output folder (default: grades/)")
    parser.add_argument("-j", "--jobs", type=int, default=None, help="parallel workers (default: cores)")
    parser.add_argument("--cell-timeout", type=int, default=60, help="seconds per cell (default 60)")
    parser.add_argument("--full", action="store_true", help="run notebooks in full mode, not quick mode")
    defaults = sandbox.Limits()
    parser.add_argument("--memory", default=f"{defaults.memory >> 30}G",
                        help=f"memory of each submission's sandbox (default {defaults.memory >> 30}G)")
    parser.add_argument("--tasks", type=int, default=defaults.tasks,
                        help=f"processes and threads in each sandbox (default {defaults.tasks})")
    parser.add_argument("--shard", help="K/N: grade only the K-th of N deterministic slices of the class "
                                        "(join the N output folders with --merge)")
    parser.add_argument("--merge", nargs="+", metavar="SHARD_OUT",
                        help="instead of grading: join the output folders of --shard runs into -o OUT")
    parser.add_argument("--course", help="the course folder whose tests grade (default: the one with "
                                         "nbgrader_config.py at or above the current directory)")
    parser.set_defaults(run=_grade_command)


def _grade_command(args) -> int:
    try:
        if args.merge:
            if args.assignment or args.submissions:
                raise ValueError("--merge takes only the shards' output folders and -o OUT")
            print(f"merged {len(args.merge)} shards -> {merge([Path(p) for p in args.merge], Path(args.out))}")
            return 0
        if not (args.assignment and args.submissions):
            raise ValueError("give ASSIGNMENT and SUBMISSIONS (or --merge OUT1 OUT2 ...)")
        shard = parse_shard(args.shard) if args.shard else None
        if args.tasks < 16:
            raise ValueError(f"--tasks must be at least 16 (a kernel runs several threads), got {args.tasks}")
        limits = sandbox.Limits(memory=sandbox.parse_size(args.memory), tasks=args.tasks)
        root = course_root(args.course)
        print(f"course: {root}")
        summary = grade_class(args.assignment, Path(args.submissions), Path(args.out), jobs=args.jobs,
                              cell_timeout=args.cell_timeout, quick=not args.full, root=root,
                              limits=limits, shard=shard)
    except (FileNotFoundError, ValueError) as exc:  # CourseNotFoundError is a ValueError
        print(f"vizlib grade: {exc}", file=sys.stderr)
        return 2
    why = ", ".join(f"{n} {reason}" if reason in ("new", "changed") else f"{n}: {reason}"
                    for reason, n in summary["why"].items())
    print(f"graded {summary['graded']} submissions ({why + '; ' if why else ''}{summary['unchanged']} unchanged) "
          f"in {summary['seconds']:.0f} s, {summary['per_minute']:.1f} per minute"
          f"{'' if summary['sandboxed'] else ' WITHOUT a sandbox'} -> {summary['csv']}")
    return 0


def main(argv=None) -> int:
    """``python -m vizlib.course.classroom ...``: ``vizlib grade`` of the one command tree."""
    return cli.main(["grade", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        sys.exit(_child(sys.argv[2:]))
    sys.exit(main())
