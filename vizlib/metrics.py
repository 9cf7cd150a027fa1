"""Measurements of pictures, apart from the methods that make them: nothing here is a loss.

- How close is a reconstruction to its original? Pixel MSE, PSNR and SSIM (lecture 11;
  :mod:`vizlib.ascent`'s feature inversion reports them for each layer).
- How alike are two textures, by statistics no network computed? Colour histograms and the
  radially averaged power spectrum of the luminance (lecture 12 compares Efros-Leung, Gram and
  random-network textures by them): :func:`texture_statistics`, :func:`texture_distance`.

Shapes: images ``(B, 3, H, W)`` float in [0, 1]. SSIM is scikit-image's
(``skimage.metrics.structural_similarity``), called per image on the CPU; these are
measurements, not losses: nothing here is differentiable.
"""
from __future__ import annotations

import math

import torch
from skimage.metrics import structural_similarity

from .color import luminance
from .images import check_images
from .validate import check_shape

__all__ = ["ssim", "reconstruction_error", "texture_statistics", "texture_distance"]

#: scikit-image's Gaussian SSIM window reaches ``int(3.5 * sigma + 0.5)`` pixels from its centre.
_SKIMAGE_TRUNCATE = 3.5


def _window_of(sigma: float) -> int:
    """The width of scikit-image's Gaussian SSIM window for ``sigma`` (11 for 1.5)."""
    return 2 * int(_SKIMAGE_TRUNCATE * sigma + 0.5) + 1


def ssim(a: torch.Tensor, b: torch.Tensor, *, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Structural similarity of images ``a`` and ``b``, averaged over channels and positions.

    Wang, Bovik, Sheikh & Simoncelli 2004, computed by scikit-image with a Gaussian window
    (``sigma``, ``window`` wide), constants ``K1 = 0.01``, ``K2 = 0.03``, data range 1, sample
    covariances, averaged over the positions where the window fits entirely.

    Shape:
        ``a``, ``b``: ``(B, C, H, W)`` float in [0, 1], one shape, ``H, W >= window``.
        Returns ``(B,)`` in [-1, 1] (1 = identical), on ``a``'s device in ``a``'s dtype.

    Raises:
        ValueError: the shapes differ or are not ``(B, C, H, W)``; ``window`` is not the width
            scikit-image gives ``sigma`` (``2 * int(3.5 * sigma + 0.5) + 1``: 11 for 1.5).
    """
    check_shape(a, "B C H W", "ssim: a")
    check_shape(b, "B C H W", "ssim: b", sizes=dict(zip("BCHW", a.shape)))
    if window != _window_of(sigma):
        raise ValueError(f"window {window} does not fit sigma {sigma}: scikit-image's Gaussian SSIM "
                         f"window for sigma {sigma} is {_window_of(sigma)} pixels wide")
    x = a.detach().to("cpu", torch.float64).numpy()
    y = b.detach().to("cpu", torch.float64).numpy()
    scores = [structural_similarity(xi, yi, channel_axis=0, data_range=1.0, gaussian_weights=True,
                                    sigma=sigma, use_sample_covariance=True) for xi, yi in zip(x, y)]
    return torch.tensor(scores, dtype=torch.float64).to(device=a.device, dtype=a.dtype)


def reconstruction_error(reconstruction: torch.Tensor, original: torch.Tensor) -> dict:
    """Pixel MSE, PSNR (dB) and SSIM (:func:`ssim`) between a reconstruction and the original.

    Shape:
        both ``(1, 3, H, W)`` in [0, 1] (any devices). Returns ``{"mse", "psnr", "ssim"}`` as
        floats, computed in float64; ``psnr`` is ``inf`` for identical images.
    """
    a, b = reconstruction.detach().double(), original.detach().double().to(reconstruction.device)
    mse = float((a - b).pow(2).mean())
    psnr = math.inf if mse == 0 else 10 * math.log10(1.0 / mse)
    return {"mse": mse, "psnr": psnr, "ssim": float(ssim(a, b).mean())}



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
