"""Lecture 01 — first-layer filters: the weights of the first convolution seen as images.

The first layer takes an inner product of each filter with an image patch, so the patch
that excites a filter most is the filter itself: its weights *are* a picture of what it
looks for. From the second layer on, filters act on feature maps rather than on pixels,
so their weights are no longer pictures of anything we can see.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.utils import make_grid

from .hooks import capture_activations
from .layers import get_layer
from .policy import require_eval, to_model


def first_conv(model: nn.Module) -> nn.Conv2d:
    """The first ``Conv2d`` that reads the image's 3 colour channels."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d) and module.in_channels == 3:
            return module
    raise ValueError(f"{type(model).__name__} has no Conv2d with 3 input channels")


def conv_weights(model: nn.Module, layer: str | None = None) -> torch.Tensor:
    """A copy of a convolution's weights: ``(C_out, C_in, kH, kW)``, float32, on the CPU.

    ``layer=None`` takes the first convolution (:func:`first_conv`).
    """
    conv = first_conv(model) if layer is None else get_layer(model, layer)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"layer {layer!r} is a {type(conv).__name__}, not a Conv2d")
    return conv.weight.detach().to("cpu", torch.float32).clone()


def conv_layers(model: nn.Module) -> list[str]:
    """Names of every convolution of the model, in module order: its idea name where the model
    has one (``conv1_1``, ``stem_conv``), else its dotted path (``net.blocks.0.depthwise.conv``)."""
    idea = {}
    for name, path in (getattr(model, "layer_paths", None) or {}).items():
        idea.setdefault(path, name)
    return [idea.get(path, path) for path, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def normalize_filters(weights: torch.Tensor, mode: str = "per_filter") -> torch.Tensor:
    """Map filter weights to [0, 1] so they can be shown as images.

    Args:
        weights: ``(N, C, kH, kW)`` real-valued filters.
        mode: ``"per_filter"`` stretches each filter's own min..max to 0..1 (the classic
            display: every filter uses the full range); ``"global"`` uses one min..max for
            all filters, so their relative strengths stay visible; ``"symmetric"`` maps
            ``0 -> 0.5`` and the largest ``|w|`` to 0 or 1, so grey means "ignores".

    Returns:
        ``(N, C, kH, kW)`` float in [0, 1]. A constant filter becomes 0.5 everywhere.
    """
    if weights.ndim != 4:
        raise ValueError(f"filters must have shape (N, C, kH, kW); got {tuple(weights.shape)}")
    w = weights.detach().float()
    if mode == "per_filter":
        lo = w.amin(dim=(1, 2, 3), keepdim=True)
        hi = w.amax(dim=(1, 2, 3), keepdim=True)
    elif mode == "global":
        lo, hi = w.min(), w.max()
    elif mode == "symmetric":
        m = w.abs().amax(dim=(1, 2, 3), keepdim=True)
        lo, hi = -m, m
    else:
        raise ValueError(f"mode must be 'per_filter', 'global' or 'symmetric'; got {mode!r}")
    span = hi - lo
    out = (w - lo) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, out, torch.full_like(out, 0.5)).clamp(0, 1)


def filter_grid(weights: torch.Tensor, ncols: int = 8, padding: int = 1, pad_value: float = 1.0,
                mode: str = "per_filter") -> torch.Tensor:
    """Tile filters into one image, ``ncols`` to a row (``torchvision.utils.make_grid``).

    ``weights``: ``(N, C, kH, kW)`` with ``C`` = 3 (shown in colour) or 1 (grey).
    Returns ``(3, H, W)`` float in [0, 1]: ``padding`` pixels of ``pad_value`` around and
    between the filters, empty slots of the last row filled with ``pad_value``.
    """
    w = normalize_filters(weights, mode)
    n, c, kh, kw = w.shape
    if c == 1:
        w = w.expand(n, 3, kh, kw)
    elif c != 3:
        raise ValueError(f"filters to tile must have 1 or 3 channels; got {c} "
                         "(use channels_as_filters to show each input channel separately)")
    if n == 1:  # make_grid hands a lone image back without its border
        return F.pad(w[0], (padding,) * 4, value=pad_value)
    return make_grid(w, nrow=max(1, min(ncols, n)), padding=padding, pad_value=pad_value)


def channels_as_filters(weights: torch.Tensor) -> torch.Tensor:
    """Split ``(N, C, kH, kW)`` filters into ``N*C`` one-channel filters ``(N*C, 1, kH, kW)``.

    How second-layer weights are usually shown: one small grey square per (output,
    input) channel pair — which is exactly why they are hard to read.
    """
    n, c, kh, kw = weights.shape
    return weights.reshape(n * c, 1, kh, kw)


def filter_smoothness(weights: torch.Tensor) -> torch.Tensor:
    """How smooth each filter is: the correlation between neighbouring weights.

    For every filter, pairs each weight with its right and its lower neighbour (in every
    input channel) and returns their Pearson correlation. Trained first-layer filters are
    smooth edge and colour detectors (close to 1); random filters score about 0; a
    checkerboard scores -1.

    ``weights``: ``(N, C, kH, kW)`` with ``kH, kW >= 2``. Returns ``(N,)`` in [-1, 1]
    (0 for a constant filter).
    """
    if weights.ndim != 4 or weights.shape[-1] < 2 or weights.shape[-2] < 2:
        raise ValueError(f"filters must have shape (N, C, kH, kW) with kH, kW >= 2; got {tuple(weights.shape)}")
    w = weights.detach().double()
    n = w.shape[0]
    a = torch.cat([w[..., :, :-1].reshape(n, -1), w[..., :-1, :].reshape(n, -1)], dim=1)
    b = torch.cat([w[..., :, 1:].reshape(n, -1), w[..., 1:, :].reshape(n, -1)], dim=1)
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    denom = (a.square().sum(1) * b.square().sum(1)).sqrt()
    corr = (a * b).sum(1) / torch.where(denom > 0, denom, torch.ones_like(denom))
    return torch.where(denom > 0, corr, torch.zeros_like(corr)).float()


def strongest_patch(model: nn.Module, image: torch.Tensor, channel: int,
                    layer: str | None = None) -> tuple[torch.Tensor, tuple[int, int]]:
    """The image patch that excites one first-layer filter most.

    Runs the convolution over the whole image, finds the position of the largest
    response of ``channel``, and crops the pixels that position saw (its receptive field:
    kernel size, stride and padding of the first convolution).

    Args:
        image: ``(1, 3, H, W)`` float in [0, 1].
        channel: which filter.
        layer: the convolution's name (default: the first one, :func:`first_conv`).

    Returns:
        ``(patch, (y, x))``: ``patch`` is ``(3, kH, kW)`` in [0, 1] (zero-padded at the
        border, as the convolution saw it); ``(y, x)`` is its top-left corner in the image
        (negative where it hangs over the edge).
    """
    if image.ndim != 4 or image.shape[0] != 1:
        raise ValueError(f"image must have shape (1, 3, H, W); got {tuple(image.shape)}")
    conv = first_conv(model) if layer is None else get_layer(model, layer)
    if not 0 <= channel < conv.out_channels:
        raise IndexError(f"channel {channel} out of range: the layer has {conv.out_channels} filters")
    require_eval(model, "strongest_patch")
    with torch.no_grad(), capture_activations(model, [conv]) as acts:
        model(to_model(image, model))
    response = next(iter(acts.values()))[0, channel]
    row, col = divmod(int(response.argmax()), response.shape[1])
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    top, left = row * sh - ph, col * sw - pw
    padded = torch.nn.functional.pad(image[0], (pw, pw + kw, ph, ph + kh))
    patch = padded[:, top + ph: top + ph + kh, left + pw: left + pw + kw]
    return patch.clone(), (top, left)
