"""Regularisers: what keeps an optimised image natural.

*Penalties*, added to the loss with a weight (``reg.penalty(x) -> (B,)``): :class:`L2` and
:class:`TV` (total variation with exponent ``beta``, Mahendran & Vedaldi 2015).

*Between-step operations* on a :class:`~vizlib.render.PixelImage`'s pixels
(``reg.after_step(pixels, grad, step)``, in place; Yosinski et al. 2015, "Understanding Neural
Networks Through Deep Visualization"): :class:`BlurEvery` (Gaussian blur every ``k`` steps,
with :func:`vizlib.blur.gaussian_blur`), :class:`ClipSmallValues`, :class:`ClipSmallGradients`.
"""
from __future__ import annotations

import torch

from ..blur import gaussian_blur
from ..validate import check_number, check_shape
from .param import GREY

__all__ = ["total_variation", "L2", "TV", "BlurEvery", "ClipSmallValues", "ClipSmallGradients"]


def total_variation(x: torch.Tensor, beta: float = 2.0, eps: float = 1e-8) -> torch.Tensor:
    """Total variation ``R_{V^beta}(x) = sum_{c,i,j} ((x[i,j+1]-x[i,j])^2 + (x[i+1,j]-x[i,j])^2)^(beta/2)``.

    Mahendran & Vedaldi 2015, "Understanding Deep Image Representations by Inverting Them".
    ``x``: ``(B, C, H, W)``; the sum runs over channels and over the ``(H-1) x (W-1)`` positions
    that have both a right and a lower neighbour. Returns ``(B,)``. ``beta = 2`` is the plain
    sum of squared differences; ``beta < 2`` favours sharp edges over gentle ramps. For
    ``beta != 2`` each term is ``(d^2 + eps)^(beta/2) - eps^(beta/2)``: zero on flat regions, as
    it should be, with a finite gradient there.
    """
    check_shape(x, "B C H W", "total_variation's x")
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    d2 = dx * dx + dy * dy
    v = d2 if beta == 2 else (d2 + eps).pow(beta / 2) - eps ** (beta / 2)
    return v.flatten(1).sum(1)


class L2:
    """Penalty ``weight * mean((x - center)^2)`` per image: keeps pixels near grey.

    The seed's basic regulariser ``R(I) = lambda ||I||^2`` (Simonyan et al. 2014), with the
    image measured from ``center`` (grey, as a zero-centred image is measured from the mean)
    and averaged over pixels so ``weight`` does not depend on the image size.
    """

    name = "l2"

    def __init__(self, weight: float, center: float = GREY):
        self.weight, self.center = check_number(weight, "L2 weight", minimum=0.0), check_number(center, "L2 center")

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x - self.center).pow(2).flatten(1).mean(1)

    def __repr__(self):
        return f"L2({self.weight})"


class TV:
    """Penalty ``weight * total_variation(x, beta) / (H * W)`` per image (see :func:`total_variation`)."""

    name = "tv"

    def __init__(self, weight: float, beta: float = 2.0):
        self.weight, self.beta = check_number(weight, "TV weight", minimum=0.0), check_number(beta, "TV beta", positive=True)

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * total_variation(x, self.beta) / (x.shape[-1] * x.shape[-2])

    def __repr__(self):
        return f"TV({self.weight}, beta={self.beta})"


class BlurEvery:
    """Every ``every`` steps, blur the pixels with a Gaussian of std ``sigma`` (Yosinski et al. 2015).

    Removes the high-frequency patterns gradient ascent otherwise piles up.
    """

    name = "blur"

    def __init__(self, every: int = 4, sigma: float = 0.5):
        if every < 1:
            raise ValueError(f"BlurEvery needs every >= 1, got {every}")
        self.every, self.sigma = int(every), float(sigma)

    @torch.no_grad()
    def after_step(self, pixels: torch.Tensor, grad: torch.Tensor | None, step: int) -> None:
        if (step + 1) % self.every == 0:
            pixels.copy_(gaussian_blur(pixels, self.sigma))

    def __repr__(self):
        return f"BlurEvery({self.every}, sigma={self.sigma})"


def _small_mask(score: torch.Tensor, percentile: float) -> torch.Tensor:
    """``score``: (B, H, W); True where a pixel is below the image's ``percentile``-th percentile."""
    q = torch.quantile(score.flatten(1).double(), percentile / 100.0, dim=1).to(score.dtype)
    return score < q.view(-1, 1, 1)


class _PercentileClip:
    """Shared settings of the two clipping operations: a percentile in [0, 100] and the grey
    value clipped pixels are set to."""

    def __init__(self, percentile: float = 20.0, center: float = GREY):
        if not 0 <= percentile <= 100:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        self.percentile, self.center = float(percentile), float(center)

    def __repr__(self):
        return f"{type(self).__name__}({self.percentile})"


class ClipSmallValues(_PercentileClip):
    """After each step, set pixels whose colour is close to grey to grey (Yosinski et al. 2015).

    A pixel's size is ``||x[:, i, j] - center||`` over its three channels; pixels below the
    image's ``percentile``-th percentile of that size are set to ``center``. Only the strong
    evidence survives; the rest of the image stays neutral.
    """

    name = "clip_values"

    @torch.no_grad()
    def after_step(self, pixels: torch.Tensor, grad: torch.Tensor | None, step: int) -> None:
        size = (pixels - self.center).norm(dim=1)
        pixels.masked_fill_(_small_mask(size, self.percentile)[:, None].expand_as(pixels), self.center)


class ClipSmallGradients(_PercentileClip):
    """After each step, set pixels with a small gradient to grey (Yosinski et al. 2015).

    A pixel whose gradient norm over its channels is below the image's ``percentile``-th
    percentile barely affects the objective; it is set to ``center`` so the image keeps only
    what the unit responds to.
    """

    name = "clip_gradients"

    @torch.no_grad()
    def after_step(self, pixels: torch.Tensor, grad: torch.Tensor | None, step: int) -> None:
        if grad is None:
            return
        size = grad.norm(dim=1)
        pixels.masked_fill_(_small_mask(size, self.percentile)[:, None].expand_as(pixels), self.center)
