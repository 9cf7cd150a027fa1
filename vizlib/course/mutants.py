"""Mutation testing of the graded cells: does every realistic wrong solution lose points?

    vizlib check-assignments --mutants                 # every assignment, score per assignment
    vizlib check-assignments --mutants assignment2

An instructor trusts a score only if a wrong solution cannot earn it. The course keeps, for every
graded function, several wrong versions a student plausibly writes (off by one, wrong axis, wrong
reduction, a missing term, a sign, in place, a hook not removed, a mode changed ...) as data in
``tests/mutants/<assignment>.toml`` (the format is described at the top of ``assignment1.toml``).

For each mutant the assignment's code cells run in order, exactly as nbgrader runs them (solution
cells with the reference solution, graded cells with their hidden tests), with the mutant in place
of its cell; a graded cell that raises loses its points. A mutant is *caught* when a graded cell of
its own part fails (raises, or writes to stderr: nbgrader scores a cell that prints a warning as
failing, and so does the harness). The harness also checks that the cells it makes fail are exactly the mutant's
part plus those it declares in ``also`` (a part that builds on another, as the assignment says), so
the synthetic class's expected grades (``vizlib.course.synthetic``) are right too. The reference must
pass every graded cell and the blank release must fail every one, in the same run.

All mutants of an assignment run in one child Python process (a "kernel"), each in a fresh
namespace, with a time limit per cell: seconds for a whole assignment, not one nbgrader run per
mutant. ``tests/test_classroom.py`` grades mutants with nbgrader end to end and checks the scores
agree.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .grading import cell_text

CELL_TIMEOUT = 30  # seconds any one cell may run in the harness


@dataclass(frozen=True)
class Mutant:
    """A wrong solution of one solution cell (``cell``, its grade_id): ``edits`` are ``(old, new)``
    replacements of the reference solution's text, or ``source`` replaces the whole cell; ``also``
    names the graded cells of other parts it is expected to fail too."""
    name: str
    cell: str
    edits: tuple[tuple[str, str], ...] = ()
    source: str | None = None
    also: tuple[str, ...] = ()

    def apply(self, solution: str) -> str:
        """The student's cell: ``solution`` (the reference, markers stripped) with the mistake."""
        if self.source is not None:
            return self.source.strip("\n") + "\n"
        for old, new in self.edits:
            if old not in solution:
                raise ValueError(f"mutant {self.name!r} does not apply to {self.cell}: "
                                 f"{old.strip()!r} is not in the reference solution")
            solution = solution.replace(old, new)
        return solution


def mutants_file(assignment: str, root: Path) -> Path:
    return Path(root) / "tests" / "mutants" / f"{assignment}.toml"


def load_mutants(assignment: str, root: Path) -> list[Mutant]:
    """The mutants of ``assignment`` kept in the course (``[]`` when it has none)."""
    path = mutants_file(assignment, root)
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get("mutant", [])
    out = []
    for i, e in enumerate(entries):
        where = f"{path.name}, mutant {i + 1} ({e.get('name', 'unnamed')!r})"
        unknown = set(e) - {"name", "cell", "old", "new", "source", "also"}
        if unknown or not {"name", "cell"} <= set(e):
            raise ValueError(f"{where}: needs 'name' and 'cell'; unknown keys {sorted(unknown)}")
        if ("source" in e) == ("old" in e) or ("old" in e) != ("new" in e):
            raise ValueError(f"{where}: give either 'source' or both 'old' and 'new'")
        old, new = e.get("old", []), e.get("new", [])
        old, new = ([old], [new]) if isinstance(old, str) else (old, new)
        if len(old) != len(new):
            raise ValueError(f"{where}: 'old' and 'new' need as many entries ({len(old)} vs {len(new)})")
        out.append(Mutant(e["name"], e["cell"], tuple(zip(old, new)), e.get("source"), tuple(e.get("also", ()))))
    return out


# ----------------------------------------------------------------------------------------
# The assignment as a program: its code cells, in order
# ----------------------------------------------------------------------------------------

@dataclass
class Program:
    """The code cells of a source notebook: ``cells`` as ``(grade_id, kind, source)`` with kind
    ``"solution"``, ``"graded"`` or ``"code"``; ``tests[cell]`` the graded cells of each part;
    ``points[cell]`` what each graded cell is worth."""
    assignment: str
    cells: list[tuple[str, str, str]]
    tests: dict[str, list[str]] = field(default_factory=dict)
    points: dict[str, float] = field(default_factory=dict)

    @property
    def graded(self) -> list[str]:
        return [gid for gid, kind, _ in self.cells if kind == "graded"]

    @property
    def solutions(self) -> dict[str, str]:
        return {gid: src for gid, kind, src in self.cells if kind == "solution"}


def strip_markers(source: str, keep_hidden: bool = False) -> str:
    """A source cell as nbgrader runs it: the solution markers dropped, the hidden tests dropped
    (a solution as the student sees it) or kept (a graded cell as nbgrader runs it)."""
    if not keep_hidden:
        source = re.sub(r"[ \t]*### BEGIN HIDDEN TESTS.*?### END HIDDEN TESTS\n?", "", source, flags=re.S)
    drop = ("### BEGIN SOLUTION", "### END SOLUTION", "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS")
    return "\n".join(line for line in source.splitlines() if not line.strip() in drop) + "\n"


def program(assignment: str, root: Path) -> Program:
    """Read ``solutions/<assignment>/*.ipynb`` (one notebook) as a :class:`Program`."""
    notebooks = sorted((Path(root) / "solutions" / assignment).glob("*.ipynb"))
    if len(notebooks) != 1:
        raise ValueError(f"{assignment}: expected one source notebook in solutions/{assignment}, "
                         f"found {len(notebooks)}")
    nb = json.loads(notebooks[0].read_text())
    cells, tests, points, current = [], {}, {}, None
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] != "code":
            continue
        meta = c.get("metadata", {}).get("nbgrader", {})
        source = cell_text(c)
        gid = meta.get("grade_id", f"cell{i}")
        if meta.get("solution"):
            cells.append((gid, "solution", strip_markers(source, keep_hidden=False)))
            current = gid
            tests[gid] = []
        elif meta.get("grade"):
            cells.append((gid, "graded", strip_markers(source, keep_hidden=True)))
            points[gid] = float(meta.get("points", 0) or 0)
            if current is not None:
                tests[current].append(gid)
        else:
            cells.append((gid, "code", source))
    return Program(assignment, cells, tests, points)


def released_solutions(assignment: str, root: Path) -> dict[str, str]:
    """The solution cells of the blank release (``assignments/<assignment>/``), by grade_id."""
    notebooks = sorted((Path(root) / "assignments" / assignment).glob("*.ipynb"))
    if len(notebooks) != 1:
        raise ValueError(f"{assignment}: expected one released notebook in assignments/{assignment} "
                         f"(run `vizlib release`), found {len(notebooks)}")
    nb = json.loads(notebooks[0].read_text())
    return {c["metadata"]["nbgrader"]["grade_id"]: cell_text(c)
            for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


# ----------------------------------------------------------------------------------------
# Running: one child process per assignment
# ----------------------------------------------------------------------------------------

def _worker() -> int:
    """Child process: read ``{"cells": [...], "variants": [{"name", "replace"}]}`` on stdin,
    write ``[{"name", "failed": {grade_id: first error line}}]`` on stdout."""
    import contextlib
    import io
    import signal
    import traceback

    import torch

    job = json.load(sys.stdin)

    class CellTimeout(Exception):
        pass

    def alarm(signum, frame):
        raise CellTimeout(f"ran past {job['timeout']} s")

    signal.signal(signal.SIGALRM, alarm)
    results = []
    for variant in job["variants"]:
        namespace = {"__name__": "__main__"}
        failed = {}
        for gid, kind, source in job["cells"]:
            source = variant["replace"].get(gid, source)
            err = io.StringIO()
            signal.setitimer(signal.ITIMER_REAL, job["timeout"])
            try:
                with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                    exec(compile(source, f"<{gid}>", "exec"), namespace)
            except BaseException as exc:  # noqa: BLE001 - a cell may raise anything, as in a kernel
                if kind == "graded":
                    line = traceback.format_exception_only(type(exc), exc)[-1].strip()
                    failed[gid] = line[:300]
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
                sys.setprofile(None)
            if kind == "graded" and gid not in failed and err.getvalue().strip():
                # nbgrader gives a graded cell zero when it writes to stderr (a warning, say)
                first = err.getvalue().strip().splitlines()[0]
                failed[gid] = f"wrote to stderr, which nbgrader scores as failing: {first[:240]}"
        # what one variant may have changed for the next
        torch.set_grad_enabled(True)
        torch.set_default_dtype(torch.float32)
        results.append({"name": variant["name"], "failed": failed})
    json.dump(results, sys.stdout)
    return 0


@dataclass
class Outcome:
    """One mutant's run: the graded cells it failed (with the first error line of each)."""
    mutant: Mutant
    failed: dict[str, str]
    own: list[str]

    @property
    def caught(self) -> bool:
        return any(t in self.failed for t in self.own)

    @property
    def expected(self) -> set[str]:
        return set(self.own) | set(self.mutant.also)


@dataclass
class Report:
    assignment: str
    outcomes: list[Outcome]
    problems: list[str]

    @property
    def caught(self) -> int:
        return sum(o.caught for o in self.outcomes)

    @property
    def score(self) -> float:
        return self.caught / len(self.outcomes) if self.outcomes else 0.0

    def summary(self) -> str:
        return (f"{self.assignment}: {self.caught}/{len(self.outcomes)} mutants caught "
                f"({100 * self.score:.0f}%)")


def run(assignment: str, root: Path, mutants: list[Mutant] | None = None, min_per_function: int = 3,
        timeout: int = CELL_TIMEOUT) -> Report:
    """Run every mutant of ``assignment`` (default: those in the course) against its graded cells.

    Returns a :class:`Report`; ``problems`` lists what makes the graded cells untrustworthy: a
    mutant not caught, a mutant failing other cells than it declares, a graded function with fewer
    than ``min_per_function`` mutants, a reference that fails or a blank that passes a cell.
    """
    prog = program(assignment, root)
    mutants = load_mutants(assignment, root) if mutants is None else mutants
    solutions = prog.solutions
    problems = []
    for m in mutants:
        if m.cell not in solutions:
            raise ValueError(f"{assignment}: mutant {m.name!r} names {m.cell!r}, which is not a solution "
                             f"cell (those are {sorted(solutions)})")
        for other in m.also:
            if other not in prog.graded:
                raise ValueError(f"{assignment}: mutant {m.name!r} lists {other!r} in 'also', which is "
                                 f"not a graded cell")
    variants = [{"name": "reference", "replace": {}},
                {"name": "blank", "replace": released_solutions(assignment, root)}]
    variants += [{"name": m.name, "replace": {m.cell: m.apply(solutions[m.cell])}} for m in mutants]
    job = {"cells": prog.cells, "variants": variants, "timeout": timeout}
    proc = subprocess.run([sys.executable, "-m", "vizlib.course.mutants", "--worker"], input=json.dumps(job),
                          capture_output=True, text=True, cwd=str(root),
                          timeout=timeout * len(prog.cells) * len(variants) + 60)
    if proc.returncode != 0:
        raise RuntimeError(f"the mutation harness died on {assignment}:\n{proc.stderr[-3000:]}")
    results = json.loads(proc.stdout)
    reference, blank, rest = results[0], results[1], results[2:]
    for gid, error in reference["failed"].items():
        problems.append(f"{assignment}/{gid}: the reference solution fails it: {error}")
    for gid in prog.graded:
        if gid not in blank["failed"]:
            problems.append(f"{assignment}/{gid}: the blank assignment passes it (a test that cannot fail)")
    outcomes = []
    for m, r in zip(mutants, rest):
        o = Outcome(m, r["failed"], prog.tests[m.cell])
        outcomes.append(o)
        if not o.caught:
            problems.append(f"{assignment}/{m.cell}: mutant {m.name!r} is not caught by "
                            f"{', '.join(o.own) or 'any graded cell'}")
        elif set(o.failed) != o.expected:
            extra, missing = sorted(set(o.failed) - o.expected), sorted(o.expected - set(o.failed))
            problems.append(f"{assignment}/{m.cell}: mutant {m.name!r} "
                            + "; ".join(filter(None, [extra and f"also fails {extra} (declare it in 'also')",
                                                      missing and f"does not fail {missing}"])))
    for cell in solutions:
        n = sum(m.cell == cell for m in mutants)
        if n < min_per_function:
            problems.append(f"{assignment}/{cell}: {n} mutants, fewer than {min_per_function}")
    return Report(assignment, outcomes, problems)


def format_report(report: Report, verbose: bool = False) -> str:
    lines = [report.summary()]
    for o in report.outcomes:
        if verbose or not o.caught:
            mark = "caught" if o.caught else "SURVIVED"
            lines.append(f"  {mark:8s} {o.mutant.cell}: {o.mutant.name}"
                         + (f"  -> {', '.join(sorted(o.failed))}" if verbose and o.failed else ""))
    return "\n".join(lines)


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    sys.exit(_worker())
