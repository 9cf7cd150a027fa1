"""The nbgrader pipeline: release student notebooks from the solutions, and autograde.

``solutions/<assignment>/`` holds nbgrader *source* notebooks (solutions and hidden tests
between ``### BEGIN/END SOLUTION`` and ``### BEGIN/END HIDDEN TESTS`` markers);
``assignments/<assignment>/`` is generated from them by :func:`release` and never edited
by hand. Everything nbgrader writes (gradebook, submissions, feedback) goes to a scratch
course folder, so the repository only ever holds sources and the release.

    vizlib release                       # regenerate assignments/
    vizlib check-assignments             # solution = full marks, blank = zero
    vizlib check-assignments --mutants   # every realistic wrong solution loses points
    vizlib check-assignments --mutants --generic   # ... and every generic mutation operator is caught
    vizlib check-assignments --contracts # every graded function's clauses, each held by an assertion

(``python -m vizlib.course.grading release|check`` runs the same commands.) The course is the one
at or above the current directory, or ``--course DIR`` (:func:`~vizlib.course.root.course_root`).
"""
from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path

from .. import cli
from .root import COURSE_HELP, CourseNotFoundError, course_root


def cell_text(cell: dict) -> str:
    """A notebook cell's source as one string (nbformat stores a string or a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def assignment_ids(root: Path | None = None) -> list[str]:
    """The assignments that have a source folder under ``solutions/``."""
    root = course_root(root)
    return sorted(p.name for p in (root / "solutions").iterdir()
                  if p.is_dir() and any(p.glob("*.ipynb")))


#: The instructor's own read-only cells (imports, helpers) may run this many times the per-cell
#: limit: a cold ``import torch`` on a busy machine once took longer than a 15 s limit and zeroed
#: two students of a synthetic class for a cell they could not change.
INSTRUCTOR_CELL_FACTOR = 10


def _cell_limit(timeout: int):
    """nbclient's ``timeout_func``: ``timeout`` for the cells a student's code runs in (solutions
    and graded tests), a generous limit for the read-only cells the instructor wrote."""
    def limit(cell) -> int:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if meta.get("locked") and not meta.get("grade") and not meta.get("solution"):
            return max(timeout * INSTRUCTOR_CELL_FACTOR, 120)
        return timeout
    return limit


def nbgrader_api(course: Path, timeout: int = 300, untrusted: dict | None = None, report: Path | None = None):
    """nbgrader's API on the course folder ``course``, with ``timeout`` seconds per cell.

    ``untrusted``: grade student code with :class:`~vizlib.course.execute.GuardedExecute` (the
    watch between cells, capped output) and, when the dict holds sandbox limits
    (:class:`~vizlib.course.sandbox.Limits` fields), a sandboxed kernel; ``None``: nbgrader's own
    ``Execute`` (the course's own notebooks). ``report``: where GuardedExecute writes what the
    notebook replaced (JSON).
    """
    from nbgrader.apps import NbGraderAPI
    from nbgrader.converters.autograde import Autograde
    from nbgrader.preprocessors import Execute
    from traitlets.config import Config

    c = Config()
    c.CourseDirectory.root = str(course)
    c.CourseDirectory.db_url = f"sqlite:///{course / 'gradebook.db'}"
    c.ExecutePreprocessor.timeout = timeout
    c.Execute.timeout = timeout
    c.Execute.timeout_func = _cell_limit(timeout)
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    if untrusted is not None:
        from .execute import GuardedExecute

        c.Autograde.autograde_preprocessors = [GuardedExecute if p is Execute else p
                                               for p in Autograde.class_traits()["autograde_preprocessors"].default()]
        c.GuardedExecute.limits = dict(untrusted)
        c.GuardedExecute.report = str(report or "")
    return NbGraderAPI(config=c)


@contextlib.contextmanager
def nbgrader_environment(quick: bool):
    """nbgrader runs ``alembic`` from this Python's ``bin`` (which may not be on PATH when
    the venv is not activated); kernels inherit ``VIZLIB_QUICK``."""
    saved = {k: os.environ.get(k) for k in ("PATH", "VIZLIB_QUICK")}
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    if quick:
        os.environ["VIZLIB_QUICK"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def scratch_course(root: Path, assignment: str, scratch: Path) -> None:
    shutil.copytree(Path(root) / "solutions" / assignment, scratch / "source" / assignment,
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))


def release(assignment: str, root: Path | None = None, dest: Path | None = None) -> Path:
    """Generate the student version of ``assignment`` into ``dest`` (default ``assignments/``).

    Returns the folder written. Raises ``RuntimeError`` with nbgrader's log on failure.
    """
    root = course_root(root)
    dest = Path(dest) if dest is not None else root / "assignments" / assignment
    with tempfile.TemporaryDirectory(prefix="vizlib-release-") as tmp, nbgrader_environment(quick=False):
        scratch = Path(tmp)
        scratch_course(root, assignment, scratch)
        result = nbgrader_api(scratch).generate_assignment(assignment, force=True)
        if not result.get("success"):
            raise RuntimeError(f"nbgrader could not release {assignment}:\n{result.get('log', '')}"
                               f"\n{result.get('error', '')}")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(scratch / "release" / assignment, dest)
    return dest


def autograde(assignment: str, submissions: dict[str, Path], root: Path | None = None,
              quick: bool = True, timeout: int = 300) -> dict[str, dict[str, tuple[float, float]]]:
    """Autograde notebooks with nbgrader and return the score of every graded cell.

    Args:
        assignment: e.g. ``"assignment1"``.
        submissions: student id -> the notebook (or folder of notebooks) they submitted.
        quick: run the kernels with ``VIZLIB_QUICK=1``.

    Returns:
        ``{student: {grade_id: (score, max_score)}}``.
    """
    from nbgrader.api import Gradebook

    root = course_root(root)
    with tempfile.TemporaryDirectory(prefix="vizlib-grade-") as tmp, nbgrader_environment(quick):
        scratch = Path(tmp)
        scratch_course(root, assignment, scratch)
        api = nbgrader_api(scratch, timeout)
        result = api.generate_assignment(assignment, force=True)
        if not result.get("success"):
            raise RuntimeError(f"nbgrader could not release {assignment}:\n{result.get('log', '')}")
        source_names = [p.name for p in (scratch / "source" / assignment).glob("*.ipynb")]
        for student, submitted in submissions.items():
            folder = scratch / "submitted" / student / assignment
            folder.mkdir(parents=True)
            submitted = Path(submitted)
            if submitted.is_dir():
                for nb in submitted.glob("*.ipynb"):
                    shutil.copy(nb, folder / nb.name)
            else:
                shutil.copy(submitted, folder / (source_names[0] if len(source_names) == 1 else submitted.name))
        scores: dict[str, dict[str, tuple[float, float]]] = {}
        for student in submissions:
            result = api.autograde(assignment, student, force=True)
            if not result.get("success"):
                raise RuntimeError(f"autograding {student} failed:\n{result.get('log', '')}"
                                   f"\n{result.get('error', '')}")
        with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}") as gb:
            for student in submissions:
                submission = gb.find_submission(assignment, student)
                cells = {}
                for nb in submission.notebooks:
                    for grade in nb.grades:
                        cells[grade.name] = (float(grade.score), float(grade.max_score))
                scores[student] = cells
    return scores


def check(assignment: str, root: Path | None = None) -> list[str]:
    """Prove the assignment is gradable: the solution scores full marks on every graded
    cell and the blank release scores zero on every one. Returns a list of problems."""
    root = course_root(root)
    problems = []
    source = Path(root) / "solutions" / assignment
    blank = Path(root) / "assignments" / assignment
    scores = autograde(assignment, {"solution": source, "blank": blank}, root=root)
    for cell, (score, max_score) in sorted(scores["solution"].items()):
        if score != max_score:
            problems.append(f"{assignment}/{cell}: solution scores {score}/{max_score}")
    for cell, (score, max_score) in sorted(scores["blank"].items()):
        if score != 0:
            problems.append(f"{assignment}/{cell}: blank assignment scores {score}/{max_score} "
                            "(a test that cannot fail)")
    if not scores["solution"]:
        problems.append(f"{assignment}: no graded cells")
    return problems


def add_release_arguments(parser) -> None:
    """``vizlib release [ASSIGNMENT ...] [--course DIR]``."""
    parser.add_argument("assignments", nargs="*", help="assignments to release (default: all)")
    parser.add_argument("--course", help=COURSE_HELP)
    parser.set_defaults(run=_release_command)


def add_check_arguments(parser) -> None:
    """``vizlib check-assignments [ASSIGNMENT ...] [--course DIR] [--mutants [-v]]``."""
    parser.add_argument("assignments", nargs="*", help="assignments to check (default: all)")
    parser.add_argument("--course", help=COURSE_HELP)
    parser.add_argument("--mutants", action="store_true",
                        help="instead: run every realistic wrong solution in tests/mutants/ against the graded "
                             "cells and print the mutation score per assignment (fails below 100%%)")
    parser.add_argument("--generic", action="store_true",
                        help="with --mutants: also apply every generic mutation operator (vizlib/course/operators.py) "
                             "at every site of every solution and report, per function, which are caught")
    parser.add_argument("--contracts", action="store_true",
                        help="instead: list every graded function's clauses and check each is held by an assertion")
    parser.add_argument("-v", "--verbose", action="store_true", help="with --mutants: list every mutant")
    parser.set_defaults(run=_check_command)


def _course_and_assignments(args) -> tuple[Path, list[str]]:
    """The course folder and the assignments ``args`` name (default: all); prints the course."""
    root = course_root(args.course)
    known = assignment_ids(root)
    ids = args.assignments or known
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise CourseNotFoundError(f"{root} has no assignment {', '.join(unknown)}; it has {', '.join(known)}")
    print(f"course: {root}")
    return root, ids


def _release_command(args) -> int:
    root, ids = _course_and_assignments(args)
    for a in ids:
        print(f"released {a} -> {release(a, root)}")
    return 0


def _check_command(args) -> int:
    root, ids = _course_and_assignments(args)
    if args.contracts:
        from . import contracts
        problems = []
        for a in ids:
            print(contracts.format_contracts(a, root))
            problems += contracts.problems(a, root)
    elif args.mutants:
        from . import mutants
        problems = []
        for a in ids:
            report = mutants.run(a, root, generic=args.generic)
            print(mutants.format_report(report, verbose=args.verbose))
            problems += report.problems
            if report.generic is not None:
                print(mutants.format_generic(report.generic, verbose=args.verbose))
                problems += report.generic.problems
    else:
        problems = [msg for a in ids for msg in check(a, root)]
    for msg in problems:
        print(msg)
    print("all assignments grade correctly" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


def main(argv=None) -> int:
    """``python -m vizlib.course.grading release|check ...``: ``vizlib release`` and
    ``vizlib check-assignments`` of the one command tree (:mod:`vizlib.cli`)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["check"]:
        argv[0] = "check-assignments"
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
