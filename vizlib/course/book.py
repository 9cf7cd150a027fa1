"""Execute the lecture notebooks and write a browsable HTML course book.

    vizlib book                    # the course at or above the current directory
    vizlib book --quick            # small sizes, as in CI
    vizlib book --course DIR 03    # lecture 03 of the course in DIR

(``python -m vizlib.course.book`` runs the same command.) The course is the folder holding
``lectures/`` (:func:`~vizlib.course.root.course_root`). Writes its ``build/book/index.html``, one
HTML page per lecture (figures embedded), every figure as a PNG under
``build/book/figures/<lecture>/`` and the executed notebooks under ``build/book/notebooks/``. A
lecture that fails is marked in the index, the others still run, and the command exits non-zero.

The pages need no network: formulas are typeset by a copy of MathJax in ``build/book/mathjax/``
(from the ``jupyter-server-mathjax`` package), an explorer widget shows the figure of its first
view (see :mod:`vizlib.widgets`) and no page loads a script or stylesheet from elsewhere.
"""
from __future__ import annotations

import argparse
import base64
import html
import json
import os
import sys
import time
from pathlib import Path

from .. import cli, config
from .root import LECTURES, course_root


def lecture_paths(lectures_dir: Path) -> list[Path]:
    """Lecture notebooks in course order (their names start with the lecture number)."""
    return sorted(p for p in Path(lectures_dir).glob("[0-9][0-9]_*.ipynb"))


def notebook_title(nb) -> str:
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return "untitled"


def execute_notebook(nb, folder: Path, quick: bool, timeout: int = 900, on_start=None) -> None:
    """Run notebook ``nb`` top to bottom in a fresh kernel started in ``folder``.

    Outputs are written into ``nb`` as it runs, so after a failure it holds everything up
    to the failing cell and the error. ``on_start()`` is called once the kernel is up, before
    the first cell runs.
    """
    import tempfile

    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    env_before = os.environ.get("VIZLIB_QUICK")
    os.environ["VIZLIB_QUICK"] = "1" if quick else "0"
    try:
        # Unix-socket (IPC) transport: no TCP ports to pick, release and race for. Over TCP the
        # book saw, now and then, a cell whose reply never arrived (client and kernel both idle).
        with tempfile.TemporaryDirectory(prefix="vizlib-kernel-") as sockets:
            km = KernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(sockets, "k"))
            client = NotebookClient(nb, km=km, timeout=timeout, kernel_name="python3",
                                    resources={"metadata": {"path": str(folder)}},
                                    store_widget_state=True)
            if on_start is not None:
                client.on_notebook_start = lambda **_: on_start()
            client.execute()
    finally:
        if env_before is None:
            os.environ.pop("VIZLIB_QUICK", None)
        else:
            os.environ["VIZLIB_QUICK"] = env_before


def extract_figures(nb, folder: Path) -> list[Path]:
    """Write every PNG output of ``nb`` to ``folder/fig_NN.png``; return the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" in data:
                path = folder / f"fig_{len(paths) + 1:02d}.png"
                path.write_bytes(base64.b64decode(data["image/png"]))
                paths.append(path)
    return paths


#: nbconvert's lab page without what would come from a CDN: require.js (the book has no
#: JavaScript outputs), the widget manager (widgets are static figures here) and Mermaid; MathJax
#: comes from ``mathjax_url``, with the web font the ``jupyter-server-mathjax`` copy ships.
PAGE_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<script>window.MathJax = {"HTML-CSS": {availableFonts: [], preferredFont: null, webFont: "STIX-Web",
                                       imageFont: null}, "fast-preview": {disabled: true}};</script>
{{ super() }}
{%- endblock html_head_js_mathjax -%}
"""

MATHJAX_DIR = "mathjax"  # the book's copy of MathJax, beside the pages
#: MathJax 2, whose API nbconvert's template configures; this combined configuration is the one
#: ``jupyter-server-mathjax`` ships (it leaves out the TeX fonts and the CommonHTML output).
MATHJAX_CONFIG = "TeX-AMS-MML_HTMLorMML-full,Safe"
#: What that configuration loads (about 2.5 MB of the package's 12): not the SVG output, the
#: accessibility extensions or the MathML input.
MATHJAX_FILES = ("MathJax.js", "LICENSE", "config/TeX-AMS-MML_HTMLorMML-full.js", "config/Safe.js",
                 "extensions/*.js", "extensions/TeX/**/*.js", "extensions/HTML-CSS/*.js",
                 "jax/input/TeX/*.js", "jax/element/**/*.js", "jax/output/HTML-CSS/**/*.js",
                 "fonts/HTML-CSS/STIX-Web/woff/*.woff")


def install_mathjax(out_dir: Path) -> str | None:
    """Copy MathJax into ``out_dir/mathjax`` (once: a copy of the same version is kept) and return
    the pages' relative URL for it; ``None``, with a warning, when ``jupyter-server-mathjax`` is not
    installed (the pages then load MathJax from nbconvert's CDN)."""
    import shutil
    from importlib import metadata

    try:
        import jupyter_server_mathjax
    except ImportError:
        print("[book] jupyter-server-mathjax is not installed: formulas need the network "
              "(pip install jupyter-server-mathjax)", file=sys.stderr)
        return None
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = Path(out_dir) / MATHJAX_DIR
    stamp = target / "VERSION"
    version = metadata.version("jupyter-server-mathjax")
    if not (stamp.exists() and stamp.read_text() == version and (target / "MathJax.js").exists()):
        shutil.rmtree(target, ignore_errors=True)
        for pattern in MATHJAX_FILES:
            for path in source.glob(pattern):
                if path.is_file():
                    dest = target / path.relative_to(source)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(path, dest)
        stamp.write_text(version)
    return f"{MATHJAX_DIR}/MathJax.js?config={MATHJAX_CONFIG}"


def to_html(nb, mathjax_url: str | None = None) -> str:
    """The page of ``nb``: nbconvert's lab template less the scripts it would load from a CDN
    (:data:`PAGE_TEMPLATE`); MathJax from ``mathjax_url`` (see :func:`install_mathjax`; default
    nbconvert's CDN)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab", raw_template=PAGE_TEMPLATE,
                            **({"mathjax_url": mathjax_url} if mathjax_url else {}))
    body, _ = exporter.from_notebook_node(nb)
    return body


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


def static_outputs(nb) -> None:
    """Make ``nb``'s widget outputs static, in place: one that carries a figure of its first view
    (``image/png``, as vizlib's explorers do) shows that figure, any other (a progress bar) is
    left out, and so is the saved widget state, which only a widget manager could use."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET_VIEW in data:
                if "image/png" not in data:
                    continue
                del data[WIDGET_VIEW]
            kept.append(output)
        cell.outputs = kept
    nb.metadata.pop("widgets", None)


def _index_page(rows: list[dict]) -> str:
    items = []
    for r in rows:
        if r.get("page") is None:
            items.append(f'<li><span class="todo">{html.escape(r["title"])}</span>'
                         '<div class="meta">not built yet</div></li>')
            continue
        status = "" if r["ok"] else ' <span class="fail">FAILED — see the page for the error</span>'
        thumbs = "".join(f'<img src="{html.escape(p)}" alt="figure">' for p in r["thumbs"])
        models = r.get("models")
        ran = ", ".join(dict.fromkeys(m.split(":")[0] for m in models)) if models else \
            ("no network" if models == [] else "?")
        mode = "quick" if r.get("quick") else "full"
        items.append(
            f'<li><a href="{html.escape(r["page"])}">{html.escape(r["title"])}</a>{status}'
            f'<div class="meta">ran on {html.escape(ran)} · {mode} mode · {r["figures"]} figures · '
            f'{r["seconds"]:.0f} s · built {html.escape(r.get("built", "?"))}</div>'
            f'<div class="thumbs">{thumbs}</div></li>')
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Seeing Inside ConvNets</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 960px; margin: 2em auto; padding: 0 1em; color: #222; }}
li {{ margin: 1.2em 0; list-style: none; }} a, .todo {{ font-size: 1.2em; }} .todo {{ color: #888; }}
.meta {{ color: #666; font-size: 0.9em; }} .fail {{ color: #b00; font-weight: bold; }}
.thumbs img {{ height: 90px; margin: 4px 4px 0 0; border: 1px solid #ddd; }}
</style></head><body>
<h1>Seeing Inside ConvNets — the course book</h1>
<p>Every lecture executed on the bundled sample images; each entry says when, in which mode and on
which network.</p>
<ol>{''.join(items)}</ol></body></html>
"""


#: Seconds one cell may run before the kernel is taken for stalled (a lost Jupyter message
#: leaves client and kernel both waiting); the lecture is then run once more.
CELL_TIMEOUT, CELL_TIMEOUT_QUICK = 300, 120
STALLED = 3  # exit code of a child whose kernel stalled


def _started_marker(target: Path) -> Path:
    return target.with_name(target.name + ".started")


def _execute_to_file(source: Path, target: Path, quick: bool) -> int:
    """Child-process entry: execute ``source``, write it (even half-run) to ``target``; touch
    ``_started_marker(target)`` once the kernel is up (the parent's limit counts from there)."""
    import nbformat

    from nbclient.exceptions import CellTimeoutError

    nb = nbformat.read(source, as_version=4)
    code = 0
    try:
        nb.cells.append(nbformat.v4.new_code_cell(MODEL_PROBE))
        execute_notebook(nb, source.parent, quick, timeout=CELL_TIMEOUT_QUICK if quick else CELL_TIMEOUT,
                         on_start=_started_marker(target).touch)
    except (CellTimeoutError, TimeoutError) as e:  # a stalled kernel: worth one more try
        print(f"[book] {source.name}: a cell timed out ({e})", file=sys.stderr)
        code = STALLED
    except Exception as e:  # the partly executed notebook still goes into the book
        print(f"[book] {source.name} FAILED: {type(e).__name__}: {str(e)[-2000:]}", file=sys.stderr)
        code = 1
    _take_probe(nb)
    nbformat.write(nb, target)
    return code


#: Run after a lecture's last cell, in its kernel: which course networks it holds (name and where
#: the weights came from), so each page can say what it ran on. Removed before the book is written.
MODEL_PROBE = """import json as _json, sys as _sys
_models = _sys.modules.get("vizlib.models")  # not imported: no course network (and no torch import here)
print("VIZLIB-MODELS", _json.dumps(sorted({f"{_v.name}: {_v.source}" for _v in list(globals().values())
                                           if _models and isinstance(_v, _models.CourseModel)})))"""


def _take_probe(nb) -> None:
    """Remove the probe cell and keep what it printed in ``nb.metadata.vizlib.models`` (absent when
    the lecture stopped before the probe ran)."""
    if nb.cells and nb.cells[-1].cell_type == "code" and nb.cells[-1].source == MODEL_PROBE:
        probe = nb.cells.pop()
        for output in probe.get("outputs", []):
            for line in output.get("text", "").splitlines():
                if line.startswith("VIZLIB-MODELS "):
                    nb.metadata.setdefault("vizlib", {})["models"] = json.loads(line.split(" ", 1)[1])


#: Seconds a lecture's child process may take to start its kernel; the lecture's own limit
#: counts from then, so a busy machine's slow start never kills a healthy lecture.
STARTUP_LIMIT = 300


def _wait(child, marker: Path, limit: float) -> int | None:
    """The child's exit code, or ``None`` once it ran ``limit`` s past its kernel's start (or
    never started its kernel within :data:`STARTUP_LIMIT` s)."""
    began, deadline = time.monotonic(), None
    while True:
        code = child.poll()
        if code is not None:
            return code
        now = time.monotonic()
        if deadline is None and marker.exists():
            deadline = now + limit
        if (deadline is not None and now > deadline) or (deadline is None and now - began > STARTUP_LIMIT):
            return None
        time.sleep(0.1)


def run_isolated(source: Path, target: Path, quick: bool, limit: float, tries: int = 2) -> bool:
    """Execute a notebook in a child process under a wall-clock ``limit`` (seconds), counted
    from the moment its kernel is ready.

    A kernel that stops answering (a lost message leaves client and kernel both waiting)
    cannot stall the build: the child and its kernel are killed and the notebook is run
    once more. Returns ``True`` when the notebook ran to the end.
    """
    import signal
    import subprocess

    marker = _started_marker(target)
    try:
        for attempt in range(1, tries + 1):
            marker.unlink(missing_ok=True)
            child = subprocess.Popen([sys.executable, "-m", "vizlib.course.book", "--execute-one",
                                      str(source), str(target)] + (["--quick"] if quick else []),
                                     start_new_session=True)
            code = _wait(child, marker, limit)
            if code is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
                print(f"[book] {source.name}: not finished after {limit:.0f} s (attempt {attempt} of {tries}); "
                      "killed", file=sys.stderr, flush=True)
                continue
            if code != STALLED:
                return code == 0
            print(f"[book] {source.name}: stalled (attempt {attempt} of {tries})", file=sys.stderr, flush=True)
    finally:
        marker.unlink(missing_ok=True)
    if not target.exists():
        import nbformat

        nb = nbformat.read(source, as_version=4)
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(
            f"**This lecture did not finish within {limit:.0f} s when the book was built.**"))
        nbformat.write(nb, target)
    return False


STATE = "book.json"  # what each built lecture's entry in the index says, kept between builds


def _page_nb(nb, row: dict, prev: tuple[str, str] | None, nxt: tuple[str, str] | None):
    """A copy of the executed notebook as its page shows it: a line saying what it ran on and
    links to the index and the neighbouring lectures, above and below."""
    import copy

    import nbformat

    links = [f"[← {prev[1]}]({prev[0]})" if prev else "", "[index](index.html)",
             f"[{nxt[1]} →]({nxt[0]})" if nxt else ""]
    nav = nbformat.v4.new_markdown_cell(" · ".join(x for x in links if x))
    models = row.get("models")
    ran = ("; ".join(f"`{m}`" for m in models) if models else
           "no course network" if models == [] else "unknown (the lecture stopped before the end)")
    mode = "quick mode (small sizes)" if row["quick"] else "full mode"
    about = nbformat.v4.new_markdown_cell(f"*Ran on:* {ran} — {mode}, {row['built']}, {row['seconds']:.0f} s.")
    page = copy.deepcopy(nb)
    lecture = [c for c in page.cells if "colab" not in c.get("metadata", {}).get("tags", [])]  # no badge offline
    bottom = nbformat.v4.new_markdown_cell(nav.source)  # its own cell id
    page.cells = [nav, about, *lecture, bottom]
    static_outputs(page)
    return page


def _load_state(out_dir: Path) -> dict:
    try:
        return json.loads((out_dir / STATE).read_text())
    except (OSError, ValueError):
        return {}


def build_book(lectures_dir: Path, out_dir: Path, quick: bool = False, only: list[str] | None = None, limit: float | None = None,
               tries: int = 2) -> bool:
    """Execute the lectures of ``lectures_dir`` and write the book to ``out_dir``. Returns ``True``
    when every lecture ran.

    ``only``: lecture number prefixes to build; the index keeps the other lectures' entries from
    earlier builds (``book.json``), so a partial build updates only its own lectures.
    ``limit``: seconds one lecture may take before it is killed and retried (default 300
    in quick mode, 3600 otherwise); ``tries``: runs of a lecture that stalls or passes its
    limit before it counts as failed. Every page says which course networks the lecture ran on
    and links to the index and to the lectures before and after it.
    """
    import nbformat

    out_dir = Path(out_dir)
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    limit = limit or (300 if quick else 3600)
    paths = lecture_paths(lectures_dir)
    titles = {p.stem: notebook_title(nbformat.read(p, as_version=4)) for p in paths}
    state = _load_state(out_dir)
    mathjax = install_mathjax(out_dir)
    all_ok = True
    for i, path in enumerate(paths):
        if only and not any(path.name.startswith(o) for o in only):
            continue
        start = time.perf_counter()
        print(f"[book] {path.name} …", flush=True)
        target = out_dir / "notebooks" / path.name
        target.unlink(missing_ok=True)
        ok = run_isolated(path, target, quick, limit, tries)
        all_ok &= ok
        seconds = time.perf_counter() - start
        nb = nbformat.read(target, as_version=4)
        stem = path.stem
        figures = extract_figures(nb, out_dir / "figures" / stem)
        row = dict(title=notebook_title(nb), page=f"{stem}.html", ok=ok, seconds=seconds,
                   figures=len(figures), thumbs=[str(p.relative_to(out_dir)) for p in figures[:6]],
                   models=nb.metadata.get("vizlib", {}).get("models"), quick=quick,
                   built=time.strftime("%Y-%m-%d %H:%M"))
        prev = (f"{paths[i - 1].stem}.html", titles[paths[i - 1].stem]) if i > 0 else None
        nxt = (f"{paths[i + 1].stem}.html", titles[paths[i + 1].stem]) if i + 1 < len(paths) else None
        (out_dir / f"{stem}.html").write_text(to_html(_page_nb(nb, row, prev, nxt), mathjax), encoding="utf-8")
        state[stem] = row
        print(f"[book] {path.name}: {'ok' if ok else 'FAILED'}, {len(figures)} figures, {seconds:.1f} s",
              flush=True)
    (out_dir / STATE).write_text(json.dumps(state, indent=1))
    rows = [state.get(p.stem) or dict(title=titles[p.stem], page=None) for p in paths]
    (out_dir / "index.html").write_text(_index_page(rows), encoding="utf-8")
    print(f"[book] wrote {out_dir / 'index.html'}")
    return all_ok


def add_arguments(parser) -> None:
    """``vizlib book [--course DIR] [--quick] [--out DIR] [--lectures DIR] [LECTURE ...]``."""
    parser.description = __doc__.splitlines()[0]
    parser.add_argument("--quick", action="store_true", help="small sizes and few iterations (as in CI)")
    parser.add_argument("--course", help="the course folder, holding lectures/ (default: the one at or above "
                                         "the current directory)")
    parser.add_argument("--out", help="output folder (default: COURSE/build/book)")
    parser.add_argument("--lectures", help="folder of lecture notebooks (default: COURSE/lectures)")
    parser.add_argument("--execute-one", nargs=2, metavar=("SOURCE", "TARGET"), help=argparse.SUPPRESS)
    parser.add_argument("only", nargs="*", help="lecture number prefixes to build (default: all)")
    parser.set_defaults(run=_book_command)


def _book_command(args) -> int:
    quick = args.quick or config.quick()
    if args.execute_one:
        return _execute_to_file(Path(args.execute_one[0]), Path(args.execute_one[1]), quick)
    lectures = Path(args.lectures) if args.lectures else course_root(args.course, LECTURES) / "lectures"
    out = Path(args.out) if args.out else lectures.parent / "build" / "book"
    ok = build_book(lectures, out, quick=quick, only=args.only or None)
    return 0 if ok else 1


def main(argv=None) -> int:
    """``python -m vizlib.course.book ...``: ``vizlib book`` of the one command tree."""
    return cli.main(["book", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
