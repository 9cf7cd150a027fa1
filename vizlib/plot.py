"""All of vizlib's drawing: image grids, filter grids, activation maps, heatmap overlays.

Algorithms elsewhere return tensors; this module turns them into matplotlib figures.
Every function returns the ``Figure`` (notebooks display it; :func:`save_figure` writes it).
"""
from __future__ import annotations

from typing import Sequence

import matplotlib

import matplotlib.pyplot as plt
import numpy as np
import torch

from .activations import normalize_maps
from .filters import filter_grid
from .images import to_numpy


def _grid(n: int, ncols: int, size: float, title_room: float = 0.0):
    ncols = max(1, min(ncols, n))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + title_room),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, axes.flat


def show_images(images, titles: Sequence[str] | None = None, ncols: int = 4, size: float = 2.5,
                suptitle: str | None = None):
    """Show images side by side.

    ``images``: ``(B, 3, H, W)`` float in [0, 1], or a list of such ``(1, 3, H, W)`` /
    ``(3, H, W)`` tensors (sizes may differ).
    """
    items = list(images) if not isinstance(images, torch.Tensor) else list(images.unbind(0))
    fig, axes = _grid(len(items), ncols, size, 0.4 if suptitle else 0.0)
    for i, (ax, img) in enumerate(zip(axes, items)):
        ax.imshow(to_numpy(img))
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def show_filters(weights: torch.Tensor, ncols: int = 8, mode: str = "per_filter",
                 title: str | None = None, scale: float = 0.6):
    """Show convolution filters ``(N, C, kH, kW)`` (C = 1 or 3) as one tiled image.

    ``mode`` is passed to :func:`vizlib.filters.normalize_filters`.
    """
    grid = filter_grid(weights, ncols=ncols, mode=mode)
    n, _, kh, kw = weights.shape
    cols = max(1, min(ncols, n))
    rows = -(-n // cols)
    fig, ax = plt.subplots(figsize=(max(3.0, cols * scale), max(2.0, rows * scale * kh / kw + 0.5)))
    ax.imshow(grid.permute(1, 2, 0).numpy(), interpolation="nearest")
    ax.axis("off")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def show_activation_maps(activation: torch.Tensor, ncols: int = 8, max_channels: int = 32,
                         channels: Sequence[int] | None = None, cmap: str = "viridis",
                         title: str | None = None, size: float = 1.4):
    """Show the channel maps of one image's activation, each stretched to its own range.

    ``activation``: ``(C, H, W)`` or ``(1, C, H, W)``. Silent channels are drawn black.
    """
    if activation.ndim == 4:
        if activation.shape[0] != 1:
            raise ValueError(f"show one image's activation; got a batch of {activation.shape[0]}")
        activation = activation[0]
    if activation.ndim != 3:
        raise ValueError(f"activation must have shape (C, H, W); got {tuple(activation.shape)}")
    idx = list(channels) if channels is not None else list(range(min(max_channels, activation.shape[0])))
    maps = normalize_maps(activation.detach().float().cpu())
    fig, axes = _grid(len(idx), ncols, size, 0.4 if title else 0.0)
    for ax, c in zip(axes, idx):
        ax.imshow(maps[c].numpy(), cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(str(c), fontsize=7, pad=2)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


#: Heatmaps are drawn from their minimum to this percentile of their values (higher values
#: saturate), as attribution figures are drawn in the field (Captum's ``outlier_perc``): on a
#: 224-pixel photo a few hot pixels would otherwise set the scale and leave the map blank.
CLIP_PERCENTILE = 99.0


def display_range(heatmap: torch.Tensor, clip: float | None = CLIP_PERCENTILE) -> tuple[float, float]:
    """``(lo, hi)`` colour limits of a map: its minimum and its ``clip``-th percentile (its maximum
    when ``clip`` is ``None``). ``heatmap``: any shape."""
    h = heatmap.detach().float().cpu().flatten()
    hi = float(h.max()) if clip is None else float(torch.quantile(h, clip / 100.0))
    return float(h.min()), hi


def _stretch(h: torch.Tensor, clip: float | None) -> torch.Tensor:
    lo, hi = display_range(h, clip)
    return ((h - lo) / (hi - lo)).clamp(0, 1) if hi > lo else torch.zeros_like(h)


def overlay_heatmap(image: torch.Tensor, heatmap: torch.Tensor, alpha: float = 0.5,
                    cmap: str = "jet", vmax: float | None = None,
                    clip: float | None = CLIP_PERCENTILE) -> np.ndarray:
    """Blend a heatmap over an image.

    ``image``: ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1]; ``heatmap``: ``(h, w)``, resized
    to ``H x W``. By default the heatmap is stretched from its own min to its ``clip``-th
    percentile (:data:`CLIP_PERCENTILE`; ``None``: its max); with ``vmax`` it is drawn on the
    fixed scale ``0..vmax`` instead (so several heatmaps share one colour scale). Returns
    ``(H, W, 3)`` in [0, 1].
    """
    img = to_numpy(image)
    h = heatmap.detach().float().cpu()
    while h.ndim > 2:
        h = h[0]
    if tuple(h.shape) != img.shape[:2]:
        h = torch.nn.functional.interpolate(h[None, None], size=img.shape[:2], mode="bilinear",
                                            align_corners=False)[0, 0]
    if vmax is not None:
        h = (h / vmax).clamp(0, 1) if vmax > 0 else torch.zeros_like(h)
    else:
        h = _stretch(h, clip)
    colored = matplotlib.colormaps[cmap](h.numpy())[..., :3]
    return np.clip((1 - alpha) * img + alpha * colored, 0, 1)


def show_heatmaps(images: torch.Tensor, heatmaps: torch.Tensor, titles: Sequence[str] | None = None,
                  alpha: float = 0.5, ncols: int = 4, size: float = 2.5, vmax: float | None = None):
    """Show each image with its heatmap overlaid. ``images`` ``(B, 3, H, W)``, ``heatmaps`` ``(B, h, w)``.

    ``vmax``: one colour scale ``0..vmax`` for all heatmaps (default: each its own range).
    """
    fig, axes = _grid(len(images), ncols, size)
    for i, ax in enumerate(axes):
        if i >= len(images):
            break
        ax.imshow(overlay_heatmap(images[i], heatmaps[i], alpha=alpha, vmax=vmax))
        if titles is not None:
            ax.set_title(titles[i], fontsize=9)
    fig.tight_layout()
    return fig


def plot_layer_stats(rows: Sequence[dict], keys: Sequence[str] = ("dead_fraction", "zero_fraction"),
                     title: str | None = None):
    """Plot per-layer numbers (from :func:`vizlib.activations.activation_stats`) against depth."""
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(rows) + 2), 3.2))
    x = np.arange(len(rows))
    for key in keys:
        ax.plot(x, [r[key] for r in rows], marker="o", label=key.replace("_", " "))
    ax.set_xticks(x, [r["layer"] for r in rows], rotation=45, ha="right")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("fraction")
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path, dpi: int = 110) -> None:
    """Write ``fig`` to ``path`` (PNG, PDF … by extension)."""
    fig.savefig(path, dpi=dpi, bbox_inches="tight")


# --- attribution (lectures 05-07, 15) ---

def gradient_image(grads: torch.Tensor, clip: float | None = CLIP_PERCENTILE) -> torch.Tensor:
    """Signed input gradients ``(B, 3, H, W)`` -> displayable images in [0, 1]: grey 0.5 is zero,
    each image scaled by the ``clip``-th percentile of its ``|values|`` (``None``: the largest),
    values beyond it saturating (as guided-backprop figures are drawn)."""
    g = grads.detach().float().cpu()
    a = g.flatten(1).abs()
    scale = (a.amax(1) if clip is None else torch.quantile(a, clip / 100.0, dim=1)).clamp(min=1e-12)
    return (0.5 + 0.5 * g / scale[:, None, None, None]).clamp(0, 1)


def show_map_table(images: torch.Tensor, maps: torch.Tensor, row_labels: Sequence[str] | None = None,
                   col_labels: Sequence[str] | None = None, overlay: bool = True, alpha: float = 0.55,
                   show_image: bool = True, size: float = 1.9, cmap: str = "jet", title: str | None = None,
                   clip: float | None = CLIP_PERCENTILE):
    """A table of heatmaps: row ``r`` shows ``images[r]`` and its maps ``maps[r, 0..C-1]``.

    ``images``: ``(R, 3, H, W)`` in [0, 1]; ``maps``: ``(R, C, h, w)``, each stretched from its
    minimum to its ``clip``-th percentile (:data:`CLIP_PERCENTILE`, said in the figure's caption;
    ``None``: to its maximum), overlaid on the image, or alone with ``overlay=False``.
    ``col_labels`` name the ``C`` map columns, ``row_labels`` the rows.
    """
    r, c = maps.shape[:2]
    cols = c + int(show_image)
    fig, axes = plt.subplots(r, cols, figsize=(size * cols, size * r + (0.4 if title else 0.0)),
                             squeeze=False)
    for i in range(r):
        if show_image:
            axes[i, 0].imshow(to_numpy(images[i]))
        for j in range(c):
            ax = axes[i, j + int(show_image)]
            if overlay:
                ax.imshow(overlay_heatmap(images[i], maps[i, j], alpha=alpha, cmap=cmap, clip=clip))
            else:
                m = maps[i, j].detach().float().cpu()
                lo, hi = display_range(m, clip)
                ax.imshow(m.numpy(), cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1.0)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    if col_labels is not None:
        heads = (["image"] if show_image else []) + list(col_labels)
        for j, label in enumerate(heads):
            axes[0, j].set_title(label, fontsize=9)
    if row_labels is not None:
        for i, label in enumerate(row_labels):
            axes[i, 0].set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if clip is not None:
        fig.text(0.995, 0.002, f"each map's colours: its minimum to its {clip:g}th percentile",
                 ha="right", va="bottom", fontsize=6, color="0.4")
    return fig


def show_attribution_grid(images: torch.Tensor, maps: dict, row_labels: Sequence[str] | None = None,
                          **kwargs):
    """Rows = images ``(B, 3, H, W)``; columns = methods: ``maps`` is ``{name: (B, h, w)}``
    (maps smaller than the images are resized to them, bilinear). Keyword arguments go to :func:`show_map_table`."""
    names = list(maps)
    size = tuple(images.shape[-2:])

    def full(m):
        m = m.detach().float().cpu()
        if tuple(m.shape[-2:]) != size:
            m = torch.nn.functional.interpolate(m[:, None], size=size, mode="bilinear",
                                                align_corners=False)[:, 0]
        return m

    table = torch.stack([full(maps[n]) for n in names], 1)
    return show_map_table(images, table, row_labels=row_labels, col_labels=names, **kwargs)


def plot_occlusion_sweep(scores: torch.Tensor, positions: Sequence[int], clean: float,
                         label: str = "class score", title: str | None = None, ax=None):
    """The target's score as the occluder slides along one row of the image.

    ``scores``: ``(n,)`` score with the patch's left edge at ``positions``; ``clean``: the
    score of the unoccluded image (a dashed line).
    """
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.0))
    ax.plot(list(positions), scores.detach().float().cpu().numpy(), marker="o", label="occluded")
    ax.axhline(clean, color="k", ls="--", lw=1, label="no occluder")
    ax.set_xlabel("patch position (left edge, pixels)")
    ax.set_ylabel(label)
    return _finish_axes(fig, ax, title, legend_size=8)


def _finish_axes(fig, ax, title: str | None, legend_size: int):
    """Grid, legend and title on a line plot's ``ax``; lay out ``fig`` if the plot made it
    (``None`` when drawn into a caller's axes). Returns the figure either way."""
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    if title:
        ax.set_title(title, fontsize=10)
    if fig is not None:
        fig.tight_layout()
    return fig if fig is not None else ax.figure


def plot_perturbation_curves(curves: dict, title: str | None = None, ylabel: str = "probability of the class",
                             xlabel: str = "fraction of pixels changed", ax=None):
    """Deletion or insertion curves (RISE): ``{name: (S + 1,)}`` (e.g. averaged over images),
    drawn over fractions ``0 .. 1`` with each curve's area in the legend."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, curve in curves.items():
        y = torch.as_tensor(curve).detach().double().cpu()
        x = torch.linspace(0, 1, len(y), dtype=torch.float64)
        area = float(torch.trapezoid(y, x))
        ax.plot(x.numpy(), y.numpy(), label=f"{name} (AUC {area:.2f})",
                ls="--" if name == "random" else "-", color="k" if name == "random" else None)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.02)
    return _finish_axes(fig, ax, title, legend_size=7)


def plot_cascade(correlations: dict, stages: Sequence[str], title: str | None = None):
    """Cascading randomisation: ``{method: (S,)}`` mean rank correlation with the original map
    after randomising ``stages[0]``, ``stages[:2]``, … (the top layer first)."""
    fig, ax = plt.subplots(figsize=(6.0 if len(stages) <= 12 else 8.0, 3.4))
    x = np.arange(len(stages))
    lowest = 0.0
    for name, corr in correlations.items():
        values = np.asarray(torch.as_tensor(corr).double().cpu())
        lowest = min(lowest, float(values.min()))
        ax.plot(x, values, marker="o", ms=4 if len(stages) > 12 else 6, label=name)
    every = -(-len(stages) // 12)  # at most about 12 stage names under the axis; always the last
    ax.set_xticks(x, [(f"+{s}" if i else s) if i % every == 0 or i == len(stages) - 1 else ""
                      for i, s in enumerate(stages)], rotation=30, ha="right")
    ax.set_ylabel("rank correlation with original")
    ax.set_xlabel("layers randomised, from the top down")
    ax.set_ylim(min(-0.1, lowest - 0.05), 1.05)
    ax.axhline(0, color="k", lw=0.8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


# --- gradient ascent (lectures 08-11) ---

def show_image_table(rows: dict, col_titles: Sequence[str] | None = None, size: float = 1.6,
                     title: str | None = None):
    """A grid of images: one row per entry of ``rows`` (``label -> (B, 3, H, W)`` in [0, 1]),
    one column per image, with the label at the left of each row and ``col_titles`` on top."""
    labels = list(rows)
    ncols = max(int(v.shape[0]) for v in rows.values())
    fig, axes = plt.subplots(len(labels), ncols, figsize=(size * ncols + 0.8, size * len(labels) + 0.3),
                             squeeze=False)
    for r, label in enumerate(labels):
        images = rows[label]
        for c in range(ncols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < images.shape[0]:
                ax.imshow(to_numpy(images[c]))
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
            if r == 0 and col_titles is not None and c < len(col_titles):
                ax.set_title(col_titles[c], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_history(history: dict, keys: Sequence[str] | None = None, title: str | None = None,
                 ax=None):
    """Plot a render history (``name -> [value per step]``, from :func:`vizlib.render.render`)."""
    own = ax is None
    if own:
        fig, ax = plt.subplots(figsize=(5.5, 3.0))
    else:
        fig = ax.figure
    for key in keys or list(history):
        ax.plot(history[key], label=key)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    if own:
        fig.tight_layout()
    return fig


def plot_by_layer(rows: Sequence[dict], keys: Sequence[str], title: str | None = None):
    """Plot per-layer numbers (e.g. from :func:`vizlib.ascent.inversion_by_layer`), one panel per key."""
    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.0), squeeze=False)
    x = np.arange(len(rows))
    for ax, key in zip(axes[0], keys):
        ax.plot(x, [r[key] for r in rows], marker="o")
        ax.set_xticks(x, [r["layer"] for r in rows], rotation=30, ha="right")  # long names (block11_depthwise)
        ax.set_title(key)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# --- texture and style (lectures 12-14) ---

def show_image_grid(rows: Sequence[Sequence[torch.Tensor]], row_titles: Sequence[str] | None = None,
                    col_titles: Sequence[str] | None = None, size: float = 2.2, suptitle: str | None = None):
    """A grid of images, ``rows[i][j]`` each ``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1], with
    row titles on the left and column titles on top (e.g. a weight sweep)."""
    nrows, ncols = len(rows), max(len(r) for r in rows)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + (0.9 if row_titles else 0), size * nrows + 0.3),
                             squeeze=False)
    for i, row in enumerate(rows):
        for j in range(ncols):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(row):
                ax.imshow(to_numpy(row[j]))
            if i == 0 and col_titles is not None:
                ax.set_title(col_titles[j], fontsize=9)
            if j == 0 and row_titles is not None:
                ax.set_ylabel(row_titles[i], fontsize=9)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def plot_loss_curves(curves: dict, xlabel: str = "step", ylabel: str = "loss", log: bool = True,
                     title: str | None = None, size=(6.0, 3.6)):
    """Loss curves: ``curves`` maps a label to ``ys`` or to ``(xs, ys)`` (e.g. seconds, loss)."""
    fig, ax = plt.subplots(figsize=size)
    for label, data in curves.items():
        xs, ys = data if isinstance(data, tuple) else (range(1, len(data) + 1), data)
        ax.plot(list(xs), list(ys), label=label, marker="." if len(list(ys)) < 40 else None)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def show_gram(gram: torch.Tensor, title: str = "Gram matrix", ax=None):
    """A ``(C, C)`` (or ``(1, C, C)``) Gram matrix as a heatmap. Returns the figure."""
    g = gram.detach().float().cpu()
    g = g[0] if g.ndim == 3 else g
    if ax is None:
        fig, ax = plt.subplots(figsize=(3.4, 3.0))
    else:
        fig = ax.figure
    im = ax.imshow(g.numpy(), cmap="magma")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("channel j")
    ax.set_ylabel("channel i")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def source_map_image(source: torch.Tensor, sample_hw: tuple[int, int]) -> torch.Tensor:
    """Colour each output pixel by where in the sample it was copied from (``source``:
    ``(H, W, 2)`` rows/cols from :func:`vizlib.texture.nearest_neighbor_texture`): red = row,
    green = column. Smooth colour ramps are stretches copied verbatim. Returns ``(1, 3, H, W)``."""
    h, w = sample_hw
    src = source.detach().cpu().float()
    rgb = torch.stack([src[..., 0] / max(h - 1, 1), src[..., 1] / max(w - 1, 1),
                       torch.full(src.shape[:2], 0.35)], 0)
    return rgb.unsqueeze(0)
