"""Colab in one click and one cell: the badge, the install cell and the runtime of every notebook.

    vizlib colab            # write them into lectures/ and solutions/ (then `vizlib release`)
    vizlib colab --check    # exit 1 if any notebook lacks them or disagrees

(``python -m vizlib.course.colab`` runs the same command.)

The repository's address lives in one place, ``[project.urls] Repository`` in ``pyproject.toml``;
every badge and install cell is generated from it. Each lecture and each assignment opens with

1. a markdown cell holding the "Open in Colab" badge of that very notebook (an assignment's badge
   opens the student release under ``assignments/``, not the solution);
2. a code cell that, on Colab only, installs the course with pip — not editable, so ``import vizlib``
   works in the same kernel without a restart, and with loose requirements, so Colab's own torch and
   ipywidgets stay as they are. Anywhere else it does nothing.

Both carry the cell tag ``colab`` so that running this again replaces them instead of adding more.
The notebooks' metadata asks Colab for a GPU runtime.
"""
from __future__ import annotations

import copy
import sys
import tomllib
from pathlib import Path

import nbformat

from .. import cli
from .root import COURSE_HELP, course_root

TAG = "colab"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
COLAB_METADATA = {"accelerator": "GPU", "colab": {"provenance": [], "gpuType": "T4"}}


def repository_url(root: Path) -> str:
    """``[project.urls] Repository`` of the course's ``pyproject.toml`` (a GitHub address)."""
    meta = tomllib.loads((Path(root) / "pyproject.toml").read_text())
    url = meta.get("project", {}).get("urls", {}).get("Repository", "")
    if not url.startswith("https://github.com/"):
        raise ValueError(f"pyproject.toml: [project.urls] Repository must be a https://github.com/ address, "
                         f"not {url!r}")
    return url.rstrip("/").removesuffix(".git")


def notebooks(root: Path) -> list[Path]:
    """The notebooks that get a badge: every lecture and every assignment source."""
    root = Path(root)
    return sorted((root / "lectures").glob("[0-9]*.ipynb")) + sorted((root / "solutions").glob("*/*.ipynb"))


def opened_path(path: Path, root: Path) -> str:
    """The repository path Colab opens for ``path``: an assignment's release, not its solution."""
    rel = Path(path).resolve().relative_to(Path(root).resolve())
    if rel.parts[0] == "solutions":
        rel = Path("assignments", *rel.parts[1:])
    return rel.as_posix()


def badge_source(path: Path, root: Path, branch: str = "main") -> str:
    repo = repository_url(root).removeprefix("https://github.com/")
    link = f"https://colab.research.google.com/github/{repo}/blob/{branch}/{opened_path(path, root)}"
    return f"[![Open In Colab]({BADGE})]({link})"


def install_source(root: Path) -> str:
    return (
        "# On Colab: install the course (not editable, so no restart is needed; Colab's torch stays).\n"
        "# Anywhere else this cell does nothing.\n"
        "import sys\n"
        "\n"
        "if \"google.colab\" in sys.modules:\n"
        "    import subprocess\n"
        "\n"
        f"    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\", \"vizlib @ git+{repository_url(root)}\"],\n"
        "                   check=True)\n"
    )


def _tagged(cell) -> bool:
    return TAG in cell.get("metadata", {}).get("tags", [])


def with_colab(nb, path: Path, root: Path):
    """A copy of ``nb`` with its badge and install cells (replacing old ones) and Colab metadata."""
    nb = copy.deepcopy(nb)
    nb.cells = [c for c in nb.cells if not _tagged(c)]
    badge = nbformat.v4.new_markdown_cell(badge_source(path, root), metadata={"tags": [TAG]})
    install = nbformat.v4.new_code_cell(install_source(root), metadata={"tags": [TAG]})
    badge.id, install.id = "colab-badge", "colab-install"  # stable ids: rewriting changes nothing
    nb.cells = [badge, install, *nb.cells]
    for key, value in COLAB_METADATA.items():
        nb.metadata[key] = copy.deepcopy(value)
    return nb


def _comparable(nb) -> list:
    return [(c.cell_type, c.source, sorted(c.get("metadata", {}).get("tags", []))) for c in nb.cells] + \
        [{k: nb.metadata.get(k) for k in COLAB_METADATA}]


def problems(root: Path) -> list[str]:
    """Every notebook whose badge, install cell or Colab metadata is missing or out of date."""
    out = []
    for path in notebooks(root):
        nb = nbformat.read(path, as_version=4)
        if _comparable(nb) != _comparable(with_colab(nb, path, root)):
            out.append(f"{Path(path).relative_to(root)}: badge, install cell or Colab metadata missing or out "
                       "of date (run python -m vizlib.course.colab)")
    return out


def write(root: Path) -> list[Path]:
    """Give every notebook its cells; returns the notebooks changed."""
    changed = []
    for path in notebooks(root):
        nb = nbformat.read(path, as_version=4)
        new = with_colab(nb, path, root)
        if _comparable(nb) != _comparable(new):
            nbformat.write(new, path)
            changed.append(path)
    return changed


def add_arguments(parser) -> None:
    """``vizlib colab [--check] [--course DIR]``."""
    parser.add_argument("--check", action="store_true", help="only report notebooks that are out of date")
    parser.add_argument("--course", help=COURSE_HELP)
    parser.set_defaults(run=_colab_command)


def _colab_command(args) -> int:
    root = course_root(args.course)
    if args.check:
        found = problems(root)
        print("\n".join(found) or "every notebook has its Colab badge and install cell")
        return 1 if found else 0
    for path in write(root):
        print(f"updated {path.relative_to(root)}")
    return 0


def main(argv=None) -> int:
    """``python -m vizlib.course.colab ...``: ``vizlib colab`` of the one command tree."""
    return cli.main(["colab", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
