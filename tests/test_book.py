"""The book: pages, figures, failures marked, a lecture that never finishes killed."""
import subprocess
import sys
from pathlib import Path

import nbformat

from vizlib import cli
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
    assert book.build_book(lectures, out, quick=True, limit=4, tries=1) is False
    index = (out / "index.html").read_text()
    assert index.count("FAILED") == 1 and "02_fine.html" in index
    assert "did not finish within 4 s" in (out / "01_stuck.html").read_text()


def test_pages_link_to_each_other_say_what_they_ran_on_and_partial_builds_keep_the_rest(tmp_path):
    lectures = tmp_path / "lectures"
    lectures.mkdir()
    _notebook(lectures / "01_net.ipynb", ["from vizlib import models\nnet = models.load_model('shapesnet')"])
    _notebook(lectures / "02_plain.ipynb", ["x = 1"])
    _notebook(lectures / "03_later.ipynb", ["y = 2"])
    out = tmp_path / "book"
    assert book.build_book(lectures, out, quick=True, only=["01", "02"]) is True
    first = (out / "01_net.html").read_text()
    assert "shapesnet:" in first and "Ran on:" in first and "quick mode" in first
    assert 'href="index.html"' in first and 'href="02_plain.html"' in first
    second = (out / "02_plain.html").read_text()
    assert 'href="01_net.html"' in second and 'href="03_later.html"' in second and "no course network" in second
    index = (out / "index.html").read_text()
    assert "ran on shapesnet" in index and "not built yet" in index           # 03 has not been built
    # the executed notebook itself is the lecture, without the probe or the page's header
    executed = nbformat.read(out / "notebooks" / "01_net.ipynb", as_version=4)
    assert len(executed.cells) == 2 and executed.metadata["vizlib"]["models"][0].startswith("shapesnet:")
    # a later build of one lecture updates only its entry
    assert book.build_book(lectures, out, quick=True, only=["03"]) is True
    index = (out / "index.html").read_text()
    assert "not built yet" not in index and "ran on shapesnet" in index and index.count("<li>") == 3


def test_vizlib_book_builds_the_course_it_is_given_from_anywhere(tmp_path):
    course, elsewhere = tmp_path / "course", tmp_path / "elsewhere"
    (course / "lectures").mkdir(parents=True)
    elsewhere.mkdir()
    _notebook(course / "lectures" / "01_only.ipynb", ["print('built from', __import__('os').getcwd())"])
    done = subprocess.run([sys.executable, "-m", "vizlib.cli", "book", "--course", str(course), "--quick"],
                          cwd=elsewhere, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    index = course / "build" / "book" / "index.html"
    assert "01_only.html" in index.read_text() and not (elsewhere / "build").exists()
    executed = nbformat.read(course / "build" / "book" / "notebooks" / "01_only.ipynb", as_version=4)
    assert f"built from {course / 'lectures'}" in executed.cells[1].outputs[0]["text"]  # run beside its lecture


def test_vizlib_book_without_a_course_says_what_is_missing_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["book"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"vizlib book: no course folder at or above {tmp_path.resolve()}") and len(err.splitlines()) == 1
    assert "lectures/" in err and "--course DIR" in err
    assert cli.main(["book", "--course", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path.resolve()} is not a course folder: it needs lectures/ (it has no lectures/)" in err
    assert "--course DIR" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "build").exists()


def test_explorers_display_as_a_widget_that_carries_a_figure_of_its_first_view():
    import ipywidgets
    import matplotlib.pyplot as plt
    import torch

    from vizlib import widgets
    from vizlib.models import load_model

    net = load_model("shapesnet", device="cpu")
    made = [widgets.filter_explorer(net, torch.rand(1, 3, 32, 32)),
            widgets.style_explorer(net, torch.rand(1, 3, 24, 24), torch.rand(1, 3, 24, 24), steps=1)]
    assert isinstance(made[0], ipywidgets.interactive) and isinstance(made[1], ipywidgets.VBox)
    if not hasattr(ipywidgets.Widget, "_repr_mimebundle_"):
        return  # ipywidgets 7 sends its bundle itself (_ipython_display_)
    for w in made:
        data, _ = w._repr_mimebundle_()
        assert book.WIDGET_VIEW in data and data["image/png"].startswith("iVBOR")  # base64 of a PNG
    first = made[0]._repr_mimebundle_()[0]["image/png"]
    made[0].children[0].value = 3  # moving a slider redraws the widget, not the first view
    assert made[0]._repr_mimebundle_()[0]["image/png"] == first
    plt.close("all")


def test_pages_show_a_widget_output_as_its_figure_and_leave_out_the_rest():
    png = "iVBORw0KGgo="
    view = {"version_major": 2, "version_minor": 0, "model_id": "m"}
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("explorer", outputs=[
        nbformat.v4.new_output("display_data", data={"text/plain": "Explorer()", book.WIDGET_VIEW: view,
                                                     "image/png": png}),
        nbformat.v4.new_output("display_data", data={"text/plain": "HBox()", book.WIDGET_VIEW: view}),
        nbformat.v4.new_output("stream", text="kept")])]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    book.static_outputs(nb)
    outputs = nb.cells[0].outputs
    assert [sorted(o.get("data", {})) for o in outputs] == [["image/png", "text/plain"], []]
    assert "widgets" not in nb.metadata


def test_mathjax_is_copied_into_the_book_once(tmp_path):
    url = book.install_mathjax(tmp_path)
    assert url.startswith("mathjax/MathJax.js?config=") and (tmp_path / url.split("?")[0]).is_file()
    stamp = tmp_path / "mathjax" / "VERSION"
    before = stamp.stat().st_mtime_ns
    assert book.install_mathjax(tmp_path) == url and stamp.stat().st_mtime_ns == before
