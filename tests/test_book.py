"""The book: pages, figures, failures marked, a lecture that never finishes killed."""
from pathlib import Path

import nbformat

from vizlib.course import book


def _notebook(path: Path, sources: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A tiny lecture")] + [nbformat.v4.new_code_cell(s) for s in sources]
    nbformat.write(nb, path)
    return path


def test_book_builds_pages_figures_and_marks_failures(tmp_path):
    lectures = tmp_path / "lectures"
    lectures.mkdir()
    _notebook(lectures / "01_ok.ipynb", [
        "import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "from vizlib import config\nprint('quick', config.quick())",
        "%matplotlib inline\nplt.plot([0, 1], [1, 0]); plt.show()",
    ])
    _notebook(lectures / "02_broken.ipynb", ["raise RuntimeError('lecture bug')"])
    out = tmp_path / "book"
    ok = book.build_book(lectures, out, quick=True)
    assert ok is False  # one lecture failed, and the build says so
    index = (out / "index.html").read_text()
    assert "01_ok.html" in index and "02_broken.html" in index and "FAILED" in index
    assert index.count("FAILED") == 1
    assert (out / "figures" / "01_ok" / "fig_01.png").read_bytes()[:4] == b"\x89PNG"
    page = (out / "02_broken.html").read_text()
    assert "lecture bug" in page  # the error is shown where it happened
    executed = nbformat.read(out / "notebooks" / "01_ok.ipynb", as_version=4)
    assert "quick True" in "".join(o.get("text", "") for o in executed.cells[1].outputs)


def test_book_kills_a_lecture_that_never_finishes(tmp_path):
    lectures = tmp_path / "lectures"
    lectures.mkdir()
    _notebook(lectures / "01_stuck.ipynb", ["import time\ntime.sleep(600)"])
    _notebook(lectures / "02_fine.ipynb", ["print('still built')"])
    out = tmp_path / "book"
    assert book.build_book(lectures, out, quick=True, limit=4) is False
    index = (out / "index.html").read_text()
    assert index.count("FAILED") == 1 and "02_fine.html" in index
    assert "did not finish within 4 s" in (out / "01_stuck.html").read_text()
