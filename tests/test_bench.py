"""The benchmark suite runs (tiny sizes, one repetition) and every row's two results agree.
Timings are never asserted here: speed is measured by `python bench/run.py`, not by tests."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_every_benchmark_row_runs_and_agrees_with_its_peer(tmp_path):
    pytest.importorskip("captum")
    pytest.importorskip("pytorch_grad_cam")
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--tiny", "--device", "cpu"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    header, rows = _cells(lines[0]), lines[1:]
    names = {_cells(line)[0] for line in rows}
    assert {n.split(" (")[0] for n in names} == {"saliency", "integrated gradients", "occlusion", "grad-cam",
                                                 "Gatys step", "fast style inference", "fast style train step"}
    for row in ("Gatys step", "fast style inference", "fast style train step"):
        # both precisions, and exactly one of them named vizlib's default on this machine
        run = {n for n in names if n.startswith(row + " (")}
        assert {n.split(",")[0] for n in run} == {row + " (float32", row + " (bf16 autocast"}, run
        assert sum("the default here" in n for n in run) == 1, run
    assert all("| yes:" in line for line in rows), proc.stdout
    # the machine is named in the header; every row states one precision for both sides
    assert "Machine: CPU " in proc.stdout and "; GPU " in proc.stdout, proc.stdout[:2000]
    fraction = "fraction of the machine's limit (vizlib / peer)"
    col = {name: header.index(name) for name in ("peer", "GFLOP (vizlib / peer)", "GFLOP/s (vizlib / peer)", fraction)}
    for line in rows:
        cells = _cells(line)
        precision = "bf16 autocast" if "(bf16 autocast" in cells[0] else "float32"
        assert cells[0].startswith(cells[0].split(" (")[0] + f" ({precision}"), cells[0]
        assert cells[col["peer"]].endswith(", " + precision), cells[col["peer"]]
        # the roofline columns: FLOPs counted, rates achieved, a sane fraction of the kernels' own rate
        flops = [float(v) for v in cells[col["GFLOP (vizlib / peer)"]].split("/")]
        rates = [float(v) for v in cells[col["GFLOP/s (vizlib / peer)"]].split("/")]
        fractions = [float(v.strip(" *")) for v in cells[col[fraction]].split("/")]
        assert all(f > 0 for f in flops + rates), line
        assert all(0 < f <= 1.5 for f in fractions), line


def test_roofline_counts_as_flop_counter_mode_and_times_the_convolutions():
    sys.path.insert(0, str(ROOT / "bench"))
    import roofline
    from torch.utils.flop_counter import FlopCounterMode

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3),
                              torch.nn.Flatten(), torch.nn.Linear(4 * 14 * 14, 10))
    x = torch.rand(2, 3, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_(True)

    def step():
        net(x).sum().backward()

    with FlopCounterMode(display=False) as counter:
        step()
    work = roofline.capture(step)
    assert work.flops == counter.get_total_flops() > 0
    ops = {k.op for k in work.kernels}
    assert ops == set(roofline.CONV_OPS) and sum(work.kernels.values()) == 4   # 2 forward, 2 backward
    first = next(k for k in work.kernels if k.op is torch.ops.aten.convolution.default)
    assert first.inputs()[0].is_contiguous(memory_format=torch.channels_last)  # layouts are kept
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):  # seen below autocast
        kernels = roofline.capture(lambda: net[0](x)).kernels
    assert [k.args[0].dtype for k in kernels] == [torch.bfloat16]
    flops, seconds = roofline.time_kernels(work.kernels, reps=1, warmup=0)
    assert flops == work.conv_flops and seconds > 0
    assert "threads" in roofline.cpu_name()


def test_writing_results_replaces_its_section_and_keeps_the_others(tmp_path):
    sys.path.insert(0, str(ROOT / "bench"))
    import run

    path = tmp_path / "RESULTS.md"
    path.write_text("# Benchmark results\n\nWritten by `python bench/run.py --write` (old intro).\n\n"
                    "## Last CPU run\n\n<!-- CPU -->\nold\n<!-- /CPU -->\n\n"
                    "## Notebooks, cuda\n\n<!-- notebooks-cuda -->\nkept\n<!-- /notebooks-cuda -->\n")
    run.write_results("new table", torch.device("cpu"), path)
    run.write_results("newer table", torch.device("cpu"), path)
    text = path.read_text()
    assert "newer table" in text and "new table\n" not in text and "old" not in text
    assert "<!-- notebooks-cuda -->\nkept\n<!-- /notebooks-cuda -->" in text
    assert text.count("<!-- machines -->") == 1 and "- CPU run: CPU " in text and "- GPU run: _not run yet_" in text
    assert text.index("<!-- machines -->") < text.index("## Last CPU run")
