"""The book renders offline: formulas typeset by its own copy of MathJax, an explorer widget's
first view as a figure, and nothing loaded from the network (checked in headless Chromium when
one is installed)."""
import base64
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from vizlib.course import book

LECTURE = [
    "# Formulas and an explorer\n\n"
    "The saliency of pixel $x_{ij}$ is $\\left|\\frac{\\partial y_c}{\\partial x_{ij}}\\right|$, and\n\n"
    "$$\\mathrm{ReLU}(x) = \\max(0, x)$$",
    "%matplotlib inline\nimport torch\nfrom vizlib import widgets\nfrom vizlib.models import load_model\n"
    "net = load_model('shapesnet', device='cpu')\nwidgets.filter_explorer(net, torch.rand(1, 3, 32, 32))",
    "from tqdm.auto import tqdm\nfor _ in tqdm(range(3)):\n    pass",  # a widget with no figure to show
]
FORMULAS = 3


@pytest.fixture(scope="module")
def tiny_book(tmp_path_factory) -> Path:
    """A one-lecture book: formulas in markdown, an explorer, a progress bar."""
    root = tmp_path_factory.mktemp("tiny_book")
    (root / "lectures").mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell(LECTURE[0])] + [nbformat.v4.new_code_cell(s) for s in LECTURE[1:]]
    nbformat.write(nb, root / "lectures" / "01_tiny.ipynb")
    assert book.build_book(root / "lectures", root / "book", quick=True) is True
    return root / "book"


class _Page(HTMLParser):
    """What a page loads (script sources, stylesheets, CSS imports), its images, MathJax's
    output elements and the text a reader sees (outside scripts and styles)."""

    def __init__(self, text: str):
        super().__init__()
        self.loads, self.images, self.mathjax, self.visible = [], [], [], []
        self._skip = 0
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.loads.append(a["src"])
        if tag == "link" and "stylesheet" in (a.get("rel") or ""):
            self.loads.append(a.get("href", ""))
        if tag == "img":
            self.images.append(a.get("src", ""))
        classes = (a.get("class") or "").split()
        if "MathJax" in classes or "MathJax_Display" in classes:
            self.mathjax.append(classes)
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if self._skip:
            if "@import" in data:  # a stylesheet pulled in from CSS
                self.loads += [part.split(")")[0].strip("'\" ") for part in data.split("@import")[1:]]
        else:
            self.visible.append(data)


def _remote(url: str) -> bool:
    url = url.strip().lower().removeprefix("url(")
    return url.startswith(("http:", "https:", "//"))


def test_no_page_loads_a_script_or_stylesheet_from_the_network(tiny_book):
    pages = sorted(tiny_book.glob("*.html"))
    assert [p.name for p in pages] == ["01_tiny.html", "index.html"]
    for page in pages:
        text = page.read_text(encoding="utf-8")
        parsed = _Page(text)
        assert not [u for u in parsed.loads if _remote(u)], page.name
        assert 'import("http' not in text and "widget-view+json" not in text, page.name
    lecture = _Page((tiny_book / "01_tiny.html").read_text(encoding="utf-8"))
    mathjax = [u for u in lecture.loads if "MathJax.js" in u]
    assert mathjax == [f"mathjax/MathJax.js?config={book.MATHJAX_CONFIG}"]
    assert (tiny_book / "mathjax" / "MathJax.js").is_file()
    size = sum(f.stat().st_size for f in (tiny_book / "mathjax").rglob("*") if f.is_file())
    assert size < 4e6  # only what the configuration loads, not the package's 12 MB
    # the explorer left its first view: on the page (the progress bar left nothing), in figures/,
    # and in the executed notebook beside the widget view a live frontend renders instead
    assert len([s for s in lecture.images if s.startswith("data:image/png;base64,")]) == 1
    assert (tiny_book / "figures" / "01_tiny" / "fig_01.png").read_bytes()[:4] == b"\x89PNG"
    executed = nbformat.read(tiny_book / "notebooks" / "01_tiny.ipynb", as_version=4)
    data = executed.cells[1].outputs[-1]["data"]
    assert book.WIDGET_VIEW in data and base64.b64decode(data["image/png"])[:4] == b"\x89PNG"


@pytest.fixture
def chromium() -> str:
    """A headless-capable Chromium or Chrome (``$VIZLIB_CHROMIUM`` first); the test is skipped without."""
    for name in (os.environ.get("VIZLIB_CHROMIUM"), "chromium", "chromium-browser", "google-chrome",
                 "google-chrome-stable", "chrome", "headless_shell"):
        if name and (found := shutil.which(name)):
            return found
    pytest.skip("no Chromium binary found (chromium, chromium-browser, google-chrome or $VIZLIB_CHROMIUM)")


def _dom(chromium: str, page: Path, profile: Path) -> str:
    """``page`` as headless Chromium leaves it once its scripts have run, with the network unusable:
    every request goes to a proxy on a closed local port and no host name resolves."""
    run = subprocess.run([chromium, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                          f"--user-data-dir={profile}", "--proxy-server=http://127.0.0.1:9",
                          "--proxy-bypass-list=<-loopback>", "--host-resolver-rules=MAP * ~NOTFOUND",
                          "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=90)
    assert run.returncode == 0 and "</html>" in run.stdout, run.stderr[-2000:]
    return run.stdout


def test_a_page_typesets_formulas_and_shows_the_explorer_offline_in_chromium(chromium, tiny_book, tmp_path):
    dom = _Page(_dom(chromium, tiny_book / "01_tiny.html", tmp_path / "profile"))
    assert len([c for c in dom.mathjax if "MathJax" in c]) >= FORMULAS      # typeset, one element each
    assert any("MathJax_Display" in c for c in dom.mathjax)                 # the display formula
    text = "".join(dom.visible)
    assert "$" not in text and "\\frac" not in text and "\\mathrm" not in text  # no raw TeX left
    figures = [s for s in dom.images if s.startswith("data:image/png;base64,")]
    assert len(figures) == 1 and "Loading widget" not in text
    # the same page with nbconvert's default (MathJax from a CDN) stays raw here: the check has teeth
    page = tmp_path / "cdn.html"
    page.write_text(book.to_html(nbformat.read(tiny_book / "notebooks" / "01_tiny.ipynb", as_version=4)),
                    encoding="utf-8")
    raw = _Page(_dom(chromium, page, tmp_path / "profile"))
    assert not raw.mathjax and "$\\mathrm{ReLU}(x) = \\max(0, x)$" in "".join(raw.visible)
