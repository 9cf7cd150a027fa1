"""How close is a reconstruction to its original? Pixel MSE, PSNR and SSIM (lecture 11).

Image-quality numbers, apart from the methods that make the images (:mod:`vizlib.ascent`'s
feature inversion reports them for each layer). SSIM is scikit-image's
(``skimage.metrics.structural_similarity``), called per image on the CPU; these are
measurements, not losses: nothing here is differentiable.
"""
from __future__ import annotations

import math

import torch
from skimage.metrics import structural_similarity

from .validate import check_shape

__all__ = ["ssim", "reconstruction_error"]

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
