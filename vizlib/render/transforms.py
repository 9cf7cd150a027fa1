"""Transforms: random changes to the image before the model sees it, a fresh draw per step.

Each is ``t(images, generator) -> images``, every random draw from the ``torch.Generator`` the
render loop passes in: :class:`Pad`, :class:`Jitter`, :class:`RandomScale`,
:class:`RandomRotate` (with the deterministic :func:`rotate`), :class:`Compose`. Robustness to
them stops an optimised image from relying on one exact pixel alignment.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .param import GREY

__all__ = ["Pad", "Jitter", "shift", "RandomScale", "rotate", "RandomRotate", "Compose"]


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


class Pad:
    """Pad the image by ``pixels`` on every side: ``(B, C, H, W) -> (B, C, H + 2p, W + 2p)``.

    ``mode``: ``"reflect"`` (default; mirrored about the border pixel), ``"replicate"`` (the
    border pixel repeated) or ``"constant"`` (filled with ``value``, grey by default). Put it
    before ``Jitter(pixels, wrap=False)`` to shift the image without wrapping it around: what
    the shift brings in at one border comes from the padding beside that border, never from
    the opposite one (Lucent pads the same way).
    """

    MODES = ("reflect", "replicate", "constant")

    def __init__(self, pixels: int, mode: str = "reflect", value: float = GREY):
        if pixels < 0:
            raise ValueError(f"Pad needs pixels >= 0, got {pixels}")
        if mode not in self.MODES:
            raise ValueError(f"Pad mode must be one of {', '.join(map(repr, self.MODES))}, got {mode!r}")
        self.pixels, self.mode, self.value = int(pixels), mode, float(value)

    def __call__(self, x: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        if self.pixels == 0:
            return x
        value = self.value if self.mode == "constant" else None
        return F.pad(x, (self.pixels,) * 4, mode=self.mode, value=value)

    def __repr__(self):
        return f"Pad({self.pixels}, mode={self.mode!r})"


class Jitter:
    """Shift the image by ``(dy, dx)``, each drawn uniformly from ``[-pixels, pixels]`` per call.

    ``wrap=True`` (default): a cyclic shift (``torch.roll``), same size, content leaving one
    border re-enters at the opposite one. ``wrap=False``: no wrapping; the window
    ``[pixels - dy, H - pixels - dy) x [pixels - dx, W - pixels - dx)`` is cut out, so the
    result is ``2 * pixels`` smaller per axis — after ``Pad(pixels)`` it is the input's size and
    equals the cyclic shift everywhere except near the borders, which come from the padding.
    Both draw the same ``(dy, dx)`` from the generator.
    """

    def __init__(self, pixels: int, wrap: bool = True):
        if pixels < 0:
            raise ValueError(f"Jitter needs pixels >= 0, got {pixels}")
        self.pixels, self.wrap = int(pixels), bool(wrap)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.pixels == 0:
            return x
        p = self.pixels
        dy, dx = torch.randint(-p, p + 1, (2,), generator=g).tolist()
        if self.wrap:
            return torch.roll(x, shifts=(dy, dx), dims=(2, 3))
        h, w = x.shape[-2:]
        if h <= 2 * p or w <= 2 * p:
            raise ValueError(f"Jitter({p}, wrap=False) crops {2 * p} pixels per axis from a {h}x{w} "
                             f"image; pad it first with Pad({p})")
        return x[..., p - dy:h - p - dy, p - dx:w - p - dx]

    def __repr__(self):
        return f"Jitter({self.pixels})" if self.wrap else f"Jitter({self.pixels}, wrap=False)"


def shift(pixels: int, mode: str = "reflect") -> "Compose":
    """A random shift of up to ``pixels`` that never wraps the image around, same size:
    ``Compose(Pad(pixels, mode), Jitter(pixels, wrap=False))``. The course's default jitter."""
    return Compose(Pad(pixels, mode), Jitter(pixels, wrap=False))


class RandomScale:
    """Resize by a factor drawn uniformly from ``scales = (low, high)`` (bilinear)."""

    def __init__(self, scales=(0.9, 1.1)):
        self.scales = (float(scales[0]), float(scales[1]))

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = _uniform(g, *self.scales)
        h, w = x.shape[-2:]
        size = (max(1, round(h * s)), max(1, round(w * s)))
        if size == (h, w):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def __repr__(self):
        return f"RandomScale({self.scales})"


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate ``x`` about its centre by ``degrees`` (bilinear, border pixels repeated).

    Positive angles turn the image counter-clockwise as displayed (row 0 at the top):
    ``rotate(x, 90)`` equals ``torch.rot90(x, 1, dims=(2, 3))``, which takes the top-right
    corner to the top-left. Shape: ``(B, C, H, W) -> (B, C, H, W)``.
    """
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class RandomRotate:
    """Rotate by an angle drawn uniformly from ``[-degrees, degrees]`` (border pixels repeated)."""

    def __init__(self, degrees: float = 10.0):
        self.degrees = float(degrees)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return rotate(x, _uniform(g, -self.degrees, self.degrees))

    def __repr__(self):
        return f"RandomRotate({self.degrees})"


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, *transforms):
        self.transforms = list(transforms[0]) if len(transforms) == 1 and \
            isinstance(transforms[0], (list, tuple)) else list(transforms)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, g)
        return x

    def __repr__(self):
        return f"Compose({self.transforms})"
