"""Colab in one click and one cell: every lecture and assignment has its badge and install cell,
generated from the one repository address in pyproject.toml; the cell installs on Colab only."""
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat

from vizlib.course import colab

ROOT = Path(__file__).resolve().parents[1]


def test_every_notebook_has_its_badge_and_install_cell():
    assert len(colab.notebooks(ROOT)) == 15 + 4
    assert colab.problems(ROOT) == []
    for path in colab.notebooks(ROOT):
        nb = nbformat.read(path, as_version=4)
        badge, install = nb.cells[0], nb.cells[1]
        assert colab.opened_path(path, ROOT) in badge.source and badge.source.startswith("[![Open In Colab]")
        assert install.cell_type == "code" and "google.colab" in install.source
        assert nb.metadata["accelerator"] == "GPU"
    # an assignment's badge opens the student release, which exists
    a1 = ROOT / "solutions" / "assignment1" / "assignment1.ipynb"
    assert colab.opened_path(a1, ROOT) == "assignments/assignment1/assignment1.ipynb"
    assert (ROOT / colab.opened_path(a1, ROOT)).is_file()
    released = nbformat.read(ROOT / "assignments" / "assignment1" / "assignment1.ipynb", as_version=4)
    assert released.cells[0].source == nbformat.read(a1, as_version=4).cells[0].source


def _run_install_cell(monkeypatch, on_colab: bool) -> list:
    calls = []
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: calls.append((a, k)))
    if on_colab:
        monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    else:
        monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(colab.install_source(ROOT), {})
    return calls


def test_the_install_cell_installs_on_colab_only_and_not_editable(monkeypatch):
    assert _run_install_cell(monkeypatch, on_colab=False) == []
    ((args, kwargs),) = _run_install_cell(monkeypatch, on_colab=True)
    cmd = args[0]
    assert cmd[:4] == [sys.executable, "-m", "pip", "install"] and kwargs == {"check": True}
    assert "-e" not in cmd and "--editable" not in cmd           # importable without a restart
    assert cmd[-1] == f"vizlib @ git+{colab.repository_url(ROOT)}"


def test_the_address_lives_in_pyproject_only(tmp_path):
    for folder in ("lectures", "solutions"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    text = (ROOT / "pyproject.toml").read_text()
    url = colab.repository_url(ROOT)
    (tmp_path / "pyproject.toml").write_text(text.replace(url, "https://github.com/someone/fork"))
    assert len(colab.problems(tmp_path)) == 19                   # every badge and cell now disagrees
    colab.write(tmp_path)
    assert colab.problems(tmp_path) == [] and colab.write(tmp_path) == []    # idempotent
    nb = nbformat.read(tmp_path / "lectures" / "05_occlusion.ipynb", as_version=4)
    assert "github/someone/fork/blob/main/lectures/05_occlusion.ipynb" in nb.cells[0].source
    assert sum(colab.TAG in c.metadata.get("tags", []) for c in nb.cells) == 2
    (tmp_path / "pyproject.toml").write_text(text.replace(url, "REPOSITORY_URL"))
    try:
        colab.repository_url(tmp_path)
    except ValueError as exc:
        assert "[project.urls] Repository must be a https://github.com/ address" in str(exc)
    else:
        raise AssertionError("a placeholder address must be refused")
