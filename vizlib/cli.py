"""The ``vizlib`` command.

    vizlib book [--quick] [LECTURE ...]    execute the lectures, write build/book/index.html
    vizlib release [ASSIGNMENT ...]        regenerate assignments/ from solutions/ (nbgrader)
    vizlib check-assignments [...]         solution = full marks, blank = zero
    vizlib grade ASSIGNMENT FOLDER -o OUT  autograde a class in parallel: grades.csv + feedback
    vizlib models                          list the course's networks and where weights come from
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__.strip())
        return 0
    command, rest = argv[0], argv[1:]
    if command == "book":
        from .course import book
        return book.main(rest)
    if command == "release":
        from .course import grading
        return grading.main(["release", *rest])
    if command == "check-assignments":
        from .course import grading
        return grading.main(["check", *rest])
    if command == "grade":
        from .course import classroom
        return classroom.main(rest)
    if command == "models":
        from .models import MODEL_NAMES, weights_path, OFFLINE_MODEL
        for name in MODEL_NAMES:
            where = "shipped with vizlib" if name == OFFLINE_MODEL else \
                (f"cached at {weights_path(name)}" if weights_path(name).exists() else "not downloaded yet")
            print(f"{name:14s} {where}")
        return 0
    print(f"vizlib: unknown command {command!r}\n\n{__doc__.strip()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
