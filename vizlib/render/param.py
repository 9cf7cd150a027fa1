"""Image parameterisations: the learnable tensors an image is made from.

Each has ``.tensors`` (the leaves the optimiser updates) and ``__call__() -> (B, 3, H, W)`` in
[0, 1]. :class:`PixelImage`: the pixels themselves (from an image or from seeded noise; kept
in [0, 1] by projection after every step), optionally in decorrelated colour.
:class:`FourierImage`: a scaled Fourier spectrum in decorrelated colour, squashed by a sigmoid
(Olah, Mordvintsev & Schubert 2017, "Feature Visualization", Distill).
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..color import mix_channels
from ..validate import check_shape

__all__ = ["GREY", "PixelImage", "FourierImage", "COLOR_CORRELATION_SQRT", "color_correlation_sqrt"]

#: The neutral image value: L2 and the clipping operations pull pixels towards it.
GREY = 0.5


def _shape4(shape) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, 3) + shape
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        raise ValueError(f"image shape must be (B, 3, H, W) or (H, W); got {shape}")
    return shape


def color_correlation_sqrt(images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The square root of the RGB covariance of ``images``, scaled so its largest column has norm 1.

    ``images``: ``(B, 3, H, W)`` or a list of such (sizes may differ). Returns ``(3, 3)``
    symmetric ``S`` with ``S @ S`` proportional to the colour covariance: multiplying
    independent (decorrelated) channels by ``S`` gives colours correlated as in real photos.
    """
    items = [images] if isinstance(images, torch.Tensor) else list(images)
    pixels = torch.cat([x.detach().double().permute(1, 0, 2, 3).reshape(3, -1) for x in items], dim=1)
    cov = torch.cov(pixels)
    vals, vecs = torch.linalg.eigh(cov)
    sqrt = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    return (sqrt / sqrt.norm(dim=0).max()).float()


#: ``color_correlation_sqrt`` of the bundled sample images (each loaded at ``size=128``);
#: ``tests/test_render.py`` recomputes it.
COLOR_CORRELATION_SQRT = torch.tensor([[0.8532, 0.4287, 0.2971],
                                       [0.4287, 0.5994, 0.4995],
                                       [0.2971, 0.4995, 0.7039]])


class PixelImage:
    """The image's pixels are the parameters (optionally in decorrelated colour).

    Args:
        init: ``(B, 3, H, W)`` float in [0, 1] to start from (copied; never modified), or
            ``None`` for grey plus seeded Gaussian noise of std ``noise``.
        shape: ``(B, 3, H, W)`` or ``(H, W)`` when ``init`` is ``None``.
        seed: seed of the noise.
        noise: noise std (in [0, 1] pixel units; with ``decorrelate``, of the decorrelated
            channels, so the image's colours are correlated as ``color @ color.T``).
        device, dtype: of the parameters (default: those of ``init``, else CPU float32).
        decorrelate: ``False`` (default): the parameters are the RGB pixels, as in the
            lectures' pixel ascent and the between-step operations (:class:`BlurEvery`,
            :class:`ClipSmallValues` …), which act on pixels. ``True``: as in
            :class:`FourierImage`, the parameters ``z`` are decorrelated colour channels and
            ``image = GREY + color @ z`` per pixel, so a gradient step moves colours the way
            photos vary (Olah et al. 2017); between-step operations are then refused by
            :func:`vizlib.render.render`.
        color: ``(3, 3)`` invertible colour mixing matrix for ``decorrelate`` (default
            :data:`COLOR_CORRELATION_SQRT`).

    ``param()`` returns the pixels (without ``decorrelate``, the leaf tensor itself); the loop
    keeps the image in [0, 1] by clamping after each step (projected gradient ascent).
    """

    def __init__(self, init: torch.Tensor | None = None, *, shape=None, seed: int = 0,
                 noise: float = 0.01, device=None, dtype=None, decorrelate: bool = False,
                 color: torch.Tensor | None = None):
        if init is not None:
            check_shape(init, "B 3 H W", "init", hint=" (float in [0, 1])")
            x = init.detach().clone().to(device=device or init.device, dtype=dtype or init.dtype)
        else:
            if shape is None:
                raise ValueError("PixelImage needs an init image or a shape")
            g = torch.Generator().manual_seed(seed)
            z = noise * torch.randn(_shape4(shape), generator=g, dtype=torch.float64)
            x = (z if decorrelate else GREY + z).to(device=device or "cpu", dtype=dtype or torch.float32)
        self.decorrelate = bool(decorrelate)
        if self.decorrelate:
            mix = (COLOR_CORRELATION_SQRT if color is None else color).double()
            check_shape(mix, "3 3", "color")
            self.color = mix.to(device=x.device, dtype=x.dtype)
            self.inverse = torch.linalg.inv(mix).to(device=x.device, dtype=x.dtype)
            if init is not None:
                x = mix_channels(self.inverse, x.clamp(0, 1) - GREY)
            self.pixels = x.requires_grad_(True)
            self.project()
        else:
            self.pixels = x.clamp(0, 1).requires_grad_(True)

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.pixels]

    @property
    def shape(self) -> tuple:
        return tuple(self.pixels.shape)

    def __call__(self) -> torch.Tensor:
        if not self.decorrelate:
            return self.pixels
        return GREY + mix_channels(self.color, self.pixels)

    @torch.no_grad()
    def project(self) -> None:
        """Put the image back into [0, 1] (called by the loop after each step)."""
        if not self.decorrelate:
            self.pixels.clamp_(0, 1)
            return
        image = self().clamp_(0, 1)
        self.pixels.copy_(mix_channels(self.inverse, image - GREY))


class FourierImage:
    """An image made from a learnable Fourier spectrum in decorrelated colour.

    ``image = sigmoid(S @ irfft2(spectrum * scale))``: each frequency ``f`` of the spectrum is
    scaled by ``1 / f**decay`` (natural images have about this falloff), so plain gradient
    steps on the spectrum change low frequencies as readily as high ones, and ``S``
    (:data:`COLOR_CORRELATION_SQRT`) mixes decorrelated channels into natural colour
    correlations. Optimising here instead of in pixels avoids the high-frequency noise pixel
    ascent is prone to (Olah, Mordvintsev & Schubert 2017, "Feature Visualization", Distill).

    Args:
        shape: ``(B, 3, H, W)`` or ``(H, W)``.
        seed: seed of the initial spectrum (std ``std``).
        decay: the frequency falloff exponent.
        color: ``(3, 3)`` colour mixing matrix (default :data:`COLOR_CORRELATION_SQRT`).
    """

    def __init__(self, shape, *, seed: int = 0, std: float = 0.01, decay: float = 1.0,
                 color: torch.Tensor | None = None, device=None, dtype=torch.float32):
        b, c, h, w = _shape4(shape)
        self.size = (h, w)
        fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
        freq = (fx ** 2 + fy ** 2).sqrt().clamp(min=1.0 / max(h, w))
        scale = freq ** (-decay)
        scale = scale / scale.pow(2).mean().sqrt()  # unit-std spectrum noise -> about unit-std pixels
        self.scale = scale.to(device=device, dtype=dtype)
        self.color = (COLOR_CORRELATION_SQRT if color is None else color).to(device=device, dtype=dtype)
        g = torch.Generator().manual_seed(seed)
        spec = std * torch.randn((b, c, h, w // 2 + 1, 2), generator=g, dtype=torch.float64)
        self.spectrum = spec.to(device=device, dtype=dtype).requires_grad_(True)

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.spectrum]

    @property
    def shape(self) -> tuple:
        return (self.spectrum.shape[0], 3, *self.size)

    def __call__(self) -> torch.Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale
        x = torch.fft.irfft2(spec, s=self.size, norm="ortho")
        x = mix_channels(self.color, x)
        return torch.sigmoid(x)
