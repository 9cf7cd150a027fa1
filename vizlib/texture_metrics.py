"""Network-free texture statistics: judge a synthesised texture by something other than the
loss it was optimised for (lecture 12 compares Efros-Leung, Gram and random-network textures).

- :func:`texture_statistics`: colour histograms and the radially averaged power spectrum of
  the luminance (which scales the texture has).
- :func:`texture_distance`: how far two textures are by those statistics.

Shape:
    images ``(B, 3, H, W)`` float in [0, 1].
"""
from __future__ import annotations

import torch

from .color import luminance
from .images import check_images

__all__ = ["texture_statistics", "texture_distance"]


def texture_statistics(images: torch.Tensor, bins: int = 16) -> dict:
    """Two network-free texture statistics per image, to judge synthesised textures by
    something other than the loss they were optimised for.

    Returns ``{"histogram": (B, 3, bins)`` colour histograms (each channel sums to 1),
    ``"spectrum": (B, R)`` log radially-averaged power spectrum of the luminance (which
    scales the texture has)``}``. ``images``: ``(B, 3, H, W)`` in [0, 1].
    """
    images = check_images(images, "images").double()
    b, _, h, w = images.shape
    idx = (images.clamp(0, 1) * bins).long().clamp(max=bins - 1)
    hist = torch.zeros(b, 3, bins, dtype=torch.float64, device=images.device)
    hist.scatter_add_(2, idx.flatten(2), torch.ones_like(idx.flatten(2), dtype=torch.float64))
    hist /= h * w
    lum = luminance(images)
    lum = lum - lum.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(lum).abs().pow(2) / (h * w)
    fy = torch.fft.fftfreq(h, device=images.device).view(-1, 1)
    fx = torch.fft.fftfreq(w, device=images.device).view(1, -1)
    radius = (fy.pow(2) + fx.pow(2)).sqrt()
    nbins = min(h, w) // 2
    ring = (radius * 2 * nbins).long().clamp(max=nbins)  # ring 0 = DC ... nbins = corners
    spec = torch.zeros(b, nbins + 1, dtype=torch.float64, device=images.device)
    spec.scatter_add_(1, ring.flatten().expand(b, -1), power.flatten(1))
    counts = torch.bincount(ring.flatten(), minlength=nbins + 1).clamp(min=1)
    return {"histogram": hist, "spectrum": (spec / counts)[:, 1:nbins].add(1e-12).log10()}


def texture_distance(a: torch.Tensor, b: torch.Tensor) -> dict:
    """How far texture ``a`` is from texture ``b`` by :func:`texture_statistics` (``(1, 3, H, W)``
    each, sizes may differ if the spectra have equal length — resize first otherwise):
    ``{"histogram": total variation distance of the colour histograms, in [0, 1],
    "spectrum": mean absolute difference of the log10 power spectra}`` as floats."""
    sa, sb = texture_statistics(a), texture_statistics(b)
    if sa["spectrum"].shape != sb["spectrum"].shape:
        raise ValueError(f"spectra of different lengths {tuple(sa['spectrum'].shape)} vs "
                         f"{tuple(sb['spectrum'].shape)}: give images of the same size")
    return {"histogram": float(0.5 * (sa["histogram"] - sb["histogram"]).abs().sum(2).mean()),
            "spectrum": float((sa["spectrum"] - sb["spectrum"]).abs().mean())}
