"""bench/notebooks.py: which notebooks it runs, and that it writes only its own section."""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import notebooks as N  # noqa: E402  (bench/notebooks.py)


def test_every_lecture_then_every_solution():
    paths = [p.relative_to(ROOT).as_posix() for p in N.notebooks()]
    lectures = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "lectures").glob("[0-9][0-9]_*.ipynb"))
    assert paths[:len(lectures)] == lectures and len(lectures) == 15
    assert paths[len(lectures):] == [f"solutions/assignment{i}/assignment{i}.ipynb" for i in range(1, 5)]
    assert [p.name for p in N.notebooks(only=["05", "assignment2"])] == ["05_occlusion.ipynb", "assignment2.ipynb"]


def test_write_section_keeps_the_rest(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\n<!-- CPU -->\nbench rows\n<!-- /CPU -->\n")
    N.write_section("first", "NOTEBOOKS-GPU", path)
    N.write_section("second", "NOTEBOOKS-GPU", path)
    text = path.read_text()
    assert "bench rows" in text and "second" in text and "first" not in text
    assert text.count("## Notebooks, GPU") == 1


def test_table_counts_failures():
    text = N.table([dict(notebook="a", seconds=1.0, ok=True), dict(notebook="b", seconds=2.5, ok=False)])
    assert "| `b` | 2.5 | **no** |" in text and "1 of 2" in text
