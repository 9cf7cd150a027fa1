"""Colour spaces for images in [0, 1]: luminance and chrominance (YIQ), and colour preservation.

YIQ (the NTSC colour space) splits RGB into luminance ``Y`` (what a grey-scale picture keeps)
and two chrominance channels ``I`` and ``Q``. Style transfer uses it to keep the content
image's colours (Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer",
CVPR 2017); the network-free texture statistics (:mod:`vizlib.metrics`) measure the
spectrum of the luminance.

Shape:
    images ``(B, 3, H, W)`` float RGB in [0, 1]; YIQ images ``(B, 3, H, W)`` with ``Y`` in
    [0, 1] and ``I``, ``Q`` signed.
"""
from __future__ import annotations

import torch

from .validate import check_shape

__all__ = ["RGB_TO_YIQ", "rgb_to_yiq", "yiq_to_rgb", "luminance", "preserve_colors_of"]

#: Rows: the ``Y``, ``I`` and ``Q`` weights of ``R, G, B`` (NTSC); ``Y``'s row is the luminance.
#: Float64, cast to the images' dtype where it is used.
RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263],
                           [0.211456, -0.522591, 0.311135]], dtype=torch.float64)


def mix_channels(matrix: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Each pixel's 3 channels multiplied by ``matrix`` ``(3, 3)`` (cast to the images' dtype and
    device): ``(B, 3, H, W) -> (B, 3, H, W)``. Colour-space changes here and in
    :mod:`vizlib.render.param`'s decorrelated colour."""
    return torch.einsum("ij,bjhw->bihw", matrix.to(images.device, images.dtype), images)


def rgb_to_yiq(images: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` RGB -> ``(B, 3, H, W)`` YIQ (same dtype and device)."""
    return mix_channels(RGB_TO_YIQ, check_shape(images, "B 3 H W", "images"))


def yiq_to_rgb(yiq: torch.Tensor) -> torch.Tensor:
    """``(B, 3, H, W)`` YIQ -> ``(B, 3, H, W)`` RGB, the inverse of :func:`rgb_to_yiq` (not clamped)."""
    yiq = check_shape(yiq, "B 3 H W", "yiq")
    return mix_channels(torch.linalg.inv(RGB_TO_YIQ.to(yiq.device, yiq.dtype)), yiq)


def luminance(images: torch.Tensor) -> torch.Tensor:
    """The luminance ``Y`` of each pixel, ``(B, H, W)``: ``0.299 R + 0.587 G + 0.114 B``."""
    return rgb_to_yiq(images)[:, 0]


def preserve_colors_of(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The luminance (Y of YIQ) of ``stylized`` with the chrominance (I, Q) of ``content``.

    Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer": keeps the
    content's colours while taking the style's brush strokes. Both ``(B, 3, H, W)`` in
    [0, 1], same size; the result is clamped to [0, 1].
    """
    if stylized.shape != content.shape:
        raise ValueError(f"stylized {tuple(stylized.shape)} and content {tuple(content.shape)} must have the same shape")
    y = rgb_to_yiq(stylized)[:, :1]
    iq = rgb_to_yiq(content.to(stylized.dtype))[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], 1)).clamp(0, 1)
