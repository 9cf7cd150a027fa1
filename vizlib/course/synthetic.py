"""A synthetic class: submissions built from the real assignments, with the score each deserves.

    vizlib synthetic-class assignment1 /tmp/class --n 200     # or: python -m vizlib.course.synthetic ...
    vizlib grade assignment1 /tmp/class/submissions -o /tmp/class/grades

writes ``/tmp/class/submissions/`` (one entry per student, as an instructor would download them)
and ``/tmp/class/expected.csv`` (student, kind, expected score, a phrase the grader's reason must
contain). The kinds: correct, blank, partially done (the first k functions), subtly wrong (every
realistic mistake of :func:`mistakes`, the course's mutants, among them a function that only calls
vizlib's reference), and every failure the grader must survive — an endless loop, an import that fails, a
kernel that dies, megabytes of printing, a corrupted, empty or missing notebook, an edited or
deleted read-only graded cell, another assignment's notebook, a file that is not a notebook.
"""
from __future__ import annotations

import copy
import csv
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path

from .. import cli
from .grading import assignment_ids
from .mutants import Mutant, load_mutants, program
from .root import COURSE_HELP, course_root


def mistakes(assignment: str, root: Path | None = None) -> list[Mutant]:
    """The realistic wrong solutions of ``assignment``: the course's mutants
    (``tests/mutants/<assignment>.toml``, see :mod:`vizlib.course.mutants`)."""
    return load_mutants(assignment, course_root(root))


@dataclass(frozen=True)
class Expected:
    student: str
    kind: str
    score: float
    reason: str  # a phrase the grader's reason must contain ("" = no reason expected)
    at_most: bool = False  # the score may be lower (what a hostile submission's attack destroys varies)


def _meta(cell) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


class _Assignment:
    """The release notebook of an assignment, the solution of each cell and the points at stake."""

    def __init__(self, assignment: str, root: Path):
        (self.release_path,) = sorted((root / "assignments" / assignment).glob("*.ipynb"))
        self.name = assignment
        self.release = json.loads(self.release_path.read_text())
        prog = program(assignment, root)  # the source notebook, read once
        self.solutions = prog.solutions
        self.order = list(prog.solutions)
        # the graded cells that test each solution cell: those between it and the next one
        self.tests = prog.tests
        self.points = prog.points
        self.total = sum(self.points.values())

    def notebook(self, solved=None, replace: dict[str, str] | None = None) -> dict:
        """The release with the cells in ``solved`` (default all) filled in, others left blank."""
        nb = copy.deepcopy(self.release)
        solved = set(self.order if solved is None else solved)
        for cell in nb["cells"]:
            gid = _meta(cell).get("grade_id")
            if _meta(cell).get("solution") and gid in solved:
                cell["source"] = (replace or {}).get(gid, self.solutions[gid])
        return nb

    def lost(self, cells) -> float:
        return sum(self.points[c] for c in set(cells))

    def cell(self, nb: dict, grade_id: str) -> dict:
        return next(c for c in nb["cells"] if _meta(c).get("grade_id") == grade_id)


def _write(dest: Path, student: str, nb_or_bytes, assignment: str, flat: bool = False) -> None:
    data = nb_or_bytes if isinstance(nb_or_bytes, bytes) else json.dumps(nb_or_bytes, indent=1).encode()
    path = dest / f"{student}.ipynb" if flat else dest / student / f"{assignment}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def failure_kinds(a: _Assignment, root: Path):
    """``(kind, make(dest, student), expected score, reason phrase)`` for every failure the grader
    must survive, on assignment ``a``. ``make`` returns the grader's id for the entry where it is
    not ``student`` (a file that is not a notebook keeps its full name)."""
    last = a.order[-1]
    last_lost = a.lost(a.tests[last])
    first_test = next(t for k in a.order for t in a.tests[k])
    last_test = a.tests[last][-1]
    others = [o for o in assignment_ids(root) if o != a.name]

    def patched(cell_id, prefix):
        nb = a.notebook()
        a.cell(nb, cell_id)["source"] = prefix + a.solutions[cell_id]
        return nb

    def edited(nb):
        a.cell(nb, first_test)["source"] = "pass  # the test was in my way\n"
        return nb

    def deleted(nb):
        nb["cells"] = [c for c in nb["cells"] if _meta(c).get("grade_id") != last_test]
        return nb

    kinds = [
        ("endless loop", lambda d, s: _write(d, s, patched(last, "while True:\n    pass\n"), a.name),
         a.total - last_lost, "ran past"),
        ("failing import", lambda d, s: _write(d, s, patched(last, "import a_module_that_does_not_exist\n"), a.name),
         a.total - last_lost, "ModuleNotFoundError"),
        ("kernel dies", lambda d, s: _write(d, s, patched(last, "import os\nos._exit(1)\n"), a.name),
         0.0, "kernel died"),
        ("prints megabytes", lambda d, s: _write(d, s, patched(last, "print('x' * 5_000_000)\n"), a.name),
         a.total, "printed too much"),
        ("corrupted notebook", lambda d, s: _write(d, s, json.dumps(a.notebook())[:2000].encode(), a.name),
         0.0, "corrupted notebook"),
        ("empty file", lambda d, s: _write(d, s, b"", a.name), 0.0, "empty file"),
        ("no notebook", lambda d, s: (d / s).mkdir(parents=True) or (d / s / "answers.txt").write_text("see email"),
         0.0, "no notebook"),
        ("edited read-only test", lambda d, s: _write(d, s, edited(a.notebook()), a.name),
         a.total, f"read-only cell {first_test} edited"),
        ("deleted graded cell", lambda d, s: _write(d, s, deleted(a.notebook()), a.name),
         a.total - a.points[last_test], f"graded cell {last_test} deleted"),
        ("not a notebook", lambda d, s: (d / f"{s}.pdf").write_bytes(b"%PDF-1.4\n") and f"{s}.pdf",
         0.0, "not a notebook"),
        ("flat file, renamed", lambda d, s: _write(d, s, a.notebook(), a.name, flat=True), a.total, ""),
    ]
    if others:
        other = _Assignment(others[0], root)
        kinds.append(("another assignment", lambda d, s: _write(d, s, other.notebook(), a.name),
                      0.0, f"belongs to {other.name}"))
    return kinds


# Hostile submissions: each tries what a student with the grader in their sights would. Those marked
# "self-checking" raise in their own cell when the attack worked, so a sandbox that leaks costs
# them points instead of passing unnoticed.
SNOOP = """import json, os
def _steal():
    for top in ("/", os.path.expanduser("~")):
        for folder, dirs, files in os.walk(top):
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev", ".venv", "site-packages", "node_modules")]
            for name in files:
                if name.endswith(".ipynb"):
                    try:
                        nb = json.load(open(os.path.join(folder, name)))
                    except Exception:
                        continue
                    cells = ["".join(c["source"]) for c in nb.get("cells", []) if c.get("cell_type") == "code"]
                    if any("### BEGIN SOLUTION" in c for c in cells):
                        for c in cells:
                            if "### BEGIN SOLUTION" in c and "BEGIN HIDDEN" not in c:
                                exec(c, globals())
                        return True
    return False
_steal()
"""

ESCAPE = """import os, socket
_escaped = []
for _folder, _dirs, _files in os.walk("/"):
    _dirs[:] = [d for d in _dirs if d not in ("proc", "sys", "dev", "tmp")]
    for _name in _files:
        if _name in ("grades.csv", "results.jsonl", "gradebook.db"):
            try:
                with open(os.path.join(_folder, _name), "a") as _f:
                    _f.write("mallory,999\\n")
                _escaped.append("wrote " + os.path.join(_folder, _name))
            except OSError:
                pass
    if not _folder.startswith("/tmp"):
        try:
            with open(os.path.join(_folder, "vizlib-hostile-marker"), "w") as _f:
                _f.write("x")
            _escaped.append("created a file in " + _folder)
        except OSError:
            pass
for _host in [("127.0.0.1", p) for p in (22, 80, 443, 5432, 6379, 8888, 47123)] + [("1.1.1.1", 53), ("pypi.org", 443)]:
    try:
        socket.create_connection(_host, timeout=1).close()
        _escaped.append(f"connected to {_host}")
    except OSError:
        pass
if _escaped:
    raise RuntimeError("escaped the sandbox: " + "; ".join(_escaped[:5]))
"""

PATCH_CHECKS = """import builtins, numpy, torch
torch.allclose = lambda *a, **k: True
torch.equal = lambda *a, **k: True
torch.Tensor.allclose = lambda *a, **k: True
numpy.testing.assert_allclose = lambda *a, **k: None
builtins.all = lambda *a, **k: True
"""

HOOKS = """ip = get_ipython()
ip.input_transformers_cleanup.append(lambda lines: ["pass\\n"])
ip._showtraceback = lambda *a, **k: None
"""

MEMORY = "_hoard = [bytearray(256 << 20) for _ in range(256)]  # 64 GiB, a quarter GiB at a time\n"
FORK = """import os, time
for _ in range(100_000):
    if os.fork() == 0:
        time.sleep(600)
        os._exit(0)
"""
DISK = """with open("filler", "wb") as _f:
    while True:
        _f.write(b"x" * (1 << 24))
"""
PRINT = "while True:\n    print('x' * 1_000_000)\n"
KILL = """import os, signal
for _sig in (signal.SIGKILL, signal.SIGTERM):
    for _pid in (os.getppid(), -1, 1):
        try:
            os.kill(_pid, _sig)
        except OSError:
            pass
os.kill(os.getpid(), signal.SIGKILL)
"""


def _wrong_first(a: _Assignment) -> str:
    """The first graded function, answering zeros of its argument's shape (or None)."""
    first = a.order[0]
    src = a.solutions[first]
    header = src.split("\n", 1)[0]
    arg = header[header.index("(") + 1:].split(",")[0].split(")")[0].strip() or "None"
    return f"{header}\n    import torch\n    return torch.zeros_like({arg}) if torch.is_tensor({arg}) else None\n"


def hostile_kinds(a: _Assignment):
    """``(kind, make(dest, student), expected score, reason phrase, at_most)`` for every attack on the
    grader a submission can try, on assignment ``a``: the attack is placed in an answer cell, and the
    expected score is what the honest rest of the notebook earns."""
    first, last = a.order[0], a.order[-1]
    first_lost, last_lost = a.lost(a.tests[first]), a.lost(a.tests[last])

    def nb(cell_id, prefix, answer=None, blank_rest=False):
        book = a.notebook(solved=[cell_id] if blank_rest else None)
        cell = a.cell(book, cell_id)
        cell["source"] = prefix + (answer if answer is not None else a.solutions[cell_id])
        if blank_rest:
            for other in a.order:
                if other != cell_id:
                    a.cell(book, other)["source"] = "pass\n"
        return book

    def during_test():  # the graded function itself patches the check when the test calls it
        src = _wrong_first(a)
        header, body = src.split("\n", 1)
        return f"{header}\n    import torch\n    torch.allclose = lambda *a, **k: True\n{body}"

    wrong = _wrong_first(a)
    return [
        ("hostile: reads the instructor's files", lambda d, s: _write(d, s, nb(first, SNOOP, "", True), a.name),
         0.0, "tests failed", False),
        ("hostile: writes outside, reaches the network", lambda d, s: _write(d, s, nb(first, ESCAPE), a.name),
         a.total, "", False),
        ("hostile: patches the checks", lambda d, s: _write(d, s, nb(first, PATCH_CHECKS, wrong), a.name),
         a.total - first_lost, f"replaced builtins.all, numpy.testing.assert_allclose, torch.Tensor.allclose, "
                               f"torch.allclose, torch.equal in cell {first}", False),
        ("hostile: patches the checks while tested", lambda d, s: _write(d, s, nb(first, "", during_test()), a.name),
         a.total - first_lost, f"replaced torch.allclose in cell {a.tests[first][0]}", False),
        ("hostile: hides failures with IPython hooks", lambda d, s: _write(d, s, nb(first, HOOKS, wrong), a.name),
         a.total - first_lost, "replaced IPython's _showtraceback, IPython's input_transformers_cleanup", False),
        ("hostile: allocates 64 GiB", lambda d, s: _write(d, s, nb(last, MEMORY), a.name),
         a.total - last_lost, "", True),
        ("hostile: forks without end", lambda d, s: _write(d, s, nb(last, FORK), a.name),
         a.total - last_lost, "", True),
        ("hostile: fills the disk", lambda d, s: _write(d, s, nb(last, DISK), a.name),
         a.total - last_lost, "OSError", False),
        ("hostile: prints gigabytes", lambda d, s: _write(d, s, nb(last, PRINT), a.name),
         a.total - last_lost, "ran past", False),
        ("hostile: kills every process it can", lambda d, s: _write(d, s, nb(last, KILL), a.name),
         0.0, "kernel died", False),
    ]


def make_class(assignment: str, dest: Path, n: int = 200, seed: int = 0, root: Path | None = None,
               kinds: list[str] | None = None, hostile: bool = False) -> list[Expected]:
    """Write ``n`` submissions to ``dest/submissions`` and ``dest/expected.csv``; return the
    expectations. Every failure kind and every mistake appears at least once (when ``n`` allows);
    the rest are correct, blank or partially done. ``kinds`` keeps only the kinds named; ``hostile``
    adds every attack of :func:`hostile_kinds` (run those only where the grader is sandboxed)."""
    root = course_root(root)
    a = _Assignment(assignment, root)
    rng = random.Random(seed)
    dest = Path(dest)
    subs = dest / "submissions"
    subs.mkdir(parents=True, exist_ok=False)
    makers = [(kind, make, score, reason, False) for kind, make, score, reason in failure_kinds(a, root)]
    if hostile:
        makers += hostile_kinds(a)
    for m in mistakes(assignment, root):
        def make(d, s, m=m):
            _write(d, s, a.notebook(replace={m.cell: m.apply(a.solutions[m.cell])}), a.name)
        makers.append((f"mistake: {m.name}", make, a.total - a.lost([*a.tests[m.cell], *m.also]), "tests failed", False))
    makers.append(("correct", lambda d, s: _write(d, s, a.notebook(), a.name), a.total, "", False))
    makers.append(("blank", lambda d, s: _write(d, s, a.notebook(solved=()), a.name), 0.0, "tests failed", False))
    if kinds is not None:
        makers = [m for m in makers if m[0] in kinds]
    plan = list(makers)
    while len(plan) < n:  # the rest of the class: correct, blank or partly done
        k = rng.randrange(len(a.order) + 1)
        solved = a.order[:k]
        lost = a.lost(t for c in a.order[k:] for t in a.tests[c])
        plan.append((f"partial {k}/{len(a.order)}",
                     lambda d, s, solved=solved: _write(d, s, a.notebook(solved=solved), a.name),
                     a.total - lost, "tests failed" if lost else "", False))
    plan = plan[:n]
    rng.shuffle(plan)
    expected = []
    for i, (kind, make, score, reason, at_most) in enumerate(plan):
        student = f"student{i:03d}"
        entry = make(subs, student)  # the grader's id for it, where that is not the plain name
        expected.append(Expected(entry if isinstance(entry, str) else student, kind, score, reason, at_most))
    with open(dest / "expected.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["student", "kind", "score", "reason"])
        for e in expected:
            writer.writerow([e.student, e.kind, f"{'<=' if e.at_most else ''}{e.score:g}", e.reason])
    return expected


def add_arguments(parser) -> None:
    """``vizlib synthetic-class ASSIGNMENT DEST [--n N] [--seed S] [--course DIR]``."""
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("assignment", help="e.g. assignment1")
    parser.add_argument("dest", help="empty folder to create")
    parser.add_argument("--n", type=int, default=200, help="submissions to write (default 200)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--hostile", action="store_true",
                        help="add one submission of every attack on the grader (grade those only sandboxed)")
    parser.add_argument("--course", help=COURSE_HELP)
    parser.set_defaults(run=_synthetic_command)


def _synthetic_command(args) -> int:
    root = course_root(args.course)
    expected = make_class(args.assignment, Path(args.dest), args.n, args.seed, root=root, hostile=args.hostile)
    print(f"wrote {len(expected)} submissions to {Path(args.dest) / 'submissions'} "
          f"and the expected grades to {Path(args.dest) / 'expected.csv'}")
    return 0


def main(argv=None) -> int:
    """``python -m vizlib.course.synthetic ...``: ``vizlib synthetic-class`` of the one command tree."""
    return cli.main(["synthetic-class", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
