"""The course folder: the one that holds ``lectures/``, ``solutions/`` and ``nbgrader_config.py``.

Every course command (``vizlib book``, ``release``, ``check-assignments``, ``grade``,
``synthetic-class``, ``colab``) works on the course named by ``--course DIR``, else on the nearest
folder at or above the current directory that holds what the command needs: never on the folder
vizlib happens to be installed from, so an installed vizlib serves any checkout of the course.
"""
from __future__ import annotations

from pathlib import Path

#: The help of every course command's ``--course`` option.
COURSE_HELP = "the course folder (default: the one at or above the current directory)"

#: What each kind of command needs in the course folder (a name ending in ``/`` is a folder).
LECTURES = ("lectures/",)
GRADING = ("nbgrader_config.py", "solutions/")


class CourseNotFoundError(ValueError):
    """No course folder (one holding what the command needs) where one was looked for."""


def _missing(folder: Path, needs: tuple[str, ...]) -> list[str]:
    """The entries of ``needs`` that ``folder`` lacks."""
    return [n for n in needs if not ((folder / n).is_dir() if n.endswith("/") else (folder / n).is_file())]


def course_root(explicit: str | Path | None = None, needs: tuple[str, ...] = GRADING) -> Path:
    """The course to work on: ``explicit`` (``--course DIR``), else the nearest folder from the
    current directory up that holds everything in ``needs`` (:data:`GRADING` or :data:`LECTURES`).

    Raises :class:`CourseNotFoundError`, in one line that names what is missing and suggests
    ``--course``.
    """
    wanted = " and ".join(needs)
    if explicit is not None:
        folder = Path(explicit).expanduser().resolve()
        missing = _missing(folder, needs)
        if missing:
            raise CourseNotFoundError(f"{folder} is not a course folder: it needs {wanted} "
                                      f"(it has no {' and no '.join(missing)}); pass --course DIR")
        return folder
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if not _missing(folder, needs):
            return folder
    raise CourseNotFoundError(f"no course folder at or above {here}: run from the course folder (the one "
                              f"with {wanted}) or pass --course DIR")
