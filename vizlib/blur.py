"""The one Gaussian of vizlib: its kernel and a separable blur.

Used by the render loop's :class:`vizlib.render.BlurEvery` and by RISE-style blurred baselines
(:mod:`vizlib.sanity`); nothing else in vizlib builds a Gaussian (SSIM is scikit-image's).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .validate import check_shape

__all__ = ["gaussian_kernel", "gaussian_blur"]


def gaussian_kernel(size: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """The normalised 1-D Gaussian of std ``sigma`` sampled at ``size`` points centred on the
    middle (the kernel of :func:`gaussian_blur`). Shape: ``(size,)``."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma: float, size: int | None = None) -> torch.Tensor:
    """Blur each channel with a Gaussian of std ``sigma`` pixels (separable, reflected borders).

    ``size``: the kernel's width (default ``2 * ceil(3 sigma) + 1``, scipy's ``truncate=3``).
    Borders are reflected as far as the image allows and replicated beyond (tiny images).
    Keeps a constant image constant; ``sigma <= 0`` returns ``x`` itself.

    Shape: ``(B, C, H, W) -> (B, C, H, W)``.
    """
    if sigma <= 0:
        return x
    check_shape(x, "B C H W", "gaussian_blur's x")
    size = int(size) if size is not None else 2 * max(1, int(math.ceil(3 * sigma))) + 1
    k = gaussian_kernel(size, sigma, x.dtype, x.device)
    half, c = size // 2, x.shape[1]
    pad = min(half, x.shape[-1] - 1, x.shape[-2] - 1)
    y = F.pad(x, (pad,) * 4, mode="reflect") if pad > 0 else x
    if pad < half:
        y = F.pad(y, (half - pad,) * 4, mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, size), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, size, 1), groups=c)
