"""Mutation testing of the graded cells: does every wrong solution lose points, every right one keep them?

    vizlib check-assignments --mutants                 # every assignment, score per assignment
    vizlib check-assignments --mutants --generic       # and every generic operator at every site
    vizlib check-assignments --mutants assignment2

An instructor trusts a score only if a wrong solution cannot earn it and a correct one cannot lose it.
The course keeps, for every graded function, several wrong versions a student plausibly writes (off by
one, wrong axis, wrong reduction, a missing term, a sign, in place, a hook not removed, a mode changed
...) as data in ``tests/mutants/<assignment>.toml`` (the format is described at the top of
``assignment1.toml``), and in ``tests/mutants/blind/`` sets of wrong solutions and correct
alternatives written by people who saw only the released notebook. :func:`run_generic` adds the
generic operators of :mod:`vizlib.course.operators`, applied by machine at every site.

For each variant the assignment's code cells run in order, exactly as nbgrader runs them (solution
cells with the reference solution, graded cells with their hidden tests), with the variant in place
of its cell; a graded cell that raises loses its points. A mutant is *caught* when a graded cell of
its own part fails (raises, or writes to stderr: nbgrader scores a cell that prints a warning as
failing, and so does the harness). The harness also checks that the cells a course mutant makes fail
are exactly its part plus those it declares in ``also``, so the synthetic class's expected grades
(``vizlib.course.synthetic``) are right too; an alternative must fail no cell at all. The reference
must pass every graded cell and the blank release must fail every one, in the same run.

All variants of an assignment run from one child Python process (a "kernel"): it runs the cells once
and, just before a cell some variants replace, forks one child per variant (one per core, up to four at a time), so the
cells before it run once for all of them and nothing a variant does reaches the next. Each cell has a
time limit. ``tests/test_classroom.py`` grades mutants with nbgrader end to end and checks the scores
agree.
"""
from __future__ import annotations

import gc
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import operators
from .grading import cell_text

CELL_TIMEOUT = 30  # seconds any one cell may run in the harness


@dataclass(frozen=True)
class Mutant:
    """A wrong solution of one solution cell (``cell``, its grade_id): ``edits`` are ``(old, new)``
    replacements of the reference solution's text, or ``source`` replaces the whole cell; ``also``
    names the graded cells of other parts it is expected to fail too. A ``blind`` mutant was
    written from the released text alone (``tests/mutants/blind/``): it must lose points on its own
    part, and what it does to later parts is not declared."""
    name: str
    cell: str
    edits: tuple[tuple[str, str], ...] = ()
    source: str | None = None
    also: tuple[str, ...] = ()
    blind: bool = False

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


@dataclass(frozen=True)
class Alternative:
    """Another correct solution of ``cell`` (loops for vectorised code, float64 inside, another
    valid order): it must keep full marks on every graded cell."""
    name: str
    cell: str
    source: str


@dataclass(frozen=True)
class Equivalent:
    """A generic mutant (:mod:`vizlib.course.operators`) no test can tell from the solution, and why."""
    cell: str
    operator: str
    where: str
    reason: str


def mutants_file(assignment: str, root: Path) -> Path:
    return Path(root) / "tests" / "mutants" / f"{assignment}.toml"


def blind_files(assignment: str, root: Path) -> list[Path]:
    """The blind sets of ``assignment``: ``tests/mutants/blind/<assignment>.toml`` and
    ``<assignment>-*.toml``, each written by someone who saw only the released notebook."""
    folder = Path(root) / "tests" / "mutants" / "blind"
    return sorted([*folder.glob(f"{assignment}.toml"), *folder.glob(f"{assignment}-*.toml")])


def _entries(path: Path, section: str, required: set[str], allowed: set[str]) -> list[tuple[str, dict]]:
    if not path.exists():
        return []
    entries = tomllib.loads(path.read_text()).get(section, [])
    out = []
    for i, e in enumerate(entries):
        where = f"{path.name}, {section} {i + 1} ({e.get('name', e.get('where', 'unnamed'))!r})"
        unknown = set(e) - allowed
        if unknown or not required <= set(e):
            raise ValueError(f"{where}: needs {sorted(required)}; unknown keys {sorted(unknown)}")
        out.append((where, e))
    return out


def load_mutants(assignment: str, root: Path, blind: bool = False) -> list[Mutant]:
    """The mutants of ``assignment`` kept in the course (``[]`` when it has none); with ``blind``,
    those of ``tests/mutants/blind/`` instead."""
    paths = blind_files(assignment, root) if blind else [mutants_file(assignment, root)]
    out = []
    entries = [x for path in paths
               for x in _entries(path, "mutant", {"name", "cell"}, {"name", "cell", "old", "new", "source", "also"})]
    for where, e in entries:
        if ("source" in e) == ("old" in e) or ("old" in e) != ("new" in e):
            raise ValueError(f"{where}: give either 'source' or both 'old' and 'new'")
        old, new = e.get("old", []), e.get("new", [])
        old, new = ([old], [new]) if isinstance(old, str) else (old, new)
        if len(old) != len(new):
            raise ValueError(f"{where}: 'old' and 'new' need as many entries ({len(old)} vs {len(new)})")
        out.append(Mutant(e["name"], e["cell"], tuple(zip(old, new)), e.get("source"), tuple(e.get("also", ())),
                          blind=blind))
    return out


def load_alternatives(assignment: str, root: Path) -> list[Alternative]:
    """The other correct solutions kept for ``assignment`` (in both mutant files)."""
    keys = {"name", "cell", "source"}
    return [Alternative(e["name"], e["cell"], e["source"])
            for path in (mutants_file(assignment, root), *blind_files(assignment, root))
            for _, e in _entries(path, "alternative", keys, keys)]


def load_equivalents(assignment: str, root: Path) -> list[Equivalent]:
    keys = {"cell", "operator", "where", "reason"}
    return [Equivalent(e["cell"], e["operator"], e["where"], e["reason"])
            for _, e in _entries(mutants_file(assignment, root), "equivalent", keys, keys)]


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

def _run_cells(cells, start, stop, replace, namespace, timeout) -> dict[str, str]:
    """Run ``cells[start:stop]`` in ``namespace`` (with ``replace[grade_id]`` in place of a cell's
    source); returns the graded cells that failed, with the first line of each error."""
    import contextlib
    import io
    import traceback

    failed = {}
    for gid, kind, source in cells[start:stop]:
        source = replace.get(gid, source)
        err = io.StringIO()
        signal.setitimer(signal.ITIMER_REAL, timeout)
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
    return failed


class CellTimeout(Exception):
    pass


def _worker() -> int:
    """Child process: read ``{"cells", "variants": [{"name", "replace", "stop"}], "timeout", "out"}``
    on stdin, write ``[{"name", "failed": {grade_id: first error line}, "applies"}]`` to ``out``.

    The first variant is the reference (it replaces nothing) and runs in this process; every other
    variant runs in a child forked just before its first replaced cell, so the cells before it run
    once for all of them, and nothing a variant does reaches the next. ``stop`` (a grade_id) ends a
    variant after that cell."""
    import select

    import torch

    torch.set_num_threads(1)      # one thread: forking is safe, and tiny tensors gain nothing from more
    job = json.load(sys.stdin)
    cells, timeout = job["cells"], job["timeout"]
    index = {gid: i for i, (gid, _, _) in enumerate(cells)}

    def alarm(signum, frame):
        raise CellTimeout(f"ran past {timeout} s")

    signal.signal(signal.SIGALRM, alarm)
    # the modules the graded cells watch, imported once here rather than in every forked child
    import importlib
    for _, _, source in cells:
        for args in re.findall(r"reference_calls\(([^)]*)\)", source):
            for name in re.findall(r"[\"']([\w.]+)[\"']", args):
                importlib.import_module(name)
    results: list[dict | None] = [None] * len(job["variants"])
    later = [v for v in range(1, len(results)) if "kinds" in job["variants"][v]]

    def first_replaced(vs: list[int]) -> dict[int, list[int]]:
        starts: dict[int, list[int]] = {}
        for v in vs:
            replace = job["variants"][v]["replace"]
            starts.setdefault(min(index[g] for g in replace) if replace else len(cells), []).append(v)
        return starts

    def in_child(v: int, start: int, namespace: dict) -> dict:
        variant = job["variants"][v]
        stop = index[variant["stop"]] + 1 if variant.get("stop") else len(cells)
        failed = _run_cells(cells, start, stop, variant["replace"], namespace, timeout)
        state = namespace.get("_mut_state")
        applies = bool(state["applies"]) if isinstance(state, dict) and "applies" in state else None
        return {"name": variant["name"], "failed": failed, "applies": applies}

    def fork_all(vs: list[int], start: int, namespace: dict) -> None:
        """Run the variants ``vs`` in forked children, ``job["jobs"]`` at a time."""
        gc.collect()
        gc.freeze()                    # children then share the parent's objects without copying them
        pending, running = list(vs), {}   # read fd -> (variant, pid, deadline, chunks)
        while pending or running:
            while pending and len(running) < job.get("jobs", 1):
                v = pending.pop(0)
                read, write = os.pipe()
                pid = os.fork()
                if pid == 0:                                    # the child: run, report, leave at once
                    os.close(read)
                    try:
                        out = json.dumps(in_child(v, start, namespace)).encode()
                    except BaseException as exc:  # noqa: BLE001
                        out = json.dumps({"name": job["variants"][v]["name"], "applies": None,
                                          "failed": {"<harness>": f"{type(exc).__name__}: {exc}"[:300]}}).encode()
                    with os.fdopen(write, "wb") as f:
                        f.write(out)
                    os._exit(0)
                os.close(write)
                running[read] = (v, pid, time.monotonic() + timeout * (len(cells) - start) + 10, [])
            soonest = min(d for _, _, d, _ in running.values())
            ready, _, _ = select.select(list(running), [], [], max(0.0, soonest - time.monotonic()))
            done = []
            for fd in ready:
                chunk = os.read(fd, 1 << 16)
                if chunk:
                    running[fd][3].append(chunk)
                else:
                    done.append(fd)
            done += [fd for fd, (_, _, d, _) in running.items() if fd not in done and time.monotonic() > d]
            for fd in done:
                v, pid, _, chunks = running.pop(fd)
                os.close(fd)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                os.waitpid(pid, 0)
                try:
                    results[v] = json.loads(b"".join(chunks))
                except ValueError:
                    own = [g for g, kind, _ in cells[start:] if kind == "graded"]
                    results[v] = {"name": job["variants"][v]["name"], "applies": None,
                                  "failed": {g: "the mutant's process died or hung" for g in own}}
        gc.unfreeze()

    def sweep(vs: list[int], kinds: dict | None) -> dict[str, str]:
        """Run the reference once, forking the variants ``vs`` on the way; with ``kinds``, record
        the kind of every argument the solution functions get (``kinds[cell][param]``)."""
        starts, namespace, failed = first_replaced(vs), {"__name__": "__main__"}, {}
        for i in range(len(cells) + 1):
            if i in starts:
                fork_all(starts[i], i, namespace)
            if i < len(cells):
                failed.update(_run_cells(cells, i, i + 1, {}, namespace, timeout))
                if kinds is not None and cells[i][1] == "solution":
                    _record_arguments(cells[i][0], namespace, kinds.setdefault(cells[i][0], {}))
        return failed

    # first every variant that always runs, recording what each argument is; then those that only
    # apply to some kinds of argument (a module, a tensor ...), where the tests pass one
    kinds: dict[str, dict[str, set]] = {}
    failed = sweep([v for v in range(1, len(results)) if v not in later], kinds if later else None)
    runnable = []
    for v in later:
        variant = job["variants"][v]
        (cell,) = variant["replace"]
        seen = kinds.get(cell, {}).get(variant["param"])
        if seen is None or seen & set(variant["kinds"]):     # unrecorded (a class's method): run it
            runnable.append(v)
        else:
            results[v] = {"name": variant["name"], "failed": {}, "applies": False}
    if runnable:
        sweep(runnable, None)
    results[0] = {"name": job["variants"][0]["name"], "failed": failed, "applies": None}
    Path(job["out"]).write_text(json.dumps(results))
    return 0


def _kind(value) -> str:
    """What an argument is, for the operators that change arguments: ``module``, ``float-leaf`` (a
    floating tensor that may take requires_grad or a .grad), ``tensor``, ``dict`` (of tensors) or
    ``other``."""
    import torch

    if isinstance(value, torch.nn.Module):
        return "module"
    if isinstance(value, torch.Tensor):
        if value.is_floating_point() and value.is_leaf:
            return "float-leaf"
        return "tensor" if value.is_floating_point() or value.dtype == torch.int64 else "other"
    if isinstance(value, dict) and any(isinstance(v, torch.Tensor) for v in value.values()):
        return "dict"
    return "other"


def _record_arguments(cell: str, namespace: dict, kinds: dict[str, set]) -> None:
    """Wrap the functions ``cell`` defined so that every call records the kind of each argument."""
    import functools
    import inspect

    for name, fn in list(namespace.items()):
        code = getattr(fn, "__code__", None)
        if not inspect.isfunction(fn) or code is None or code.co_filename != f"<{cell}>":
            continue
        signature = inspect.signature(fn)

        def recording(*args, __fn=fn, __sig=signature, **kwargs):
            try:
                for param, value in __sig.bind(*args, **kwargs).arguments.items():
                    kinds.setdefault(param, set()).add(_kind(value))
            except TypeError:
                pass
            return __fn(*args, **kwargs)

        namespace[name] = functools.wraps(fn)(recording)


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
    generic: GenericReport | None = None         # with run(generic=True)

    @property
    def caught(self) -> int:
        return sum(o.caught for o in self.outcomes)

    @property
    def score(self) -> float:
        return self.caught / len(self.outcomes) if self.outcomes else 0.0

    def summary(self) -> str:
        return (f"{self.assignment}: {self.caught}/{len(self.outcomes)} mutants caught "
                f"({100 * self.score:.0f}%)")


def execute(prog: Program, variants: list[dict], root: Path, timeout: int = CELL_TIMEOUT,
            jobs: int | None = None) -> list[dict]:
    """Run the cells of ``prog`` once per variant (``{"name", "replace": {grade_id: source},
    "stop": grade_id or None}``; the first must be the reference, replacing nothing) in one child
    process. Returns per variant ``{"name", "failed": {grade_id: error}, "applies"}``."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        job = {"cells": prog.cells, "variants": variants, "timeout": timeout, "out": str(out),
               "jobs": jobs or min(4, os.cpu_count() or 1)}
        proc = subprocess.run([sys.executable, "-m", "vizlib.course.mutants", "--worker"], input=json.dumps(job),
                              capture_output=True, text=True, cwd=str(root),
                              timeout=timeout * len(prog.cells) * len(variants) + 60)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"the mutation harness died on {prog.assignment}:\n{proc.stderr[-3000:]}")
        return json.loads(out.read_text())


@dataclass
class GenericOutcome:
    """One generic mutant: ``status`` is "caught", "survived", "equivalent" (declared, with the
    reason) or "does not apply" (a run-time operator that never met a value of its kind)."""
    site: operators.Site
    status: str
    detail: str = ""


@dataclass
class GenericReport:
    assignment: str
    outcomes: list[GenericOutcome]
    problems: list[str]

    def table(self) -> list[tuple[str, str, dict[str, int]]]:
        """Per function and operator, how many sites were caught / equivalent / survived / n.a."""
        rows: dict[tuple[str, str], dict[str, int]] = {}
        for o in self.outcomes:
            counts = rows.setdefault((o.site.cell, o.site.operator), {})
            counts[o.status] = counts.get(o.status, 0) + 1
        return [(cell, op, counts) for (cell, op), counts in rows.items()]

    def summary(self) -> str:
        applied = [o for o in self.outcomes if o.status != "does not apply"]
        caught = sum(o.status == "caught" for o in applied)
        equivalent = sum(o.status == "equivalent" for o in applied)
        return (f"{self.assignment}: {caught}/{len(applied) - equivalent} generic mutants caught, "
                f"{equivalent} equivalent, {len(self.outcomes) - len(applied)} do not apply")


def run(assignment: str, root: Path, mutants: list[Mutant] | None = None, min_per_function: int = 3,
        timeout: int = CELL_TIMEOUT, alternatives: list[Alternative] | None = None,
        generic: bool = False) -> Report:
    """Run every mutant of ``assignment`` (default: those in the course, the blind ones included)
    and every alternative correct solution against its graded cells; with ``generic``, every
    generic operator at every site of every solution too (in the same run: ``Report.generic``).

    Returns a :class:`Report`; ``problems`` lists what makes the graded cells untrustworthy: a
    mutant not caught, a mutant failing other cells than it declares, a graded function with fewer
    than ``min_per_function`` mutants, a reference or an alternative that fails a cell, a blank
    that passes one.
    """
    prog = program(assignment, root)
    if mutants is None:
        mutants = load_mutants(assignment, root) + load_mutants(assignment, root, blind=True)
    alternatives = load_alternatives(assignment, root) if alternatives is None else alternatives
    solutions = prog.solutions
    problems = []
    for m in [*mutants, *alternatives]:
        if m.cell not in solutions:
            raise ValueError(f"{assignment}: {m.name!r} names {m.cell!r}, which is not a solution "
                             f"cell (those are {sorted(solutions)})")
        for other in getattr(m, "also", ()):
            if other not in prog.graded:
                raise ValueError(f"{assignment}: mutant {m.name!r} lists {other!r} in 'also', which is "
                                 f"not a graded cell")
    sites = _sites(prog) if generic else []
    variants = [{"name": "reference", "replace": {}},
                {"name": "blank", "replace": released_solutions(assignment, root)}]
    variants += [{"name": m.name, "replace": {m.cell: m.apply(solutions[m.cell])},
                  "stop": prog.tests[m.cell][-1] if m.blind and prog.tests[m.cell] else None} for m in mutants]
    variants += [{"name": a.name, "replace": {a.cell: a.source.strip("\n") + "\n"}} for a in alternatives]
    variants += _site_variants(prog, sites)
    results = execute(prog, variants, root, timeout)
    reference, blank = results[0], results[1]
    rest = results[2:2 + len(mutants)]
    alt_results = results[2 + len(mutants):2 + len(mutants) + len(alternatives)]
    for gid, error in reference["failed"].items():
        problems.append(f"{assignment}/{gid}: the reference solution fails it: {error}")
    for gid in prog.graded:
        if gid not in blank["failed"]:
            problems.append(f"{assignment}/{gid}: the blank assignment passes it (a test that cannot fail)")
    for a, r in zip(alternatives, alt_results):
        for gid, error in r["failed"].items():
            problems.append(f"{assignment}/{a.cell}: the correct alternative {a.name!r} fails {gid}: {error}")
    outcomes = []
    for m, r in zip(mutants, rest):
        o = Outcome(m, r["failed"], prog.tests[m.cell])
        outcomes.append(o)
        if not o.caught:
            problems.append(f"{assignment}/{m.cell}: {'blind ' if m.blind else ''}mutant {m.name!r} is not "
                            f"caught by {', '.join(o.own) or 'any graded cell'}")
        elif set(o.failed) != o.expected and not m.blind:
            extra, missing = sorted(set(o.failed) - o.expected), sorted(o.expected - set(o.failed))
            problems.append(f"{assignment}/{m.cell}: mutant {m.name!r} "
                            + "; ".join(filter(None, [extra and f"also fails {extra} (declare it in 'also')",
                                                      missing and f"does not fail {missing}"])))
    for cell in solutions:
        n = sum(m.cell == cell and not m.blind for m in mutants)
        if n < min_per_function:
            problems.append(f"{assignment}/{cell}: {n} mutants, fewer than {min_per_function}")
        if alternatives and not any(a.cell == cell for a in alternatives):
            problems.append(f"{assignment}/{cell}: no alternative correct solution")
    report = Report(assignment, outcomes, problems)
    if generic:
        report.generic = _judge_sites(prog, root, sites, results[-len(sites):] if sites else [])
    return report


def _sites(prog: Program, cells: list[str] | None = None) -> list[operators.Site]:
    return [s for cell in (cells or list(prog.solutions)) for s in operators.sites(cell, prog.solutions[cell])]


def _site_variants(prog: Program, sites: list[operators.Site]) -> list[dict]:
    """A generic site runs its own part only: up to the last graded cell of that part."""
    out = []
    for s in sites:
        variant = {"name": f"{s.operator} @ {s.where}", "replace": {s.cell: s.source},
                   "stop": prog.tests[s.cell][-1] if prog.tests[s.cell] else None}
        if s.operator in operators.APPLIES_TO:        # run only where the tests pass that kind of argument
            variant.update(param=s.where.split(": ")[-1], kinds=sorted(operators.APPLIES_TO[s.operator]))
        out.append(variant)
    return out


def run_generic(assignment: str, root: Path, timeout: int = CELL_TIMEOUT,
                cells: list[str] | None = None) -> GenericReport:
    """Apply every generic operator (:mod:`vizlib.course.operators`) at every site of every
    solution cell (or of ``cells``) and run the part's graded cells on each mutant."""
    prog = program(assignment, root)
    sites = _sites(prog, cells)
    results = execute(prog, [{"name": "reference", "replace": {}}, *_site_variants(prog, sites)], root, timeout)
    report = _judge_sites(prog, root, sites, results[1:], cells)
    report.problems[:0] = [f"{assignment}/{gid}: the reference solution fails it: {error}"
                           for gid, error in results[0]["failed"].items()]
    return report


def _judge_sites(prog: Program, root: Path, sites: list[operators.Site], results: list[dict],
                 cells: list[str] | None = None) -> GenericReport:
    assignment = prog.assignment
    equivalents = {(e.cell, e.operator, e.where): e for e in load_equivalents(assignment, root)}
    problems, outcomes = [], []
    for s, r in zip(sites, results):
        own = [g for g in prog.tests[s.cell] if g in r["failed"]]
        if own:
            status, detail = "caught", r["failed"][own[0]]
        elif s.runtime and r.get("applies") is False:
            status, detail = "does not apply", ""
        elif s.key in equivalents:
            status, detail = "equivalent", equivalents[s.key].reason
        else:
            status, detail = "survived", ""
            problems.append(f"{assignment}/{s.cell}: generic mutant {s.operator} @ {s.where!r} survives "
                            f"(strengthen the tests, or declare it [[equivalent]] with the reason)")
        outcomes.append(GenericOutcome(s, status, detail))
    live = {o.site.key for o in outcomes if o.status == "equivalent"}
    for key, e in equivalents.items():
        if key not in live and (cells is None or e.cell in cells):
            problems.append(f"{assignment}/{e.cell}: [[equivalent]] {e.operator} @ {e.where!r} matches no "
                            f"surviving generic mutant (caught now, or the site is gone): remove it")
    return GenericReport(assignment, outcomes, problems)


def format_generic(report: GenericReport, verbose: bool = False) -> str:
    lines = [report.summary()]
    by_cell: dict[str, list[str]] = {}
    for cell, op, counts in report.table():
        text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        by_cell.setdefault(cell, []).append(f"{op} ({text})")
    for cell, ops in by_cell.items():
        lines.append(f"  {cell}: " + "; ".join(ops))
    for o in report.outcomes:
        if o.status in ("survived", "equivalent") or verbose:
            lines.append(f"    {o.status.upper() if o.status == 'survived' else o.status:14s} {o.site.cell}: "
                         f"{o.site.operator} @ {o.site.where}" + (f"  ({o.detail})" if o.detail else ""))
    return "\n".join(lines)


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
