"""Every lecture and solution notebook run on this machine's accelerator, timed one by one.

    python bench/notebooks.py                   # full mode on the default device (CUDA, MPS, CPU)
    python bench/notebooks.py --quick --only 01 05
    python bench/notebooks.py --write           # also write the table into bench/RESULTS.md

Each notebook runs in its own kernel, as the book builds it (:func:`vizlib.course.book.run_isolated`,
killed after ``--limit`` seconds); the device is what the notebooks pick themselves
(:func:`vizlib.config.device`, ``VIZLIB_DEVICE`` to force one). The table gives the wall time of
each notebook from start to finish, including its kernel's start-up, and whether it ran to the end.
Run it whenever a GPU machine is available: it is the check that the course runs there unchanged.
"""
from __future__ import annotations

import argparse
import datetime
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

import roofline  # noqa: E402  (bench/roofline.py)
from results import put_block  # noqa: E402  (bench/results.py)


def notebooks(root: Path = ROOT, only: list[str] | None = None) -> list[Path]:
    """The lectures in course order, then the assignments' solution notebooks (``only``: name
    prefixes such as ``01`` or ``assignment2``)."""
    found = sorted((root / "lectures").glob("[0-9][0-9]_*.ipynb")) + \
        sorted((root / "solutions").glob("assignment*/*.ipynb"))
    if only:
        found = [p for p in found if any(p.name.startswith(o) or p.parent.name == o for o in only)]
    return found


def machine() -> str:
    """The device the notebooks will use, the CPU (:func:`roofline.cpu_name`) and torch, in words."""
    import torch

    from vizlib import config

    device = config.device()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = "Apple MPS"
    else:
        name = "CPU only"
    return f"{name} ({device}); CPU {roofline.cpu_name()}; torch {torch.__version__}"


def table(rows: list[dict]) -> str:
    lines = ["| notebook | seconds | ran to the end |", "| --- | ---: | --- |"]
    for r in rows:
        lines.append(f"| `{r['notebook']}` | {r['seconds']:.1f} | {'yes' if r['ok'] else '**no**'} |")
    total = sum(r["seconds"] for r in rows)
    lines.append(f"| **all {len(rows)}** | **{total:.0f}** | {sum(r['ok'] for r in rows)} of {len(rows)} |")
    return "\n".join(lines)


def write_section(text: str, key: str, path: Path = HERE / "RESULTS.md") -> Path:
    """Put ``text`` in the ``key`` section of ``path`` (``## Notebooks, GPU`` for
    ``NOTEBOOKS-GPU``, appended when there is none); the rest of the file is left as it is."""
    current = path.read_text() if path.exists() else "# Benchmark results\n"
    path.write_text(put_block(current, key, text, "## Notebooks, " + key.split("-", 1)[1]))
    return path


def run(paths: list[Path], quick: bool, limit: float) -> list[dict]:
    from vizlib.course.book import run_isolated

    rows = []
    with tempfile.TemporaryDirectory(prefix="vizlib_notebooks_") as tmp:
        for path in paths:
            start = time.perf_counter()
            ok = run_isolated(path, Path(tmp) / path.name, quick, limit)
            seconds = time.perf_counter() - start
            label = str(path.relative_to(ROOT))
            rows.append(dict(notebook=label, seconds=seconds, ok=ok))
            print(f"{label}: {seconds:.1f} s{'' if ok else ' — FAILED'}", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="quick mode (VIZLIB_QUICK): small sizes")
    parser.add_argument("--only", nargs="*", help="notebook name prefixes (01, assignment3, …)")
    parser.add_argument("--limit", type=float, default=3600.0, help="seconds one notebook may take")
    parser.add_argument("--write", action="store_true", help="write the table into bench/RESULTS.md")
    args = parser.parse_args(argv)
    paths = notebooks(only=args.only)
    if not paths:
        parser.error(f"no notebook matches {' '.join(args.only)}")
    from vizlib import config

    device = config.device()
    started = datetime.datetime.now(datetime.timezone.utc)
    rows = run(paths, args.quick, args.limit)
    mode = "quick" if args.quick else "full"
    text = (f"{started:%Y-%m-%d %H:%M} UTC on **{machine()}**, {mode} mode; reproduce with "
            f"`python bench/notebooks.py{' --quick' if args.quick else ''}`\n\n{table(rows)}")
    print(text)
    if args.write:
        key = f"NOTEBOOKS-{'GPU' if device.type in ('cuda', 'mps') else 'CPU'}"
        print(f"\nwrote {write_section(text, key)}")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
