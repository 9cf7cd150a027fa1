"""Maximally activating patches: which image regions drive a channel hardest?

For every channel of a layer, scan a dataset, keep the ``k`` images whose strongest
response (the max over the channel's map) is largest, and remember *where* that max was.
Cropping each image at that unit's receptive field (:mod:`vizlib.receptive`) shows what
the channel responds to. One entry per image per channel (its best location), as in the
lecture, so the ``k`` patches come from ``k`` different images.

    top = top_activations(model, "relu4", images, k=9)
    rf = receptive_fields(model)["relu4"]
    patches = crop_patches(images, top, rf, channel=5)   # (9, 3, rf.size, rf.size)

The scan streams: ``images`` may be an iterable of batches, and only ``O(C * k)`` numbers
are kept between batches.
"""
from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .hooks import capture_activations
from .images import batch_count, iter_batches
from .policy import require_eval, to_model
from .progress import progress_bar
from .receptive import ReceptiveField
from .validate import check_positive_int

__all__ = ["TopActivations", "top_activations", "crop_patches", "class_purity",
           "chance_purity", "purity_vs_chance", "majority_labels"]


@dataclass(frozen=True)
class TopActivations:
    """The top-``k`` images of each channel (row ``r`` describes channel ``channels[r]``).

    Attributes:
        values: ``(C, k)`` float, each image's max response, sorted descending per row.
        image_index: ``(C, k)`` long, the image's global index in the scanned stream.
        y, x: ``(C, k)`` long, where in the layer's output map the max was.
        channels: the ``C`` channel ids, in row order.
        layer: the layer's name.
    """

    values: torch.Tensor
    image_index: torch.Tensor
    y: torch.Tensor
    x: torch.Tensor
    channels: list
    layer: str = ""

    def row(self, channel: int) -> int:
        """The row of ``channel`` (a channel id of the layer)."""
        try:
            return self.channels.index(int(channel))
        except ValueError:
            raise KeyError(f"channel {channel} was not scanned; scanned: {self.channels[:10]}…") from None


def _merge(kept: tuple | None, new: tuple, k: int) -> tuple:
    """Top-``k`` of the kept and new candidates per row; ties go to the earlier image.

    Each argument is ``(values, index, y, x)``, every entry ``(C, n)``. Kept candidates come
    from earlier images and precede new ones, so a stable sort keeps the earliest on ties.
    """
    if kept is not None:
        new = tuple(torch.cat([a, b], dim=1) for a, b in zip(kept, new))
    values = new[0]
    order = torch.sort(values, dim=1, descending=True, stable=True).indices[:, :k]
    return tuple(t.gather(1, order) for t in new)


def top_activations(model: torch.nn.Module, layer: str, images, k: int = 9,
                    channels: Sequence[int] | None = None, batch_size: int = 64,
                    progress: bool | None = None) -> TopActivations:
    """Find the ``k`` images (and locations) that excite each channel of ``layer`` most.

    Args:
        model: the network; it is only run (no grad), never changed.
        layer: a layer name with a ``(B, C, H', W')`` output.
        images: ``(N, 3, H, W)`` float in [0, 1], or an iterable of such batches (or of
            ``(images, labels)`` tuples) streamed one at a time; indices count across batches.
        k: how many images to keep per channel (fewer if the stream holds fewer images).
        channels: the channel ids to keep (default: all).
        batch_size: batch size when ``images`` is a tensor.
        progress: a progress bar over the batches (``None``: when there are at least
            :data:`~vizlib.progress.PROGRESS_PASSES`, counted as ``ceil(N / batch_size)`` for a
            tensor or ``len(images)`` for a stream; a stream without a length shows none).

    Returns:
        :class:`TopActivations` with ``(C, k)`` tensors on the CPU. Per channel, the score of
        an image is its max over the map (first location on ties); rows are sorted by value,
        ties by image index, so the result does not depend on ``batch_size``.
    """
    k = check_positive_int(k, "k")
    batch_size = check_positive_int(batch_size, "batch_size")
    require_eval(model, "top_activations")
    batches = iter_batches(images, batch_size)
    kept, seen, chosen = None, 0, None
    with progress_bar(batch_count(images, batch_size), f"scanning {layer}", progress,
                      unit="batch") as bar:
        for batch in batches:
            with torch.no_grad(), capture_activations(model, layer) as acts:
                model(to_model(batch, model))
            act = acts[layer]
            if act.dim() != 4:
                raise ValueError(f"layer {layer!r} output has shape {tuple(act.shape)}; expected (B, C, H, W)")
            if chosen is None:
                chosen = list(range(act.shape[1])) if channels is None else [int(c) for c in channels]
                if not chosen or min(chosen) < 0 or max(chosen) >= act.shape[1]:
                    raise ValueError(f"channels must lie in [0, {act.shape[1]}), got {chosen[:10]}")
            flat = act[:, chosen].flatten(2).float().cpu()            # (B, C, H'W')
            where = flat.argmax(dim=2)                                 # first max on ties
            values = flat.gather(2, where.unsqueeze(2)).squeeze(2)     # (B, C)
            width = act.shape[-1]
            b = flat.shape[0]
            index = torch.arange(seen, seen + b).unsqueeze(0).expand(len(chosen), b)
            new = (values.t(), index, (where // width).t(), (where % width).t())
            kept = _merge(kept, tuple(t.contiguous() for t in new), k)
            seen += b
            bar.update(1)
    if kept is None:
        raise ValueError("no images to scan")
    values, index, y, x = kept
    return TopActivations(values, index.long(), y.long(), x.long(), chosen, str(layer))


def crop_patches(images, top: TopActivations, rf: ReceptiveField, channel: int) -> torch.Tensor:
    """Crop the receptive field of each of ``channel``'s top locations.

    Args:
        images: the scanned ``(N, 3, H, W)`` tensor, or a callable ``index -> (3, H, W)``
            (for streamed datasets).
        top: the result of :func:`top_activations`.
        rf: the layer's receptive field (:func:`vizlib.receptive.receptive_fields`).
        channel: a channel id of the layer (one of ``top.channels``).

    Returns:
        ``(k, 3, rf.size, rf.size)``: patch ``j`` is the input box
        ``rf.box(top.y[r, j], top.x[r, j])`` of image ``top.image_index[r, j]``; where the
        box leaves the image it is zero (as the network's zero padding sees it).
    """
    row = top.row(channel)
    get: Callable = images if callable(images) else (lambda i: images[i])
    patches = []
    for i, y, x in zip(top.image_index[row].tolist(), top.y[row].tolist(), top.x[row].tolist()):
        image = get(i)
        _, h, w = image.shape
        t, l, b, r = rf.box(y, x)
        patch = image.new_zeros(image.shape[0], rf.size, rf.size)
        t0, l0, b0, r0 = max(t, 0), max(l, 0), min(b, h), min(r, w)
        if b0 > t0 and r0 > l0:
            patch[:, t0 - t:b0 - t, l0 - l:r0 - l] = image[:, t0:b0, l0:r0]
        patches.append(patch)
    return torch.stack(patches)


def class_purity(labels) -> float:
    """The fraction of ``labels`` (``(k,)`` int) that share the most common label."""
    labels = torch.as_tensor(labels).flatten().long()
    if labels.numel() == 0:
        raise ValueError("class_purity needs at least one label")
    return float(torch.bincount(labels).max()) / labels.numel()


def majority_labels(top: TopActivations, labels_of_dataset) -> torch.Tensor:
    """``(C,)`` the most common label among each channel's top images (smallest on ties)."""
    labels = torch.as_tensor(labels_of_dataset).long()[top.image_index]  # (C, k)
    return torch.mode(labels, dim=1).values


def chance_purity(labels_of_dataset, k: int, num_classes: int | None = None) -> float:
    """The purity expected of ``k`` images drawn at random (without replacement) from the dataset.

    That is the expected *largest class share* among the ``k``, computed exactly: with class
    counts ``n_c`` and ``N`` images, ``P(max count <= m)`` is the coefficient of ``x^k`` in
    ``prod_c sum_{j <= m} C(n_c, j) x^j`` divided by ``C(N, k)``, and
    ``E[max] = sum_{m < k} (1 - P(max <= m))``. It is well above the largest class prior:
    with 8 balanced classes, about 0.31 for ``k = 9`` and 0.26 for ``k = 16``.
    """
    labels = torch.as_tensor(labels_of_dataset).long().reshape(-1)
    n = labels.numel()
    if not 1 <= k <= n:
        raise ValueError(f"k must lie in [1, {n}] (the number of labelled images), got {k}")
    counts = torch.bincount(labels, minlength=num_classes or 0).tolist()
    total = math.comb(n, k)
    expected = 0
    for m in range(k):
        poly = [1] + [0] * k                        # ways to pick j images with every class <= m
        for c in counts:
            terms = [math.comb(c, j) for j in range(min(m, c) + 1)]
            poly = [sum(poly[d - j] * t for j, t in enumerate(terms) if j <= d) for d in range(k + 1)]
        expected += total - poly[k]
    return float(expected) / (total * k)


def purity_vs_chance(top: TopActivations, labels_of_dataset, num_classes: int) -> tuple[torch.Tensor, float]:
    """How class-pure each channel's top images are, and what chance would give.

    Args:
        top: from :func:`top_activations`.
        labels_of_dataset: ``(N,)`` int, the label of every scanned image (by global index).
        num_classes: the number of classes.

    Returns:
        ``(purity, chance)``: ``purity`` ``(C,)`` float, :func:`class_purity` of each row's
        labels; ``chance`` the purity expected of ``k`` images drawn without regard to the
        channel (:func:`chance_purity`, exact).
    """
    labels = torch.as_tensor(labels_of_dataset).long()
    picked = labels[top.image_index]                                      # (C, k)
    counts = torch.zeros(picked.shape[0], num_classes).scatter_add_(
        1, picked, torch.ones_like(picked, dtype=torch.float))
    purity = counts.max(dim=1).values / picked.shape[1]
    return purity, chance_purity(labels, picked.shape[1], num_classes)
