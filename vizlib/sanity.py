"""Lecture 15 — how to tell whether a heatmap is right.

A heatmap always *looks* like an explanation. Three measurements ask whether it is one:

- **Pointing game** (Zhang et al. 2016, "Top-down Neural Attention by Excitation
  Backprop"): does the map's maximum fall on the object? :func:`pointing_game`, with
  :func:`pointing_chance` for what a random point scores.
- **Deletion and insertion** (Petsiuk et al. 2018, "RISE"): delete the pixels the map calls
  most important first — the class probability should fall fast (low area under the curve);
  insert them first into a blurred image — it should rise fast (high area).
  :func:`deletion_curve`, :func:`insertion_curve`, :func:`auc`.
- **Cascading model randomisation** (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"):
  re-initialise the layers from the top down; a map that explains *the model* must change
  (low rank correlation with the original map). :func:`cascading_randomization`,
  :func:`rank_correlation`.

:func:`heatmap_report` runs all three for several methods on images whose object masks are
known (:func:`vizlib.shapes.make_batch`) and returns one row per method.
Methods are any ``f(model, images, target) -> (B, H, W)`` (see :mod:`vizlib.attribution`).
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .attribution import class_indices, class_scores
from .images import check_images
from .layers import get_layer, layer_names
from .policy import model_device, require_eval, to_model
from .progress import progress_bar
from .blur import gaussian_blur
from .validate import check_positive_int, check_shape

__all__ = ["pointing_game", "pointing_chance", "deletion_curve", "insertion_curve", "auc",
           "blur", "rank_correlation", "randomized_copy", "randomizable_layers",
           "cascading_randomization", "random_map", "heatmap_report"]


def _check_maps(maps: torch.Tensor, like: torch.Tensor, what: str = "maps") -> torch.Tensor:
    """``maps`` as one ``(B, H, W)`` map per image of ``like`` (``(B, ..., H, W)``), any dtype."""
    sizes = {"B": like.shape[0], "H": like.shape[-2], "W": like.shape[-1]}
    return check_shape(maps, "B H W", what, floating=False, sizes=sizes)


# ----------------------------------------------------------------------------------------
# Pointing game
# ----------------------------------------------------------------------------------------

def _dilate(masks: torch.Tensor, tolerance: int) -> torch.Tensor:
    if tolerance <= 0:
        return masks.bool()
    k = 2 * tolerance + 1
    yy, xx = torch.meshgrid(torch.arange(k) - tolerance, torch.arange(k) - tolerance, indexing="ij")
    disc = ((yy ** 2 + xx ** 2) <= tolerance ** 2).to(torch.float32, ).to(masks.device)
    hit = F.conv2d(masks.float()[:, None], disc[None, None], padding=tolerance)[:, 0]
    return hit > 0


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """Does each map's maximum fall on the object? (Zhang et al. 2016)

    Args:
        maps: ``(B, H, W)`` heatmaps (larger = more important).
        masks: ``(B, H, W)`` bool, True on the object.
        tolerance: a hit may miss the mask by up to this many pixels (the paper used 15 at
            224 px); 0 = the maximum must lie on the object.

    Returns:
        ``(B,)`` bool. Ties for the maximum are broken by the first pixel in row-major order
        (a constant map points at the top-left corner).
    """
    _check_maps(maps, masks, "maps")
    flat = maps.detach().flatten(1).argmax(1).to(masks.device)
    return _dilate(masks, tolerance).flatten(1).gather(1, flat[:, None])[:, 0]


def pointing_chance(masks: torch.Tensor, tolerance: int = 0) -> torch.Tensor:
    """The hit rate of a uniformly random point: the fraction of pixels that count as hits.

    ``masks``: ``(B, H, W)`` bool. Returns ``(B,)`` float in [0, 1].
    """
    return _dilate(masks, tolerance).flatten(1).float().mean(1)


# ----------------------------------------------------------------------------------------
# Deletion and insertion (RISE)
# ----------------------------------------------------------------------------------------

def blur(images: torch.Tensor, sigma: float = 5.0, size: int = 11) -> torch.Tensor:
    """Gaussian blur with a ``size x size`` kernel of std ``sigma`` (RISE's insertion canvas:
    11 x 11, sigma 5), reflect-padded: :func:`vizlib.blur.gaussian_blur` with RISE's settings.
    ``(B, 3, H, W) -> (B, 3, H, W)``, same range."""
    return gaussian_blur(images, sigma, size)


def _order(maps: torch.Tensor, seed: int) -> torch.Tensor:
    """Pixel indices by decreasing map value, ties in a random (seeded) order: ``(B, H*W)``."""
    flat = maps.detach().flatten(1).cpu().double()
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(flat.shape[1], generator=g)
    inner = torch.argsort(flat[:, perm], dim=1, descending=True, stable=True)
    return perm[inner]


@torch.no_grad()
def _perturbation_curve(model, images, maps, target, steps, start, finish, batch_size, seed, fn,
                        progress=None):
    require_eval(model, fn)
    check_images(images, f"{fn}: images")
    _check_maps(maps, images)
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    device = model_device(model)
    x = to_model(images.detach(), model)
    b, _, h, w = x.shape
    start, finish = start.to(device), finish.to(device)
    n = h * w
    order = _order(maps, seed).to(device)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(n, device=device).expand(b, n))
    counts = [round(k * n / steps) for k in range(steps + 1)]
    if not callable(target):
        target = class_indices(target, b, model(x))
    curve = torch.empty(b, steps + 1, dtype=torch.float64)
    jobs = [(i, k) for i in range(b) for k in range(steps + 1)]
    with progress_bar(-(-len(jobs) // batch_size), fn, progress) as bar:
        for j in range(0, len(jobs), batch_size):
            chunk = jobs[j:j + batch_size]
            idx = torch.tensor([i for i, _ in chunk], device=device)
            changed = torch.stack([rank[i] < counts[k] for i, k in chunk]).view(-1, 1, h, w)
            batch = torch.where(changed, finish[idx], start[idx])
            logits = model(batch)
            if callable(target):
                score = class_scores(logits, target)
            else:
                score = logits.float().softmax(1).gather(1, target[idx][:, None])[:, 0]
            for (i, k), s in zip(chunk, score.double().cpu()):
                curve[i, k] = s
            bar.update(1)
    return curve


def deletion_curve(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target=None, *,
                   steps: int = 20, fill: float | str = 0.0, sigma: float = 5.0,
                   batch_size: int = 64, seed: int = 0, progress: bool | None = None) -> torch.Tensor:
    """RISE's deletion curve (Petsiuk et al. 2018): the class probability as the most
    important pixels (by ``maps``) are set to ``fill``, ``1/steps`` of the image at a time.

    Args:
        model: an eval-mode classifier taking ``(B, 3, H, W)`` in [0, 1].
        images: ``(B, 3, H, W)`` in [0, 1]; maps: ``(B, H, W)``, larger = more important.
        target: class indices as in :mod:`vizlib.attribution` (``None`` = top class); the
            curve is the softmax probability of that class. A callable target gives its own
            score instead.
        fill: the value of deleted pixels (RISE: 0, black), or ``"blur"``: deleted pixels take
            their value in the blurred image (:func:`blur`, ``sigma``), the mirror image of
            insertion, which scatters fewer sharp out-of-distribution dots over the image.
        seed: breaks ties in the map in a random but reproducible order.
        progress: a progress bar over the forward passes, ``ceil(B * (steps + 1) / batch_size)``
            of them (``None``: when there are at least
            :data:`~vizlib.progress.PROGRESS_PASSES`; see :mod:`vizlib.progress`).

    Returns:
        ``(B, steps + 1)`` float64: entry ``k`` after deleting ``k/steps`` of the pixels.
        Lower area (:func:`auc`) = a better map.
    """
    x = images.detach()
    if isinstance(fill, str):
        if fill != "blur":
            raise ValueError(f"fill must be a number in [0, 1] or 'blur'; got {fill!r}")
        end = blur(x, sigma)
    else:
        end = torch.full_like(x, float(fill))
    return _perturbation_curve(model, x, maps, target, steps, x, end, batch_size, seed, "deletion_curve",
                               progress)


def insertion_curve(model: nn.Module, images: torch.Tensor, maps: torch.Tensor, target=None, *,
                    steps: int = 20, sigma: float = 5.0, batch_size: int = 64,
                    seed: int = 0, progress: bool | None = None) -> torch.Tensor:
    """RISE's insertion curve: start from the image blurred (:func:`blur`, ``sigma``) and put
    back the original pixels, most important first. Returns ``(B, steps + 1)`` float64.
    Higher area (:func:`auc`) = a better map. Other arguments (``progress`` too) as in
    :func:`deletion_curve`.
    """
    x = images.detach()
    return _perturbation_curve(model, x, maps, target, steps, blur(x, sigma), x, batch_size, seed,
                               "insertion_curve", progress)


def auc(curve: torch.Tensor) -> torch.Tensor:
    """Area under ``(B, S + 1)`` curves sampled at fractions ``0, 1/S, …, 1`` (trapezoid rule).
    Returns ``(B,)``."""
    if curve.ndim != 2 or curve.shape[1] < 2:
        raise ValueError(f"curve must have shape (B, S + 1) with S >= 1; got {tuple(curve.shape)}")
    return torch.trapezoid(curve, dx=1.0 / (curve.shape[1] - 1), dim=1)


# ----------------------------------------------------------------------------------------
# Cascading model randomisation (Adebayo et al. 2018)
# ----------------------------------------------------------------------------------------

def _average_ranks(v: torch.Tensor) -> torch.Tensor:
    """Ranks 1..n with ties given their average rank (as ``scipy.stats.rankdata``)."""
    values, inverse, counts = torch.unique(v, sorted=True, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    mid = ends - (counts.double() - 1) / 2
    return mid[inverse]


def rank_correlation(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation between paired maps, per image.

    ``a``, ``b``: ``(B, ...)``, flattened per image; ties get average ranks. A constant map
    carries no ranking: its correlation is defined as 0. Returns ``(B,)`` float64 in [-1, 1].
    """
    if a.shape != b.shape:
        raise ValueError(f"maps must have the same shape; got {tuple(a.shape)} and {tuple(b.shape)}")
    out = torch.zeros(a.shape[0], dtype=torch.float64)
    for i in range(a.shape[0]):
        ra = _average_ranks(a[i].detach().flatten().double().cpu())
        rb = _average_ranks(b[i].detach().flatten().double().cpu())
        ra, rb = ra - ra.mean(), rb - rb.mean()
        denom = math.sqrt(float((ra * ra).sum()) * float((rb * rb).sum()))
        out[i] = float((ra * rb).sum()) / denom if denom > 0 else 0.0
    return out


def randomizable_layers(model: nn.Module) -> list[str]:
    """Named layers that own parameters, from the top (output) down: the order of the cascade.

    For ShapesNet: ``fc, conv4, conv3, conv2, conv1``.
    """
    names = [n for n in layer_names(model)
             if any(True for _ in get_layer(model, n).parameters(recurse=True))]
    # drop containers whose parameters are all listed through their children
    keep = []
    for n in names:
        mods = set(id(p) for p in get_layer(model, n).parameters())
        inner = [m for m in names if m != n and set(id(p) for p in get_layer(model, m).parameters()) < mods]
        if not inner:
            keep.append(n)
    return keep[::-1]


def randomized_copy(model: nn.Module, layers: Sequence[str], seed: int = 0) -> nn.Module:
    """A deep copy of ``model`` whose named ``layers`` are re-initialised.

    Each module inside a named layer with a ``reset_parameters`` method draws fresh weights
    from PyTorch's default initialisation (so their scale is that of an untrained network),
    under a forked RNG seeded with ``seed`` (the caller's random state is untouched). The
    original model is not modified.
    """
    net = copy.deepcopy(model)
    devices = sorted({p.device.index or 0 for p in net.parameters() if p.device.type == "cuda"})
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        with torch.no_grad():
            for name in layers:
                for module in get_layer(net, name).modules():
                    if hasattr(module, "reset_parameters"):
                        module.reset_parameters()
    return net


def cascading_randomization(model: nn.Module, method: Callable, images: torch.Tensor, target=None,
                            *, layers: Sequence[str] | None = None, seed: int = 0,
                            progress: bool | None = None, **method_kwargs) -> list[dict]:
    """Adebayo et al. 2018's cascading randomisation: re-initialise the layers from the top
    down, one more each stage, and recompute the map each time.

    Args:
        method: ``f(model, images, target, **method_kwargs) -> (B, H, W)``.
        target: fixed for every stage (``None`` = the original model's top classes).
        layers: top-down order (default :func:`randomizable_layers`).
        progress: a progress bar over the ``len(layers) + 1`` stages (``None``: when there are
            at least :data:`~vizlib.progress.PROGRESS_PASSES`). It is the cascade's own and is
            not passed on to ``method``: to set the method's, bind it, e.g.
            ``functools.partial(smoothgrad, progress=False)``.

    Returns:
        ``[{"layer": "original", "maps": ..., "correlation": ones}, {"layer": "fc", ...}, …]``:
        stage ``k`` has layers ``layers[:k]`` randomised; ``"correlation"`` is the Spearman
        rank correlation (:func:`rank_correlation`) of ``|maps|`` with the original ``|maps|``,
        ``(B,)``. The caller's model is never modified.
    """
    layers = list(randomizable_layers(model) if layers is None else layers)
    if target is None:
        with torch.no_grad():
            target = model(to_model(images, model)).argmax(1).cpu()
    with progress_bar(len(layers) + 1, "cascading_randomization", progress, unit="stage") as bar:
        original = method(model, images, target, **method_kwargs)
        bar.update(1)
        stages = [{"layer": "original", "maps": original,
                   "correlation": torch.ones(original.shape[0], dtype=torch.float64)}]
        for k in range(1, len(layers) + 1):
            net = randomized_copy(model, layers[:k], seed=seed)
            maps = method(net, images, target, **method_kwargs)
            stages.append({"layer": layers[k - 1], "maps": maps,
                           "correlation": rank_correlation(original.abs(), maps.abs())})
            del net
            bar.update(1)
    return stages


# ----------------------------------------------------------------------------------------
# All of it, for several methods
# ----------------------------------------------------------------------------------------

def random_map(model: nn.Module, images: torch.Tensor, target=None, *, seed: int = 0) -> torch.Tensor:
    """The baseline "method": uniform noise ``(B, H, W)`` from a seeded generator."""
    g = torch.Generator().manual_seed(int(seed))
    b, _, h, w = images.shape
    return torch.rand(b, h, w, generator=g).to(images.device)


def heatmap_report(model: nn.Module, data: dict, methods: dict[str, Callable], *,
                   steps: int = 16, tolerance: int = 4, deletion_fill: float | str = "blur",
                   randomize: bool = True, seed: int = 0) -> list[dict]:
    """Measure every method on images with known object masks.

    Args:
        data: a :func:`vizlib.shapes.make_batch` dict (``images``, ``labels``, ``masks``) or an
            :func:`vizlib.samples.example_batch` dict (``targets`` instead of ``labels``);
            maps explain the true label.
        methods: ``name -> f(model, images, target) -> (B, H, W)``.
        steps: points on the deletion / insertion curves.
        tolerance: the pointing game's tolerance in pixels (default 4: the paper's 15 px at
            224 px, scaled to 64 px).
        deletion_fill: what deleted pixels become (default ``"blur"``, the same blurred image
            insertion starts from; ``0.0`` is RISE's black).

    Returns:
        one dict per method: ``method``, ``pointing`` (hit rate), ``chance`` (a random
        point's hit rate), ``deletion`` and ``insertion`` (mean AUC), and with
        ``randomize`` also ``corr_top`` (mean rank correlation after re-initialising the top
        layer) and ``corr_all`` (after re-initialising every layer).
    """
    images, masks = data["images"], data["masks"]
    labels = data["labels"] if "labels" in data else data["targets"]
    chance = float(pointing_chance(masks, tolerance).mean())
    rows = []
    for name, f in methods.items():
        maps = f(model, images, labels)
        row = {"method": name,
               "pointing": float(pointing_game(maps, masks, tolerance).float().mean()),
               "chance": chance,
               "deletion": float(auc(deletion_curve(model, images, maps, labels, steps=steps,
                                                    fill=deletion_fill, seed=seed)).mean()),
               "insertion": float(auc(insertion_curve(model, images, maps, labels, steps=steps,
                                                      seed=seed)).mean())}
        if randomize:
            layers = randomizable_layers(model)
            top = randomized_copy(model, layers[:1], seed=seed)
            row["corr_top"] = float(rank_correlation(maps.abs(), f(top, images, labels).abs()).mean())
            every = randomized_copy(model, layers, seed=seed)
            row["corr_all"] = float(rank_correlation(maps.abs(), f(every, images, labels).abs()).mean())
        rows.append(row)
    return rows
