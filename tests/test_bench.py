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
    assert {n.split(" (")[0] for n in names} == {"saliency", "integrated gradients", "occlusion", "grad-cam",
                                                 "Gatys step", "fast style inference", "fast style train step"}
    for row in ("Gatys step", "fast style inference", "fast style train step"):
        # both precisions, and exactly one of them named vizlib's default on this machine
        run = {n for n in names if n.startswith(row + " (")}
        assert {n.split(",")[0] for n in run} == {row + " (float32", row + " (bf16 autocast"}, run
        assert sum("the default here" in n for n in run) == 1, run
    assert all("| yes:" in line for line in rows), proc.stdout
