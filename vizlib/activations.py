"""Lecture 02 — intermediate activations: what each layer computes on one image.

A convolution's output is a stack of 2-D maps, one per channel, each showing where in
the image its filter found what it looks for. Deeper layers see larger regions, respond
to more abstract patterns, and fire more sparsely: more channels stay silent on a given
image. :func:`activation_stats` measures that.
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .hooks import capture_activations
from .layers import get_layer, layer_names
from .policy import require_eval, to_model


@torch.no_grad()
def layer_activations(model: nn.Module, images: torch.Tensor,
                      layers: str | Iterable[str]) -> dict[str, torch.Tensor]:
    """Run ``model`` once and return the outputs of the named layers.

    ``images``: ``(B, 3, H, W)`` float in [0, 1] on any device; the model must be in eval mode.
    Returns ``{name: (B, C, h, w)}`` detached tensors on the images' device, in the order of
    ``layers`` (the device policy of :mod:`vizlib.models`).
    """
    layers = [layers] if isinstance(layers, str) else list(layers)
    require_eval(model, "layer_activations")
    with capture_activations(model, layers) as acts:
        model(to_model(images, model))
    return {name: acts[name].to(images.device) for name in layers}


def dead_channel_fraction(activation: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Fraction of channels that stay silent on each image.

    A channel is *dead* for an image when every value of its map is ``<= threshold``.

    ``activation``: ``(B, C, H, W)``. Returns ``(B,)`` float in [0, 1].
    """
    if activation.ndim != 4:
        raise ValueError(f"activation must have shape (B, C, H, W); got {tuple(activation.shape)}")
    silent = activation.flatten(2).amax(dim=2) <= threshold  # (B, C)
    return silent.float().mean(dim=1)


def zero_fraction(activation: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Fraction of values ``<= threshold`` in each image's activation (sparsity).

    ``activation``: ``(B, ...)``. Returns ``(B,)`` float in [0, 1].
    """
    return (activation.flatten(1) <= threshold).float().mean(dim=1)


def activation_stats(model: nn.Module, images: torch.Tensor, layers: Iterable[str]) -> list[dict]:
    """Per-layer summary of how activations change with depth, averaged over the batch.

    Returns one dict per layer: ``layer``, ``channels``, ``height``, ``width``,
    ``dead_fraction`` (channels silent on the image) and ``zero_fraction`` (values <= 0).
    Meaningful after a ReLU; before one, values are signed.
    """
    acts = layer_activations(model, images, layers)
    rows = []
    for name, a in acts.items():
        if a.ndim != 4:
            raise ValueError(f"layer {name!r} gives shape {tuple(a.shape)}, not a (B, C, H, W) feature map")
        rows.append(dict(layer=name, channels=a.shape[1], height=a.shape[2], width=a.shape[3],
                         dead_fraction=float(dead_channel_fraction(a).mean()),
                         zero_fraction=float(zero_fraction(a).mean())))
    return rows


def normalize_maps(activation: torch.Tensor) -> torch.Tensor:
    """Stretch each channel map to [0, 1] for display (a silent map stays 0).

    ``activation``: ``(C, H, W)`` or ``(B, C, H, W)``; returns the same shape.
    """
    lo = activation.amin(dim=(-2, -1), keepdim=True)
    hi = activation.amax(dim=(-2, -1), keepdim=True)
    span = hi - lo
    return torch.where(span > 0, (activation - lo) / torch.where(span > 0, span, torch.ones_like(span)),
                       torch.zeros_like(activation))


def _is_rectified(module: nn.Module) -> bool:
    """A rectifier module, or a ``Sequential`` whose last child is one."""
    if isinstance(module, nn.Sequential) and len(module):
        module = module[-1]
    return isinstance(module, (nn.ReLU, nn.ReLU6))


def feature_map_layers(model: nn.Module, image_size: int | None = None) -> list[str]:
    """Names of the layers whose outputs are rectified feature maps, in forward order.

    Every ReLU that outputs a ``(B, C, H, W)`` map, or — for networks whose ReLUs live
    inside blocks (ResNet, SqueezeNet) — the blocks themselves; for a network without
    ``relu*`` names, every named layer that is a rectifier module or a ``Sequential`` ending in
    one (EfficientNet-Lite0: ``stem``, ``blockN_expand``, ``blockN_depthwise``, ``head``).
    Found with one dry forward pass on a grey image of ``image_size`` (default: the model's
    ``input_size``).
    """
    names = layer_names(model)
    candidates = [n for n in names if n.startswith("relu")]
    blocks = [n for n in names if n.startswith("fire") or (n.startswith("layer") and "_" not in n)]
    candidates = candidates + blocks if blocks else candidates
    if not candidates:
        candidates = [n for n in names if _is_rectified(get_layer(model, n))]
    if not candidates:
        candidates = names
    size = image_size or getattr(model, "input_size", 224)
    param = next(model.parameters())
    probe = torch.full((1, 3, size, size), 0.5, device=param.device, dtype=param.dtype)
    acts = layer_activations(model, probe, candidates)
    keep = {n for n, a in acts.items() if a.ndim == 4}
    return [n for n in names if n in keep]
