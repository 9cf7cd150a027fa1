"""Every benchmark, one table: vizlib against its peer on the same work, in the same process.

    python bench/run.py                      # all rows on the default device (CUDA if present)
    python bench/run.py --device cpu --only saliency gradcam
    python bench/run.py --tiny               # tiny sizes: checks that every row runs (the smoke test)
    python bench/run.py --write              # also write this run into bench/RESULTS.md

Each row: the median of ``--reps`` timed repetitions after ``--warmup`` untimed ones
(``torch.cuda.synchronize`` around each on GPU), the ratio peer / vizlib (> 1: vizlib is faster),
and a check that both produced the same result within the row's stated tolerance. Models have
random weights (the timings do not depend on them, and no download is needed).
"""
from __future__ import annotations

import argparse
import copy
import datetime
import platform
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

from vizlib import attribution, fast_style, models, render, style  # noqa: E402


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

    @property
    def ratio(self) -> float:
        return self.peer_s / self.vizlib_s


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
    a slow spell of a shared machine falls on both sides alike."""
    for _ in range(s.warmup):
        ours(), theirs()
    a, b = [], []
    for _ in range(s.reps):
        a.append(median_time(ours, s.device, 0, 1))
        b.append(median_time(theirs, s.device, 0, 1))
    return statistics.median(a), statistics.median(b)


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
    a, b = _time_pair(s, lambda: ours(model, x), lambda: theirs(model, x))
    return Result("saliency", "Captum Saliency (max over channels)", f"resnet18, {n}x{px}px", a, b,
                  check, ok, ">= 1x")


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
    a, b = _time_pair(s, lambda: ours(model, x), lambda: theirs(model, x))
    return Result("integrated gradients", f"Captum IntegratedGradients ({steps} steps)",
                  f"resnet18, {n}x{px}px", a, b, check, ok, ">= 1x")


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
    a, b = _time_pair(s, ours, theirs)
    return Result("occlusion", "Captum Occlusion (all windows per pass)",
                  f"resnet18, {n}x{px}px, patch {patch} stride {stride}", a, b,
                  f"rel err {err:.1e} <= 1e-4", err <= 1e-4, ">= 2x")


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
    a, b = _time_pair(s, ours, theirs)
    return Result("grad-cam", "pytorch-grad-cam GradCAM", f"resnet18 layer4, {n}x{px}px", a, b,
                  f"rel err {err:.1e} <= 1e-4", err <= 1e-4, ">= 2x")


def _precision_label(precision: str, device: torch.device) -> str:
    """Row-name suffix: which precision ran, and whether it is vizlib's default on ``device``."""
    label = " (float32" if precision == "float32" else " (bf16 autocast"
    default = render.resolve_precision("auto", device) == precision
    return label + (", the default here)" if default else ", opt-in here)")


def row_gatys(s: Setup) -> list[Result]:
    model = models.load_model("vgg19", pretrained=False, device=s.device)
    px = s.size(512, 512, 64)
    steps = 2 if s.tiny else 5
    content, style_image = _batch(s, 1, px, 1), _batch(s, 1, px, 2)

    def theirs():  # both sides compute their targets once per run, then take `steps` steps
        return peers.TutorialStyleTransfer(model, style.style_targets(model, content, style_image)).run(content, steps)

    their_loss = theirs()[0]
    out = []
    for precision, tol in (("float32", 1e-4), ("bfloat16", 2e-2)):
        ours = lambda: style.style_transfer(model, content, style_image, optimizer="adam", steps=steps,  # noqa: E731
                                            progress=False, precision=precision)
        err = abs(ours().history["loss"][0] - their_loss) / abs(their_loss)
        a, b = _time_pair(s, ours, theirs)
        out.append(Result("Gatys step" + _precision_label(precision, s.device),
                          "PyTorch NST tutorial design (loss modules in VGG, float32)",
                          f"VGG19 {px}px, content+style+TV, Adam, per step incl. targets", a / steps, b / steps,
                          f"step-0 loss rel diff {err:.1e} <= {tol:g}", err <= tol,
                          ">= 3x GPU, >= 1.5x CPU"))
    return out


def row_fast_style_inference(s: Setup) -> list[Result]:
    net = fast_style.TransformerNet().to(s.device).eval()
    sizes = [32] if s.tiny else ([256, 512, 1024, (1080, 1920)] if s.device.type == "cuda" else [256, 512])
    out = []
    for size in sizes:
        h, w = size if isinstance(size, tuple) else (size, size)
        x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(s.device)
        theirs = lambda: peers.examples_stylize(net, x)          # noqa: E731
        for precision, tol in (("float32", 1e-5), ("bfloat16", 2e-2)):
            ours = lambda: fast_style.stylize(net, x, precision=precision)  # noqa: E731
            err = _rel(ours(), theirs())
            a, b = _time_pair(s, ours, theirs)
            out.append(Result("fast style inference" + _precision_label(precision, s.device),
                              "pytorch/examples way (float32, eager)", f"{h}x{w}, {1 / a:.1f} frames/s", a, b,
                              f"max rel diff {err:.1e} <= {tol:g}", err <= tol,
                              ">= 4x GPU; 1080p >= 60 fps on H100", {"fps": 1 / a}))
    return out


def row_fast_style_train(s: Setup) -> list[Result]:
    model = models.load_model("vgg16", pretrained=False, device=s.device)
    px, n = (32, 2) if s.tiny else ((256, 4) if s.device.type == "cuda" else (128, 2))
    style_image, content = _batch(s, 1, px, 3), _batch(s, n, px, 4)
    targets = style.style_targets(model, None, style_image)
    peer_loss = peers.ExamplesPerceptualLoss(model, targets)
    out = []
    for precision, tol in (("float32", 1e-4), ("bfloat16", 2e-2)):
        torch.manual_seed(0)
        ours_net = fast_style.TransformerNet().to(s.device)
        peer_net = fast_style.TransformerNet().to(s.device)
        peer_net.load_state_dict(ours_net.state_dict())
        opt_a = torch.optim.Adam(ours_net.parameters(), lr=1e-3)
        opt_b = torch.optim.Adam(peer_net.parameters(), lr=1e-3)
        ours = lambda: fast_style.train_step(ours_net, opt_a, model, content, targets,  # noqa: E731
                                             precision=precision)["total"]
        theirs = lambda: peers.examples_train_step(peer_net, opt_b, peer_loss, content)  # noqa: E731
        first_a, first_b = ours(), theirs()
        err = abs(first_a - first_b) / abs(first_b)
        a, b = _time_pair(s, ours, theirs)
        out.append(Result("fast style train step" + _precision_label(precision, s.device),
                          "pytorch/examples recipe (VGG run in full on both batches, float32)",
                          f"batch {n}x{px}px, VGG16 loss", a, b, f"step-0 loss rel diff {err:.1e} <= {tol:g}",
                          err <= tol, ">= 2x GPU"))
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
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def table(results: list[Result]) -> str:
    lines = ["| row | work | peer | vizlib | peer time | ratio (peer/vizlib) | same result | goal |",
             "| --- | --- | --- | ---: | ---: | ---: | --- | --- |"]
    for r in results:
        lines.append(f"| {r.row} | {r.work} | {r.peer} | {r.vizlib_s * 1e3:.1f} ms | {r.peer_s * 1e3:.1f} ms "
                     f"| **{r.ratio:.2f}x** | {'yes' if r.ok else 'NO'}: {r.check} | {r.goal} |")
    return "\n".join(lines)


def run(names, device: torch.device, tiny: bool, warmup: int, reps: int) -> list[Result]:
    s = Setup(device, tiny, warmup, reps)
    results = []
    for name in names:
        out = ROWS[name](s)
        results.extend(out if isinstance(out, list) else [out])
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return results


def write_results(text: str, device: torch.device) -> Path:
    """Replace the CPU or GPU section of bench/RESULTS.md with ``text``."""
    path = HERE / "RESULTS.md"
    key = "GPU" if device.type == "cuda" else "CPU"
    sections = {"CPU": "_not run yet_", "GPU": "_not run yet_"}
    if path.exists():
        current = path.read_text()
        for k in sections:
            start = current.find(f"<!-- {k} -->")
            end = current.find(f"<!-- /{k} -->")
            if start >= 0 and end > start:
                sections[k] = current[start + len(f"<!-- {k} -->"):end].strip()
    sections[key] = text
    body = ["# Benchmark results", "",
            "Written by `python bench/run.py --write` (see bench/README.md). Ratios are peer time / "
            "vizlib time, measured side by side in one process; > 1 means vizlib is faster.", ""]
    for k in ("CPU", "GPU"):
        body += [f"## Last {k} run", "", f"<!-- {k} -->", sections[k], f"<!-- /{k} -->", ""]
    path.write_text("\n".join(body))
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
              f"`python bench/run.py --device {device.type}{' --tiny' if args.tiny else ''}`")
    text = header + "\n\n" + table(results)
    print(text)
    if args.write:
        print(f"\nwrote {write_results(text, device)}")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
