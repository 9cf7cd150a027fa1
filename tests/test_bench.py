"""The benchmark suite runs (tiny sizes, one repetition) and every row's two results agree.
Timings are never asserted here: speed is measured by `python bench/run.py`, not by tests."""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_benchmark_row_runs_and_agrees_with_its_peer(tmp_path):
    pytest.importorskip("captum")
    pytest.importorskip("pytorch_grad_cam")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--tiny", "--device", "cpu"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = {line.split("|")[1].strip() for line in rows}
    assert names == {"saliency", "integrated gradients", "occlusion", "grad-cam", "Gatys step", "Gatys step (bf16 autocast)",
                     "fast style inference", "fast style inference (bf16 autocast)", "fast style train step"}
    assert all("| yes:" in line for line in rows), proc.stdout
