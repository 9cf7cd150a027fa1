"""Shapes: a generated image dataset whose ground truth is known pixel by pixel.

Every image holds exactly one *object* of one of :data:`CLASSES` on a cluttered
background, and comes with the object's mask and bounding box. Later lectures use
these to *measure* whether a heatmap (saliency, Grad-CAM, occlusion …) points at
the object, and the course's offline network (:mod:`vizlib.offline`) is trained on it.

The classes mix shape, texture and colour:

==========  ================================================================
``disc``      a filled circle of one colour
``square``    a filled square of one colour, rotated at random
``triangle``  a filled equilateral triangle of one colour, rotated at random
``cross``     a filled plus sign of one colour, rotated at random
``ring``      an annulus of one colour (the background shows through the hole)
``stripes``   a disc or rounded square filled with parallel stripes of two colours
``checker``   a disc or rounded square filled with a checkerboard of two colours
``rainbow``   a disc or rounded square whose hue sweeps once around its centre
==========  ================================================================

Colours are random for every class (so colour alone tells nothing, except for
``rainbow``, which is *defined* by its many hues), and the object's colour is chosen
to stand out from the background under it. The texture classes share their
silhouettes, so telling them apart needs the pattern *inside* the object. The
background is the same for every class: a smooth random colour field, soft blobs
and thin random strokes (distractors that are no class object), plus pixel noise.
So all evidence for the class lies on the object.

Objects have a random position and size (about 24–60 % of the image side) and
lie wholly inside the image. Everything is generated with vectorised ``torch``
from an explicit :class:`torch.Generator` (never the global RNG): the same seed
gives identical tensors on every call, on any machine with the same torch version.

Example::

    batch = make_batch(16, seed=0)
    batch["images"].shape   # (16, 3, 64, 64), float32 in [0, 1]
    batch["masks"].shape    # (16, 64, 64), bool
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

__all__ = ["CLASSES", "make_batch", "boxes_from_masks", "ShapesDataset"]

#: The class names, index-aligned with the labels.
CLASSES: tuple[str, ...] = ("disc", "square", "triangle", "cross", "ring", "stripes", "checker", "rainbow")

_DISC, _SQUARE, _TRIANGLE, _CROSS, _RING, _STRIPES, _CHECKER, _RAINBOW = range(len(CLASSES))
_TEXTURED = (_STRIPES, _CHECKER, _RAINBOW)

_CHUNK = 512          # images generated at once (bounds memory: ~40 MB per chunk at 64 px)
_N_STROKES = 5        # distractor strokes per image (at most; each shows with probability 3/4)
_N_BLOBS = 4          # distractor blobs per image (at most; each shows with probability 2/3)
_RADIUS = (0.12, 0.30)  # object radius as a fraction of the image side (diameter 24–60 %)


# ----------------------------------------------------------------------------- helpers

def _rand(g: torch.Generator, *shape, low=0.0, high=1.0) -> torch.Tensor:
    return torch.rand(*shape, generator=g) * (high - low) + low


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Hue, saturation, value (same shape, in [0, 1]) -> RGB with a new leading channel axis."""
    out = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + h * 6.0, 6.0)
        out.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(out, dim=0)


def _random_colours(g: torch.Generator, *shape) -> torch.Tensor:
    """Random vivid-to-muted colours, shape ``(*shape, 3)`` in [0, 1]."""
    h = _rand(g, *shape)
    s = _rand(g, *shape, low=0.35, high=1.0)
    v = _rand(g, *shape, low=0.25, high=1.0)
    return _hsv_to_rgb(h, s, v).movedim(0, -1)


def _coverage(sdf: torch.Tensor) -> torch.Tensor:
    """Anti-aliased coverage from a signed distance in pixels (negative inside)."""
    return torch.clamp(0.5 - sdf, 0.0, 1.0)


def _box_sdf(u: torch.Tensor, v: torch.Tensor, hu: torch.Tensor, hv: torch.Tensor) -> torch.Tensor:
    qu, qv = u.abs() - hu, v.abs() - hv
    outside = torch.sqrt(qu.clamp(min=0) ** 2 + qv.clamp(min=0) ** 2)
    return outside + torch.maximum(qu, qv).clamp(max=0)


def _rounded_box_sdf(u, v, half, corner):
    return _box_sdf(u, v, half - corner, half - corner) - corner


def boxes_from_masks(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes around masks.

    Args:
        masks: ``(N, H, W)`` bool, each non-empty.

    Returns:
        ``(N, 4)`` int64 ``(x0, y0, x1, y1)``: the first and one-past-last column and
        row that hold a mask pixel (``x1``, ``y1`` exclusive).
    """
    n, h, w = masks.shape
    cols = masks.any(dim=1).to(torch.int8)   # (N, W)
    rows = masks.any(dim=2).to(torch.int8)   # (N, H)
    x0 = cols.argmax(dim=1)
    x1 = w - cols.flip(1).argmax(dim=1)
    y0 = rows.argmax(dim=1)
    y1 = h - rows.flip(1).argmax(dim=1)
    return torch.stack([x0, y0, x1, y1], dim=1).to(torch.int64)


# ----------------------------------------------------------------------------- drawing

def _background(g: torch.Generator, n: int, size: int, yy, xx) -> torch.Tensor:
    """Smooth random colour field + soft blobs + thin strokes, ``(n, 3, size, size)``."""
    # a linear gradient between two colours along a random direction …
    c1, c2 = _random_colours(g, n), _random_colours(g, n)
    ang = _rand(g, n, high=2 * math.pi)
    t = (torch.cos(ang)[:, None, None] * (xx - size / 2) + torch.sin(ang)[:, None, None] * (yy - size / 2)) / size + 0.5
    t = t.clamp(0, 1)[:, None]
    grad = c1[:, :, None, None] * (1 - t) + c2[:, :, None, None] * t
    # … mixed with a smooth low-frequency colour field
    field = torch.nn.functional.interpolate(_rand(g, n, 3, 4, 4), size=(size, size), mode="bicubic",
                                            align_corners=False).clamp(0, 1)
    mix = _rand(g, n, 1, 1, 1, low=0.2, high=0.6)
    img = grad * (1 - mix) + field * mix

    # soft Gaussian blobs (never hard-edged, so they are no disc)
    centres = _rand(g, n, _N_BLOBS, 2) * size
    sigma = _rand(g, n, _N_BLOBS, low=0.03, high=0.08) * size
    peak = _rand(g, n, _N_BLOBS, low=0.4, high=0.8) * (_rand(g, n, _N_BLOBS) < 2 / 3)
    colours = _random_colours(g, n, _N_BLOBS)
    for k in range(_N_BLOBS):
        d2 = (xx - centres[:, k, 0, None, None]) ** 2 + (yy - centres[:, k, 1, None, None]) ** 2
        a = (peak[:, k, None, None] * torch.exp(-d2 / (2 * sigma[:, k, None, None] ** 2)))[:, None]
        img = torch.lerp(img, colours[:, k, :, None, None].expand_as(img), a)

    # thin straight strokes, 0.8–1.8 px wide
    p0 = _rand(g, n, _N_STROKES, 2) * size
    length = _rand(g, n, _N_STROKES, low=0.15, high=0.6) * size
    theta = _rand(g, n, _N_STROKES, high=2 * math.pi)
    p1 = p0 + length[..., None] * torch.stack([torch.cos(theta), torch.sin(theta)], dim=-1)
    width = _rand(g, n, _N_STROKES, low=0.8, high=1.8)
    show = _rand(g, n, _N_STROKES) < 0.75
    colours = _random_colours(g, n, _N_STROKES)
    for k in range(_N_STROKES):
        ax, ay = p0[:, k, 0, None, None], p0[:, k, 1, None, None]
        bx, by = p1[:, k, 0, None, None], p1[:, k, 1, None, None]
        dx, dy = bx - ax, by - ay
        s = (((xx - ax) * dx + (yy - ay) * dy) / (dx * dx + dy * dy)).clamp(0, 1)
        dist = torch.sqrt((xx - ax - s * dx) ** 2 + (yy - ay - s * dy) ** 2)
        a = (_coverage(dist - width[:, k, None, None] / 2) * show[:, k, None, None])[:, None]
        img = torch.lerp(img, colours[:, k, :, None, None].expand_as(img), a)
    return img


def _object_sdf(labels, u, v, radius, ring_inner, corner, silhouette):
    """Signed distance (pixels, negative inside) of each image's object, ``(n, H, W)``."""
    r = radius[:, None, None]
    sdf = torch.empty_like(u)
    for c in range(len(CLASSES)):
        idx = (labels == c).nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        uu, vv, rr = u[idx], v[idx], r[idx]
        if c == _DISC:
            d = torch.sqrt(uu ** 2 + vv ** 2) - rr
        elif c == _SQUARE:
            half = rr * 0.72
            d = _box_sdf(uu, vv, half, half)
        elif c == _TRIANGLE:  # circumradius r, inradius r / 2
            d = None
            for k in range(3):
                phi = 2 * math.pi * k / 3
                e = uu * math.cos(phi) + vv * math.sin(phi) - rr / 2
                d = e if d is None else torch.maximum(d, e)
        elif c == _CROSS:
            long, thin = rr * 0.95, rr * 0.3
            d = torch.minimum(_box_sdf(uu, vv, long, thin), _box_sdf(uu, vv, thin, long))
        elif c == _RING:
            inner = rr * ring_inner[idx, None, None]
            d = (torch.sqrt(uu ** 2 + vv ** 2) - (rr + inner) / 2).abs() - (rr - inner) / 2
        else:  # textured classes: a disc or a rounded square
            disc = torch.sqrt(uu ** 2 + vv ** 2) - rr * 0.95
            half = rr * 0.75
            rbox = _rounded_box_sdf(uu, vv, half, half * corner[idx, None, None])
            d = torch.where(silhouette[idx, None, None], disc, rbox)
        sdf[idx] = d
    return sdf


def _generate_chunk(g: torch.Generator, labels: torch.Tensor, size: int):
    n = labels.shape[0]
    ys = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = torch.meshgrid(ys, ys, indexing="ij")
    yy, xx = yy[None], xx[None]
    img = _background(g, n, size, yy, xx)

    # object geometry, drawn for every image whatever its class (keeps the stream simple)
    radius = _rand(g, n, low=_RADIUS[0], high=_RADIUS[1]) * size
    margin = radius + 1.0
    cx = margin + _rand(g, n) * (size - 2 * margin)
    cy = margin + _rand(g, n) * (size - 2 * margin)
    theta = _rand(g, n, high=2 * math.pi)
    ring_inner = _rand(g, n, low=0.45, high=0.6)
    corner = _rand(g, n, low=0.15, high=0.4)
    silhouette = _rand(g, n) < 0.5                       # textured: disc (True) or rounded square
    period = torch.clamp(radius * _rand(g, n, low=0.45, high=0.65), min=4.0)  # stripe/checker period
    phase = _rand(g, n, high=2 * math.pi)
    shade_dir = _rand(g, n, high=2 * math.pi)
    shade = _rand(g, n, low=0.0, high=0.25)
    candidates = _random_colours(g, n, 6)                # object colour: the one farthest from the bg
    second = _rand(g, n, low=0.1, high=0.3)
    hue0 = _rand(g, n)
    sat = _rand(g, n, low=0.75, high=1.0)
    val = _rand(g, n, low=0.8, high=1.0)
    noise_sigma = _rand(g, n, low=0.01, high=0.05)
    noise = torch.randn(n, 3, size, size, generator=g)

    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    ct, st = torch.cos(theta)[:, None, None], torch.sin(theta)[:, None, None]
    u, v = ct * dx + st * dy, -st * dx + ct * dy          # object-local coordinates, pixels
    sdf = _object_sdf(labels, u, v, radius, ring_inner, corner, silhouette)
    masks = sdf < 0
    alpha = _coverage(sdf)[:, None]

    # the candidate colour farthest from the mean background under the object
    area = masks.sum(dim=(1, 2)).clamp(min=1)
    under = (img * masks[:, None]).sum(dim=(2, 3)) / area[:, None]          # (n, 3)
    far = ((candidates - under[:, None]) ** 2).sum(-1).argmax(dim=1)
    colour = candidates[torch.arange(n), far]                                  # (n, 3)

    # flat colour with a gentle shading gradient
    sd = (torch.cos(shade_dir)[:, None, None] * dx + torch.sin(shade_dir)[:, None, None] * dy) / radius[:, None, None]
    flat = colour[:, :, None, None] * (1 + shade[:, None, None, None] * sd[:, None])
    fill = flat

    textured = (labels == _STRIPES) | (labels == _CHECKER)
    if textured.any():
        # the second colour: a much darker or much lighter version, whichever differs more
        darker, lighter = colour * second[:, None], 1 - (1 - colour) * second[:, None]
        use_dark = ((colour - darker) ** 2).sum(-1) >= ((colour - lighter) ** 2).sum(-1)
        other = torch.where(use_dark[:, None], darker, lighter)
        w = 2 * math.pi / period[:, None, None]
        s1 = torch.sin(u * w + phase[:, None, None])
        s2 = torch.sin(v * w + phase[:, None, None])
        pattern = torch.where((labels == _STRIPES)[:, None, None], s1, s1 * s2 * 2)
        t = torch.clamp(0.5 + 1.5 * pattern, 0, 1)[:, None]   # 1 -> colour, 0 -> other
        two = colour[:, :, None, None] * t + other[:, :, None, None] * (1 - t)
        fill = torch.where(textured[:, None, None, None], two, fill)
    rainbow = labels == _RAINBOW
    if rainbow.any():
        hue = torch.atan2(v, u) / (2 * math.pi) + hue0[:, None, None]
        rgb = _hsv_to_rgb(hue, sat[:, None, None].expand_as(hue), val[:, None, None].expand_as(hue)).movedim(0, 1)
        fill = torch.where(rainbow[:, None, None, None], rgb, fill)

    img = torch.lerp(img, fill.clamp(0, 1), alpha)
    img = img + noise * noise_sigma[:, None, None, None]
    return img.clamp_(0, 1), masks


def make_batch(n: int, size: int = 64, seed: int = 0, classes: Sequence[int] | None = None) -> dict:
    """Generate ``n`` images with their labels, object masks and boxes.

    Args:
        n: how many images.
        size: the image side ``H = W`` in pixels (>= 16; 64 is what the offline
            network was trained on).
        seed: the seed of the :class:`torch.Generator` that draws everything; the same
            ``(n, size, seed, classes)`` always gives identical tensors.
        classes: restrict to these label ids (indices into :data:`CLASSES`);
            default all classes.

    Returns:
        A dict with

        - ``images``: ``(N, 3, H, W)`` float32 in ``[0, 1]``,
        - ``labels``: ``(N,)`` int64, indices into :data:`CLASSES`; balanced (each class
          appears ``N // C`` or ``N // C + 1`` times) in shuffled order,
        - ``masks``: ``(N, H, W)`` bool, True exactly on the object's pixels (those
          covered at least half by the object), never empty,
        - ``boxes``: ``(N, 4)`` int64 ``(x0, y0, x1, y1)``, tight around the mask,
          ``x1``/``y1`` exclusive.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    ids = list(range(len(CLASSES))) if classes is None else [int(c) for c in classes]
    if not ids or any(not 0 <= c < len(CLASSES) for c in ids):
        raise ValueError(f"classes must be label ids in 0..{len(CLASSES) - 1}, got {classes!r}")
    g = torch.Generator().manual_seed(int(seed))
    pool = torch.tensor(ids, dtype=torch.int64)
    labels = pool[torch.arange(n) % len(ids)]
    labels = labels[torch.randperm(n, generator=g)]
    images = torch.empty(n, 3, size, size)
    masks = torch.empty(n, size, size, dtype=torch.bool)
    for start in range(0, n, _CHUNK):
        stop = min(start + _CHUNK, n)
        images[start:stop], masks[start:stop] = _generate_chunk(g, labels[start:stop], size)
    return {"images": images, "labels": labels, "masks": masks, "boxes": boxes_from_masks(masks)}


class ShapesDataset(torch.utils.data.Dataset):
    """``n`` generated images as a map-style dataset; ``ds[i]`` is ``(image, label)``.

    ``image`` is ``(3, H, W)`` float32 in ``[0, 1]`` and ``label`` an int.
    :meth:`sample` also gives the mask and box, and :meth:`batch` several at once.

    Images are generated in blocks of ``block`` images (block ``b`` is
    ``make_batch(block, size, seed=seed * 100_003 + b, classes)``), lazily on first
    access and then kept (about 50 kB per 64-px image). Image ``i`` does not
    depend on ``n``: ``ShapesDataset(100, seed=s)[i]`` equals
    ``ShapesDataset(5000, seed=s)[i]``.
    """

    def __init__(self, n: int, size: int = 64, seed: int = 0, classes: Sequence[int] | None = None,
                 block: int = 1024):
        self.n, self.size, self.seed, self.block = int(n), int(size), int(seed), int(block)
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        self._blocks: dict[int, dict] = {}

    def __len__(self) -> int:
        return self.n

    def _block(self, b: int) -> dict:
        if b not in self._blocks:
            self._blocks[b] = make_batch(self.block, self.size, seed=self.seed * 100_003 + b,
                                         classes=self.classes)
        return self._blocks[b]

    def _index(self, i: int) -> int:
        i = int(i)
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(f"index {i} out of range for {self.n} images")
        return i

    def sample(self, i: int) -> dict:
        """Image ``i`` with everything known about it: ``image`` (3, H, W), ``label``
        (int), ``mask`` (H, W) bool and ``box`` (4,) int64 ``(x0, y0, x1, y1)``."""
        i = self._index(i)
        blk, j = self._block(i // self.block), i % self.block
        return {"image": blk["images"][j], "label": int(blk["labels"][j]),
                "mask": blk["masks"][j], "box": blk["boxes"][j]}

    def __getitem__(self, i: int):
        s = self.sample(i)
        return s["image"], s["label"]

    def batch(self, indices: Sequence[int] | None = None) -> dict:
        """Several images stacked like :func:`make_batch`'s output (default: all)."""
        indices = range(self.n) if indices is None else indices
        items = [self.sample(i) for i in indices]
        return {"images": torch.stack([s["image"] for s in items]),
                "labels": torch.tensor([s["label"] for s in items], dtype=torch.int64),
                "masks": torch.stack([s["mask"] for s in items]),
                "boxes": torch.stack([s["box"] for s in items])}
