"""Every benchmark, one table: vizlib against its peer on the same work, in the same process.

    python bench/run.py                      # all rows on the default device (CUDA if present)
    python bench/run.py --device cpu --only saliency gradcam
    python bench/run.py --tiny               # tiny sizes: checks that every row runs (the smoke test)
    python bench/run.py --write              # also write this run into bench/RESULTS.md

Each row: the median of ``--reps`` timed repetitions after ``--warmup`` untimed ones
(``torch.cuda.synchronize`` around each on GPU), the ratio peer / vizlib (> 1: vizlib is faster)
with both sides at the same precision, and a check that both produced the same result within the
row's stated tolerance. Models have random weights (the timings do not depend on them, and no
download is needed).

Each row also has its roofline (``bench/roofline.py``): the FLOPs of one call of each side, the
rate each achieves, and the rate this machine reaches on the row's convolutions run alone at
the same sizes, precision and memory format — the fraction of the machine's own limit.
"""
from __future__ import annotations

import argparse
import copy
import datetime
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import peers  # noqa: E402  (bench/peers.py)
from results import put_block  # noqa: E402  (bench/results.py)
import roofline  # noqa: E402  (bench/roofline.py)

from vizlib import attribution, fast_style, models, style, style_losses  # noqa: E402
from vizlib.precision import DEFAULT_PRECISION, resolve_precision  # noqa: E402


@dataclass
class Result:
    row: str
    peer: str
    work: str
    vizlib_s: float
    peer_s: float
    check: str
    ok: bool
    goal: str
    extra: dict = field(default_factory=dict)
    roof: roofline.Roofline | None = None
    per: int = 1                      # the times are per 1/per of a call (Gatys: per step)
    peer_f32_s: float | None = None   # bf16 rows: the float32 peer's time (cross-precision ratio)

    @property
    def ratio(self) -> float:
        return self.peer_s / self.vizlib_s

    def rates(self) -> tuple[float, float]:
        """Achieved FLOP/s of vizlib and of the peer (0 without a roofline)."""
        if self.roof is None:
            return 0.0, 0.0
        return (self.roof.rate(self.roof.flops_vizlib / self.per, self.vizlib_s),
                self.roof.rate(self.roof.flops_peer / self.per, self.peer_s))

    def fractions(self) -> tuple[float, float]:
        """Achieved rate / the machine's rate on the row's convolutions alone, vizlib and peer."""
        if self.roof is None or self.roof.limit <= 0:
            return 0.0, 0.0
        return tuple(r / self.roof.limit for r in self.rates())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(fn: Callable[[], object], device: torch.device, warmup: int, reps: int) -> float:
    """Median wall time of ``fn()`` in seconds over ``reps`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(reps):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


@dataclass
class Setup:
    device: torch.device
    tiny: bool
    warmup: int
    reps: int

    def size(self, gpu: int, cpu: int, tiny: int) -> int:
        return tiny if self.tiny else (gpu if self.device.type == "cuda" else cpu)


def _classifier(s: Setup, name="resnet18"):
    return models.load_model(name, pretrained=False, device=s.device)


def _batch(s: Setup, n: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, size, size, generator=g).to(s.device)


def _time_pair(s, ours, theirs):
    """Medians of ``ours`` and ``theirs``, their repetitions interleaved (A B A B ...) so that
    a slow spell of a shared machine falls on both sides alike; then the row's roofline (one
    more call of each, counted and recorded, and their convolutions timed alone)."""
    for _ in range(s.warmup):
        ours(), theirs()
    a, b = [], []
    for _ in range(s.reps):
        a.append(median_time(ours, s.device, 0, 1))
        b.append(median_time(theirs, s.device, 0, 1))
    roof = roofline.roofline(ours, theirs, reps=max(2, min(3, s.reps)), warmup=1)
    return statistics.median(a), statistics.median(b), roof


# ----------------------------------------------------------------------------------------
# Rows
# ----------------------------------------------------------------------------------------

def _p999(a: torch.Tensor, ref: torch.Tensor) -> float:
    """99.9th percentile of ``|a - ref| / max |ref|``."""
    d = ((a.detach().double().cpu() - ref.detach().double().cpu()).abs() / ref.abs().max().clamp_min(1e-30))
    d = d.flatten()
    return float(d.kthvalue(max(1, int(0.999 * d.numel()))).values)


def _float64_check(ours, theirs, model, x) -> tuple[str, bool]:
    """Both sides against a float64 reference (the peer on a float64 copy of the model).

    Float32 gradients of a ReLU network are not unique to the last bit: a value within rounding
    of a ReLU's zero or of a max-pool window's runner-up can send a pixel's gradient either way,
    so two correct float32 implementations that convolve in different memory layouts disagree
    at a few pixels, and each disagrees with float64 there. The check: vizlib is as close to the
    float64 answer as the peer is (99.9th percentile of the error, at most 2x the peer's + 1e-6).
    """
    model64 = copy.deepcopy(model).double()
    ref = theirs(model64, x.double())
    e_ours, e_peer = _p999(ours(model, x), ref), _p999(theirs(model, x), ref)
    ok = e_ours <= 2 * e_peer + 1e-6
    return f"p99.9 err vs float64: vizlib {e_ours:.1e}, peer {e_peer:.1e} (<= 2x + 1e-6)", ok


def row_saliency(s: Setup) -> Result:
    from captum.attr import Saliency

    model = _classifier(s)
    n, px = (2, 32) if s.tiny else (32, s.size(224, 112, 32))
    x, t = _batch(s, n, px), torch.arange(n, device=s.device) % 10
    ours = lambda m, xx: attribution.saliency(m, xx, t)                     # noqa: E731
    theirs = lambda m, xx: Saliency(m).attribute(xx, target=t).amax(1)      # noqa: E731
    check, ok = _float64_check(ours, theirs, model, x)
    a, b, roof = _time_pair(s, lambda: ours(model, x), lambda: theirs(model, x))
    return Result("saliency (float32)", "Captum Saliency (max over channels), float32", f"resnet18, {n}x{px}px",
                  a, b, check, ok, ">= 1x", roof=roof)


def row_integrated_gradients(s: Setup) -> Result:
    from captum.attr import IntegratedGradients

    model = _classifier(s)
    n, px = (2, 32) if s.tiny else ((32, 224) if s.device.type == "cuda" else (8, 64))
    steps = 4 if s.tiny else 32
    x, t = _batch(s, n, px), torch.arange(n, device=s.device) % 10
    ours = lambda m, xx: attribution.integrated_gradients(m, xx, t, steps=steps, batch_size=n * steps)  # noqa: E731
    theirs = lambda m, xx: IntegratedGradients(m).attribute(xx, target=t, n_steps=steps,                # noqa: E731
                                                            internal_batch_size=n * steps).sum(1)
    check, ok = _float64_check(ours, theirs, model, x)
    a, b, roof = _time_pair(s, lambda: ours(model, x), lambda: theirs(model, x))
    return Result("integrated gradients (float32)", f"Captum IntegratedGradients ({steps} steps), float32",
                  f"resnet18, {n}x{px}px", a, b, check, ok, ">= 1x", roof=roof)


def row_occlusion(s: Setup) -> Result:
    from captum.attr import Occlusion

    model = _classifier(s)
    n, px = (2, 32) if s.tiny else ((32, 224) if s.device.type == "cuda" else (4, 96))
    patch, stride = (8, 8) if s.tiny else (32, 16) if px >= 224 else (16, 8)
    x, t = _batch(s, n, px), torch.arange(n, device=s.device) % 10
    windows = ((px - patch) // stride + 1) ** 2
    ours = lambda: attribution.occlusion(model, x, t, patch=patch, stride=stride, fill=0.5)  # noqa: E731
    theirs = lambda: Occlusion(model).attribute(x, target=t, sliding_window_shapes=(3, patch, patch),  # noqa: E731
                                                strides=(3, stride, stride), baselines=0.5,
                                                perturbations_per_eval=windows)[:, 0]
    err = _rel(ours(), theirs())
    a, b, roof = _time_pair(s, ours, theirs)
    return Result("occlusion (float32)", "Captum Occlusion (all windows per pass), float32",
                  f"resnet18, {n}x{px}px, patch {patch} stride {stride}", a, b,
                  f"rel err {err:.1e} <= 1e-4", err <= 1e-4, ">= 2x", roof=roof)


def row_gradcam(s: Setup) -> Result:
    import torch.nn.functional as F
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = _classifier(s)
    n, px = (2, 32) if s.tiny else (32, s.size(224, 112, 32))
    x, t = _batch(s, n, px), torch.arange(n, device=s.device) % 10
    xg = x.clone().requires_grad_(True)  # pytorch-grad-cam back-propagates from the output: the
    # model's weights are frozen, so the input must require grad for a graph to exist

    def ours():
        raw = attribution.grad_cam(model, x, t, layer="layer4", upsample=False)
        return F.interpolate(raw[:, None], size=(px, px), mode="bilinear", align_corners=False)[:, 0]

    def theirs():
        with GradCAM(model=model, target_layers=[model.layer("layer4")]) as cam:
            return torch.from_numpy(cam(input_tensor=xg, targets=[ClassifierOutputTarget(int(i)) for i in t]))

    def scale(c):  # pytorch-grad-cam min-max scales each map (before and after resizing)
        c = c - c.flatten(1).amin(1)[:, None, None]
        return c / (1e-7 + c.flatten(1).amax(1)[:, None, None])

    raw = attribution.grad_cam(model, x, t, layer="layer4", upsample=False)
    mine = scale(F.interpolate(scale(raw)[:, None], size=(px, px), mode="bilinear", align_corners=False)[:, 0])
    err = _rel(mine, theirs())
    a, b, roof = _time_pair(s, ours, theirs)
    return Result("grad-cam (float32)", "pytorch-grad-cam GradCAM, float32", f"resnet18 layer4, {n}x{px}px",
                  a, b, f"rel err {err:.1e} <= 1e-4", err <= 1e-4, ">= 2x", roof=roof)


def _precision_label(precision: str, device: torch.device) -> str:
    """Row-name suffix: which precision ran, and whether it is vizlib's default on ``device``."""
    label = " (float32" if precision == "float32" else " (bf16 autocast"
    default = resolve_precision(DEFAULT_PRECISION, device) == precision
    return label + (", the default here)" if default else ", opt-in here)")


def _peer_precision(precision: str) -> str:
    """Peer-column suffix: the peer runs at the row's precision (bf16: under autocast)."""
    return ", float32" if precision == "float32" else ", bf16 autocast"


#: The goals of the style rows, each against the peer at the same precision.
GATYS_GOAL = "same precision: >= 3x GPU, >= 1.5x CPU"
FAST_INFERENCE_GOAL = "same precision: >= 4x GPU; 1080p >= 60 fps on H100"
FAST_TRAIN_GOAL = "same precision: >= 2x GPU"


def row_gatys(s: Setup) -> list[Result]:
    model = models.load_model("vgg19", pretrained=False, device=s.device)
    px = s.size(512, 512, 64)
    steps = 2 if s.tiny else 5
    content, style_image = _batch(s, 1, px, 1), _batch(s, 1, px, 2)

    def peer(bf16):  # both sides compute their targets once per run, then take `steps` steps
        targets = style_losses.style_targets(model, content, style_image)
        return peers.TutorialStyleTransfer(model, targets).run(content, steps, bf16=bf16)

    their_loss = peer(False)[0]                  # every row is checked against the float32 peer
    out, f32_peer_s = [], None
    for precision, tol in (("float32", 1e-4), ("bfloat16", 2e-2)):
        bf16 = precision == "bfloat16"
        ours = lambda: style.style_transfer(model, content, style_image, optimizer="adam", steps=steps,  # noqa: E731
                                            progress=False, precision=precision)
        theirs = lambda: peer(bf16)  # noqa: E731
        err = abs(ours().history["loss"][0] - their_loss) / abs(their_loss)
        check = f"step-0 loss rel diff {err:.1e} <= {tol:g} (vs float32 peer)"
        if bf16:
            peer_err = abs(theirs()[0] - their_loss) / abs(their_loss)
            check += f"; bf16 peer's {peer_err:.1e}"
        a, b, roof = _time_pair(s, ours, theirs)
        f32_peer_s = f32_peer_s or b / steps
        out.append(Result("Gatys step" + _precision_label(precision, s.device),
                          "PyTorch NST tutorial design (loss modules in VGG)" + _peer_precision(precision),
                          f"VGG19 {px}px, content+style+TV, Adam, per step incl. targets", a / steps, b / steps,
                          check, err <= tol, GATYS_GOAL, roof=roof, per=steps,
                          peer_f32_s=f32_peer_s if bf16 else None))
    return out


def row_fast_style_inference(s: Setup) -> list[Result]:
    net = fast_style.TransformerNet().to(s.device).eval()
    sizes = [32] if s.tiny else ([256, 512, 1024, (1080, 1920)] if s.device.type == "cuda" else [256, 512])
    out = []
    for size in sizes:
        h, w = size if isinstance(size, tuple) else (size, size)
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(s.device)
        reference = peers.examples_stylize(net, x)            # float32: every row's check
        f32_peer_s = None
        for precision, tol in (("float32", 1e-5), ("bfloat16", 2e-2)):
            bf16 = precision == "bfloat16"
            theirs = lambda: peers.examples_stylize(net, x, bf16=bf16)          # noqa: E731
            ours = lambda: fast_style.stylize(net, x, precision=precision)  # noqa: E731
            err = _rel(ours(), reference)
            a, b, roof = _time_pair(s, ours, theirs)
            f32_peer_s = f32_peer_s or b
            out.append(Result("fast style inference" + _precision_label(precision, s.device),
                              "pytorch/examples way (eager)" + _peer_precision(precision),
                              f"{h}x{w}, {1 / a:.1f} frames/s", a, b,
                              f"max rel diff {err:.1e} <= {tol:g} (vs float32 peer)", err <= tol,
                              FAST_INFERENCE_GOAL, {"fps": 1 / a}, roof=roof,
                              peer_f32_s=f32_peer_s if bf16 else None))
    return out


def row_fast_style_train(s: Setup) -> list[Result]:
    model = models.load_model("vgg16", pretrained=False, device=s.device)
    px, n = (32, 2) if s.tiny else ((256, 4) if s.device.type == "cuda" else (128, 2))
    style_image, content = _batch(s, 1, px, 3), _batch(s, n, px, 4)
    targets = style_losses.style_targets(model, None, style_image)
    peer_loss = peers.ExamplesPerceptualLoss(model, targets)
    out, reference, f32_peer_s = [], None, None
    for precision, tol in (("float32", 1e-4), ("bfloat16", 2e-2)):
        bf16 = precision == "bfloat16"
        torch.manual_seed(0)                      # the same starting network for every side and row
        ours_net = fast_style.TransformerNet().to(s.device)
        peer_net = fast_style.TransformerNet().to(s.device)
        peer_net.load_state_dict(ours_net.state_dict())
        opt_a = torch.optim.Adam(ours_net.parameters(), lr=1e-3)
        opt_b = torch.optim.Adam(peer_net.parameters(), lr=1e-3)
        ours = lambda: fast_style.train_step(ours_net, opt_a, model, content, targets,  # noqa: E731
                                             precision=precision)["total"]
        theirs = lambda: peers.examples_train_step(peer_net, opt_b, peer_loss, content, bf16=bf16)  # noqa: E731
        first_a, first_b = ours(), theirs()
        reference = reference if reference is not None else first_b   # the float32 peer's step-0 loss
        err = abs(first_a - reference) / abs(reference)
        check = f"step-0 loss rel diff {err:.1e} <= {tol:g} (vs float32 peer)"
        if bf16:
            check += f"; bf16 peer's {abs(first_b - reference) / abs(reference):.1e}"
        a, b, roof = _time_pair(s, ours, theirs)
        f32_peer_s = f32_peer_s or b
        out.append(Result("fast style train step" + _precision_label(precision, s.device),
                          "pytorch/examples recipe (VGG run in full on both batches)" + _peer_precision(precision),
                          f"batch {n}x{px}px, VGG16 loss", a, b, check, err <= tol, FAST_TRAIN_GOAL,
                          roof=roof, peer_f32_s=f32_peer_s if bf16 else None))
    return out


ROWS = {
    "saliency": row_saliency,
    "ig": row_integrated_gradients,
    "occlusion": row_occlusion,
    "gradcam": row_gradcam,
    "gatys": row_gatys,
    "fast-inference": row_fast_style_inference,
    "fast-train": row_fast_style_train,
}


# ----------------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------------

def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({roofline.cpu_name()})"


def _g(x: float) -> str:
    return f"{x / 1e9:.3g}"


def _ratio_cell(r: Result) -> str:
    cell = f"**{r.ratio:.2f}x**"
    if r.peer_f32_s is not None:
        cell += f" ({r.peer_f32_s / r.vizlib_s:.2f}x vs float32 peer)"
    return cell


def _roof_cells(r: Result) -> str:
    """GFLOP per timed unit, achieved GFLOP/s, the convolutions' own rate, the fractions."""
    if r.roof is None:
        return "| - | - | - | - "
    (ra, rb), (fa, fb) = r.rates(), r.fractions()
    flops = _g(r.roof.flops_vizlib / r.per)
    if r.roof.flops_peer != r.roof.flops_vizlib:
        flops += f" / {_g(r.roof.flops_peer / r.per)}"
    return (f"| {flops} | {_g(ra)} / {_g(rb)} | {_g(r.roof.limit)} ({r.roof.limit_from}; conv "
            f"{r.roof.conv_share:.0%} of FLOPs) | **{fa:.2f}** / {fb:.2f} ")


def table(results: list[Result]) -> str:
    lines = ["| row | work | peer | vizlib | peer time | ratio (peer/vizlib, same precision) | same result "
             "| GFLOP (vizlib / peer) | GFLOP/s (vizlib / peer) | conv kernels alone, GFLOP/s "
             "| fraction of the machine's limit (vizlib / peer) | goal |",
             "| --- | --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | --- |"]
    for r in results:
        lines.append(f"| {r.row} | {r.work} | {r.peer} | {r.vizlib_s * 1e3:.1f} ms | {r.peer_s * 1e3:.1f} ms "
                     f"| {_ratio_cell(r)} | {'yes' if r.ok else 'NO'}: {r.check} {_roof_cells(r)}| {r.goal} |")
    return "\n".join(lines)


def run(names, device: torch.device, tiny: bool, warmup: int, reps: int) -> list[Result]:
    s = Setup(device, tiny, warmup, reps)
    results = []
    for name in names:
        out = ROWS[name](s)
        results.extend(out if isinstance(out, list) else [out])
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return results


INTRO = ("Written by `python bench/run.py --write` (see bench/README.md). Ratios are peer time / vizlib "
         "time, measured side by side in one process with both sides at the same precision; > 1 means "
         "vizlib is faster. The roofline columns: achieved GFLOP/s and its fraction of this machine's own "
         "rate on the row's convolutions run alone.")


def write_results(text: str, device: torch.device, path: Path = HERE / "RESULTS.md") -> Path:
    """Replace the CPU or GPU section of bench/RESULTS.md with ``text`` and that run's line in the
    file's machine header; other sections (``bench/notebooks.py`` writes its own) are kept."""
    key = "GPU" if device.type == "cuda" else "CPU"
    current = path.read_text() if path.exists() else f"# Benchmark results\n\n{INTRO}\n"
    current = "\n".join(INTRO if line.startswith("Written by `python bench/run.py --write`") else line
                         for line in current.split("\n"))
    if "<!-- machines -->" not in current:     # the header: which machine each section ran on
        head, sep, rest = current.partition("\n## ")
        current = (f"{head.rstrip()}\n\n<!-- machines -->\n- CPU run: _not run yet_\n- GPU run: _not run yet_\n"
                   f"<!-- /machines -->\n" + (f"\n{sep.strip()} {rest}" if sep else ""))
    start, end = current.find("<!-- machines -->"), current.find("<!-- /machines -->")
    lines = current[start + len("<!-- machines -->"):end].strip().splitlines()
    lines = [f"- {key} run: {roofline.machine(device)}" if line.startswith(f"- {key} run:") else line
             for line in lines]
    current = put_block(current, "machines", "\n".join(lines), "")
    current = put_block(current, key, text, f"## Last {key} run")
    path.write_text(current)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    parser.add_argument("--only", nargs="*", choices=sorted(ROWS), help="rows to run (default: all)")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, one repetition: a smoke run")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 5, tiny 1)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 2, tiny 0)")
    parser.add_argument("--write", action="store_true", help="write the table into bench/RESULTS.md")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    reps = args.reps or (1 if args.tiny else 5)
    warmup = args.warmup if args.warmup is not None else (0 if args.tiny else 2)
    names = args.only or list(ROWS)
    started = datetime.datetime.now(datetime.timezone.utc)
    results = run(names, device, args.tiny, warmup, reps)
    header = (f"{started:%Y-%m-%d %H:%M} UTC on **{device_name(device)}**, torch {torch.__version__}, "
              f"median of {reps} after {warmup} warm-up; reproduce with "
              f"`python bench/run.py --device {device.type}{' --tiny' if args.tiny else ''}`\n\n"
              f"Machine: {roofline.machine(device)}. GFLOP: counted (FlopCounterMode's formulas) on one "
              f"call, per the unit timed. The conv column is this machine's rate on the row's convolutions "
              f"run alone (same shapes, dtype, memory format; forward and the backward the row runs; best "
              f"of 2-3); the fraction is achieved GFLOP/s over it.")
    text = header + "\n\n" + table(results)
    print(text)
    if args.write:
        print(f"\nwrote {write_results(text, device)}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
