"""Classical texture synthesis: grow a large texture from a small sample, pixel by pixel.

Efros & Leung, "Texture Synthesis by Non-parametric Sampling" (ICCV 1999), in scan-line
order (as in Wei & Levoy, SIGGRAPH 2000): every new pixel looks at the pixels already made
around it (the half-window above and to its left), finds the places in the sample whose
surroundings look most like that, and copies the centre pixel of one of them.

No network is involved. It works well on simple, regular textures and fails on complex ones
(large structures, many scales): the neighbourhood only sees ``window`` pixels, so the method
either copies whole stretches of the sample verbatim or drifts into "garbage" it cannot
recover from. Lecture 12 shows both, then turns to Gram matrices (:mod:`vizlib.style`).

The search is vectorised: all candidate neighbourhoods of the sample are one matrix, and one
matrix-vector product per output pixel scores every candidate, so a 128x128 texture from a
64x64 sample takes seconds on a CPU.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .progress import progress_bar
from .validate import check_shape

#: A texture of at least this many pixels shows a progress bar by default (``progress=None``):
#: about two seconds on a laptop CPU from a 64x64 sample with an 11-pixel window.
PROGRESS_PIXELS = 96 * 96


class TextureResult(NamedTuple):
    """What :func:`nearest_neighbor_texture` returns.

    ``image``: ``(1, C, H, W)`` float in [0, 1], the synthesised texture.
    ``source``: ``(H, W, 2)`` long, the (row, col) in the sample each output pixel was
    copied from — long runs of consecutive sources mean the method copied a whole stretch.
    """

    image: torch.Tensor
    source: torch.Tensor


_ONE_IMAGE = " — the sample is one image, (1, C, h, w) or (C, h, w), float in [0, 1]"


def _one_image(sample: torch.Tensor) -> torch.Tensor:
    """``(1, C, h, w)`` or ``(C, h, w)`` float -> ``(1, C, h, w)`` (a view), checked by
    :func:`vizlib.validate.check_shape`; every error ends by saying what a sample is."""
    if isinstance(sample, torch.Tensor) and sample.ndim == 3:
        sample = sample.unsqueeze(0)
    return check_shape(sample, "1 C h w", "sample", hint=_ONE_IMAGE)


def causal_offsets(window: int) -> list[tuple[int, int]]:
    """The (row, col) offsets of the pixels already synthesised around a new pixel.

    In scan-line order these are the ``window // 2`` full rows above the pixel (``window``
    wide) and the ``window // 2`` pixels to its left: ``window * (window // 2) + window // 2``
    offsets, in raster order.
    """
    if not isinstance(window, int) or window < 3 or window % 2 == 0:
        raise ValueError(f"window must be an odd int >= 3, got {window!r}")
    half = window // 2
    offsets = [(dr, dc) for dr in range(-half, 1) for dc in range(-half, half + 1)]
    return [(dr, dc) for dr, dc in offsets if dr < 0 or dc < 0]


def nearest_neighbor_texture(sample: torch.Tensor, size: int | tuple[int, int] = 128, *,
                             window: int = 11, epsilon: float = 0.1, sigma: float | None = None,
                             seed: int = 0, progress: bool | None = None) -> TextureResult:
    """Synthesise a texture from ``sample`` by nearest-neighbour search in scan-line order.

    Efros & Leung (1999), with the causal (L-shaped) neighbourhood of scan-line order. For
    each output pixel, in raster order: take the already-made pixels in its causal
    neighbourhood (see :func:`causal_offsets`; at the borders only those inside the image),
    compare them, with Gaussian weights, with the same neighbourhood at every position of the
    sample (sum of squared differences), and copy the centre pixel of a position chosen at
    random among those within ``(1 + epsilon)`` of the best distance. The very first pixel
    has no neighbours and is a random sample pixel.

    Args:
        sample: ``(1, C, h, w)`` or ``(C, h, w)`` float in [0, 1], any number of channels;
            ``h`` and ``w`` must exceed ``window``.
        size: the output side, or ``(H, W)``.
        window: the odd neighbourhood width (the method's one real knob: small windows
            lose structure, large ones copy the sample).
        epsilon: tolerance of the random choice among near-best matches (0 = always the best).
        sigma: the Gaussian weighting's std in pixels (default ``window / 6.4``, Efros–Leung).
        seed: the random choices (first pixel, ties) come from a ``torch.Generator`` seeded here.
        progress: a progress bar over the output pixels, advanced a row at a time (``None``:
            when the texture has at least :data:`PROGRESS_PIXELS` pixels; see
            :mod:`vizlib.progress`). The result is the same either way.

    Returns:
        :class:`TextureResult` ``(image (1, C, H, W), source (H, W, 2))``, on the sample's
        device and dtype.
    """
    sample = _one_image(sample)
    offsets = causal_offsets(window)
    _, channels, h, w = sample.shape
    half = window // 2
    if h <= window or w <= window:
        raise ValueError(f"the sample ({h}x{w}) must be larger than the window ({window})")
    out_h, out_w = (size, size) if isinstance(size, int) else tuple(size)
    if out_h < 1 or out_w < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    sigma = window / 6.4 if sigma is None else float(sigma)
    device, dtype = sample.device, sample.dtype
    compute = torch.float64 if dtype == torch.float64 else torch.float32
    gen = torch.Generator().manual_seed(int(seed))

    # every full window of the sample: (P, C, window, window) -> causal part (P, K*C)
    src = sample[0].to(compute)
    patches = F.unfold(src.unsqueeze(0), window)[0]            # (C*window*window, P)
    patches = patches.view(channels, window, window, -1).permute(3, 0, 1, 2)
    rows = torch.tensor([half + dr for dr, _ in offsets], device=device)
    cols = torch.tensor([half + dc for _, dc in offsets], device=device)
    neigh = patches[:, :, rows, cols]                          # (P, C, K)
    centre = patches[:, :, half, half]                         # (P, C)
    n_pos = neigh.shape[0]
    k = len(offsets)
    # d(q) = sum_j w_j |p_j - q_j|^2 = [p^2 | p] @ [w ; -2 w q] + sum_j w_j |q_j|^2
    design = torch.cat([neigh.pow(2).sum(1), neigh.reshape(n_pos, channels, k).transpose(1, 2)
                        .reshape(n_pos, k * channels)], dim=1)  # (P, K + K*C)
    drs = torch.tensor([dr for dr, _ in offsets], dtype=compute, device=device)
    dcs = torch.tensor([dc for _, dc in offsets], dtype=compute, device=device)
    gauss = torch.exp(-(drs ** 2 + dcs ** 2) / (2 * sigma ** 2))
    pos_row = torch.arange(half, h - half, device=device).repeat_interleave(w - 2 * half)
    pos_col = torch.arange(half, w - half, device=device).repeat(h - half * 2)

    # the output canvas, padded so that every causal offset indexes inside it
    canvas = torch.zeros(channels, out_h + half, out_w + 2 * half, dtype=compute, device=device)
    known = torch.zeros(out_h + half, out_w + 2 * half, dtype=torch.bool, device=device)
    source = torch.zeros(out_h, out_w, 2, dtype=torch.long)
    off_r = torch.tensor([dr for dr, _ in offsets], device=device)
    off_c = torch.tensor([dc for _, dc in offsets], device=device)
    rand = torch.rand(out_h * out_w, generator=gen, dtype=torch.float64)
    with progress_bar(out_h * out_w, "nearest_neighbor_texture", progress, unit="px",
                      threshold=PROGRESS_PIXELS) as bar:
        for i in range(out_h):
            for j in range(out_w):
                r, c = i + half, j + half
                nr, nc = r + off_r, c + off_c
                mask = known[nr, nc]
                if not bool(mask.any()):
                    pick = int(rand[i * out_w + j] * n_pos)
                else:
                    wts = gauss * mask
                    q = canvas[:, nr, nc]                          # (C, K)
                    vec = torch.cat([wts, (-2 * wts * q).T.reshape(-1)])
                    dist = design @ vec + (wts * q.pow(2).sum(0)).sum()
                    best = dist.min()
                    ok = (dist <= best + epsilon * best.abs() + 1e-12).nonzero().flatten()
                    pick = int(ok[int(rand[i * out_w + j] * len(ok))])
                canvas[:, r, c] = centre[pick]
                known[r, c] = True
                source[i, j, 0] = pos_row[pick]
                source[i, j, 1] = pos_col[pick]
            bar.update(out_w)
    image = canvas[:, half:, half:half + out_w].unsqueeze(0).to(dtype)
    return TextureResult(image, source.to(device))
