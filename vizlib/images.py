"""Loading, checking and converting images: one pixel convention for the whole library.

Every image in vizlib is a ``torch.float32`` tensor of shape ``(B, 3, H, W)`` with
values in ``[0, 1]`` (RGB, no ImageNet normalisation: that happens at the model's
door, elsewhere). This module turns everything else into that form and back:

- :func:`load_image` reads a path, an http(s) URL, raw bytes, a PIL image, a NumPy
  array or a tensor and returns a ``(1, 3, H, W)`` tensor. It handles EXIF
  orientation, transparency (composited over white), grayscale / 1-bit / 16-bit /
  palette / CMYK / YCbCr images, and refuses huge images unless asked to
  downscale them while decoding.
- The photos that ship inside installed packages (``sample_image``) live in
  :mod:`vizlib.samples`, with the paintings and the lectures' example batches.
- :func:`check_images` validates a ``(B, 3, H, W)`` batch; other modules call it at
  their entry points so mistakes are caught early with a message saying how to fix them.
- :func:`resize`, :func:`center_crop`, :func:`stack_images`, :func:`to_numpy`,
  :func:`to_pil`, :func:`save_image` are small helpers around that convention.

All errors are :class:`ImageError` (a ``ValueError``) or a subclass of it.
"""
from __future__ import annotations

import io
import math
import os
import re
import struct
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
import torchvision.transforms.v2.functional as TF
from PIL import ExifTags, Image, ImageFile, ImageOps, UnidentifiedImageError

from . import config
from .fetch import FetchError, fetch_bytes
from .validate import check_shape

__all__ = [
    "ImageError",
    "ImageNotFoundError",
    "ImageFetchError",
    "ImageTypeError",
    "DECODE_BUDGET_BYTES",
    "load_image",
    "check_images",
    "resize",
    "center_crop",
    "stack_images",
    "to_numpy",
    "to_pil",
    "save_image",
    "check_output_path",
]

Size = Union[None, int, Sequence[int]]

#: With ``downscale=True``, formats that cannot be reduced while decoding (everything
#: except JPEG) are decoded at full size in their compact native form and then
#: block-averaged strip by strip (``Image.reduce``). This caps the memory that full-size decode may take.
DECODE_BUDGET_BYTES = 1 << 30

_PIL_LIMIT_LOCK = threading.Lock()
_STRIP_BYTES = 16 << 20  # converted rows held at once while downscaling (at most 4 bytes a pixel)


# --------------------------------------------------------------------------- errors


class ImageError(ValueError):
    """An image could not be loaded, or an image tensor has the wrong form."""


class ImageNotFoundError(ImageError, FileNotFoundError):
    """The image file does not exist (also a ``FileNotFoundError``)."""


class ImageFetchError(ImageError, FetchError):
    """An image URL could not be downloaded (also a :class:`vizlib.fetch.FetchError`)."""


class ImageTypeError(ImageError, TypeError):
    """The source is of a type :func:`load_image` does not understand (also a ``TypeError``)."""


# --------------------------------------------------------------------------- sizes


def _parse_size(size: Any) -> None | int | tuple[int, int]:
    """Validate ``size``: None, a positive int, or a pair ``(H, W)`` of positive ints."""
    if size is None:
        return None
    if isinstance(size, (bool, np.bool_)):
        raise ImageError(f"size must be None, an int or a pair (H, W); got {size!r}")
    if isinstance(size, (int, np.integer)):
        if size < 1:
            raise ImageError(f"size must be a positive int; got {size}")
        return int(size)
    if isinstance(size, (tuple, list, torch.Size)) and len(size) == 2:
        h, w = size
        if all(isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) for v in (h, w)):
            if h < 1 or w < 1:
                raise ImageError(f"size (H, W) must be positive; got {tuple(size)}")
            return int(h), int(w)
    raise ImageError(
        "size must be None (keep), an int (the shorter side, aspect kept) or a pair "
        f"(H, W) of ints; got {size!r}"
    )


def _fmt_bytes(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


# --------------------------------------------------------------------------- checks


def _shape(x) -> str:
    return "(" + ", ".join(str(int(s)) for s in x.shape) + ")"


def _shape_hint(x: torch.Tensor) -> str:
    """How to make a tensor of this shape a ``(B, 3, H, W)`` batch ('' when the shape is
    right or suggests nothing)."""
    s = tuple(x.shape)
    if x.ndim == 2:
        return " — one grayscale (H, W) image: use x[None, None].expand(-1, 3, -1, -1)"
    if x.ndim == 3:
        if s[0] == 3:
            return " — add a batch dimension with x[None]"
        if s[-1] == 3:
            return " — this looks like one channels-last (H, W, 3) image: use x.permute(2, 0, 1)[None]"
        if s[0] == 1:
            return " — one grayscale image: use x[None].expand(-1, 3, -1, -1)"
    if x.ndim == 5 and s[0] == 1:
        return " — remove the extra leading dimension with x[0]"
    if x.ndim == 4 and s[1] != 3:
        if s[-1] == 3:
            return " — 3 RGB channels wanted; this looks channels-last (B, H, W, 3): use x.permute(0, 3, 1, 2)"
        if s[1] == 1:
            return " — 3 RGB channels wanted; grayscale: repeat the channel with x.expand(-1, 3, -1, -1)"
        if s[1] == 4:
            return (" — 3 RGB channels wanted; RGBA: drop alpha with x[:, :3] (or load the file with "
                    "load_image, which composites over white)")
        return " — 3 RGB channels wanted"
    return ""


def check_images(x: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Validate an image batch and return it unchanged.

    ``x`` must be a floating-point ``torch.Tensor`` of shape ``(B, 3, H, W)`` (B, H, W
    at least 1) whose values are finite and lie in ``[0, 1]``. Otherwise an
    :class:`ImageError` says what is wrong and how to fix it (add a batch dimension,
    permute channels-last data, divide uint8 by 255, ...). ``name`` is used in the
    messages. The tensor is neither copied nor modified.
    """
    if not isinstance(x, torch.Tensor):
        if isinstance(x, np.ndarray):
            raise ImageTypeError(
                f"{name} must be a torch tensor of shape (B, 3, H, W); got a NumPy array of shape "
                f"{_shape(x)} — convert one image with vizlib.images.load_image(array)"
            )
        if isinstance(x, Image.Image):
            raise ImageTypeError(
                f"{name} must be a torch tensor of shape (B, 3, H, W); got a PIL image — "
                "convert it with vizlib.images.load_image(img)"
            )
        raise ImageTypeError(f"{name} must be a torch tensor of shape (B, 3, H, W); got {type(x).__name__}")

    try:
        check_shape(x, "B 3 H W", name, floating=False, hint=_shape_hint(x))
    except ValueError as e:
        raise ImageError(str(e)) from None
    if x.numel() == 0:
        raise ImageError(f"{name} is empty: shape {_shape(x)} (B, H and W must be at least 1)")

    if x.dtype == torch.uint8:
        raise ImageError(f"{name} is a uint8 tensor: convert with x.float() / 255")
    if x.dtype == torch.bool:
        raise ImageError(f"{name} is a bool tensor: convert with x.float()")
    if x.is_complex():
        raise ImageError(f"{name} is a complex tensor ({x.dtype}); images must be real floats in [0, 1]")
    if not x.is_floating_point():
        raise ImageError(
            f"{name} is an integer tensor ({x.dtype}); images must be floats in [0, 1]: "
            "convert with x.float() / 255 if the values are 0..255"
        )

    with torch.no_grad():
        v = x.detach()
        finite = torch.isfinite(v)
        if not bool(finite.all()):
            n_nan = int(torch.isnan(v).sum())
            n_inf = int(torch.isinf(v).sum())
            parts = []
            if n_nan:
                parts.append(f"NaN ({n_nan} values)")
            if n_inf:
                parts.append(f"Inf ({n_inf} values)")
            raise ImageError(f"{name} contains " + " and ".join(parts) + "; images must be finite values in [0, 1]")
        lo, hi = float(v.min()), float(v.max())
    if lo < 0.0 or hi > 1.0:
        if lo < 0.0:
            hint = (" — if these are ImageNet-normalised values, undo the normalisation first; "
                    "otherwise clip with x.clamp(0, 1)")
        elif 10.0 < hi <= 255.0:
            hint = " — this looks like 0..255 data: divide by 255"
        else:
            hint = " — clip with x.clamp(0, 1) or rescale"
        raise ImageError(f"{name} must have values in [0, 1]; got min {lo:.4g}, max {hi:.4g}{hint}")
    return x


def _one_image(x: torch.Tensor, fn: str) -> torch.Tensor:
    """Accept (3, H, W) or (1, 3, H, W); return a validated (1, 3, H, W) tensor."""
    if isinstance(x, torch.Tensor) and x.ndim == 3 and x.shape[0] == 3:
        x = x[None]
    check_images(x, name="image")
    if x.shape[0] != 1:
        raise ImageError(f"{fn} takes one image, (3, H, W) or (1, 3, H, W); got a batch {_shape(x)} — pick one with x[i]")
    return x


# --------------------------------------------------------------------------- tensor helpers


def resize(x: torch.Tensor, size: Size) -> torch.Tensor:
    """Resize a batch ``(B, 3, H, W)`` in [0, 1] with antialiasing; returns a new tensor.

    ``size``: None (unchanged copy), an int (the shorter side becomes ``size``, the longer
    one ``int(size * long / short)``), or ``(H, W)`` (exact). torchvision's ``resize``:
    bilinear, ``antialias=True``, computed in float32 for half-precision inputs, clamped to
    [0, 1]; the dtype and device are kept.
    """
    check_images(x)
    size = _parse_size(size)
    if size is None:
        return x.clone()
    xf = x if x.dtype in (torch.float32, torch.float64) else x.float()
    y = TF.resize(xf, [size] if isinstance(size, int) else list(size), antialias=True)
    if y is xf:  # already that size: torchvision hands its input back
        return x.clone()
    return y.clamp(0.0, 1.0).to(x.dtype)


def center_crop(x: torch.Tensor, size: int | Sequence[int]) -> torch.Tensor:
    """Crop the centre of a batch ``(B, 3, H, W)``; returns a new tensor.

    ``size``: an int (a ``size`` x ``size`` square) or ``(H, W)``. The offset is
    ``round((H - h) / 2)`` as in torchvision's ``CenterCrop``. A crop larger than the
    image is an error (resize first).
    """
    check_images(x)
    size = _parse_size(size)
    if size is None:
        raise ImageError("center_crop needs a size: an int (square) or (H, W)")
    h, w = (size, size) if isinstance(size, int) else size
    H, W = x.shape[2], x.shape[3]
    if h > H or w > W:  # torchvision would pad with zeros
        raise ImageError(f"cannot crop {h}x{w} (HxW) from an image of {H}x{W}; resize it first, e.g. resize(x, {max(h, w)})")
    return TF.center_crop(x, [h, w]).clone()


def stack_images(images: Sequence[torch.Tensor], size: Size = None) -> torch.Tensor:
    """Stack images into one batch ``(B, 3, H, W)``.

    Each item is ``(1, 3, H, W)``, ``(3, H, W)`` or a batch ``(b, 3, H, W)``.
    ``size``: None (all items must already have the same H and W), an int (resize the
    shorter side to ``size`` then centre-crop ``size`` x ``size``, the usual ImageNet
    preprocessing) or ``(H, W)`` (exact resize, aspect not kept).
    """
    if isinstance(images, torch.Tensor):
        images = [images]
    items = []
    for i, im in enumerate(images):
        if isinstance(im, torch.Tensor) and im.ndim == 3 and im.shape[0] == 3:
            im = im[None]
        check_images(im, name=f"images[{i}]")
        items.append(im)
    if not items:
        raise ImageError("stack_images needs at least one image")
    size = _parse_size(size)
    if size is None:
        sizes = {tuple(im.shape[2:]) for im in items}
        if len(sizes) > 1:
            listed = ", ".join(f"{h}x{w}" for h, w in sorted(sizes))
            raise ImageError(
                f"images have different sizes ({listed}, HxW); pass size=224 (resize + centre crop "
                "to a square) or size=(H, W) (exact resize)"
            )
    elif isinstance(size, int):
        items = [center_crop(resize(im, size), size) for im in items]
    else:
        items = [resize(im, size) for im in items]
    devices = {im.device for im in items}
    if len(devices) > 1:
        raise ImageError(f"images are on different devices ({sorted(map(str, devices))}); move them with .to(device)")
    return torch.cat(items, dim=0)


def batch_count(images, batch_size: int = 64) -> int | None:
    """How many batches :func:`iter_batches` will yield from ``images`` (``None``: a stream
    without a length)."""
    if isinstance(images, dict):
        images = images.get("images")
    if isinstance(images, torch.Tensor):
        return -(-len(images) // batch_size) if images.dim() == 4 else None
    return len(images) if hasattr(images, "__len__") else None


def iter_batches(images, batch_size: int = 64):
    """Yield ``(B, 3, H, W)`` batches from a tensor or from a stream of batches.

    ``images``: an ``(N, 3, H, W)`` tensor (split into ``batch_size`` pieces), a dict with an
    ``"images"`` entry, or an iterable of batches — tensors (a ``(3, H, W)`` item is a
    batch of one), ``(images, labels, …)`` tuples or ``{"images": …}`` dicts — consumed
    lazily, so a dataset larger than memory can be streamed.
    """
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ValueError(f"images must be (N, 3, H, W), got shape {tuple(images.shape)}")
        yield from images.split(batch_size)
        return
    if isinstance(images, dict):
        yield from iter_batches(images["images"], batch_size)
        return
    for batch in images:
        if isinstance(batch, dict):
            batch = batch["images"]
        elif isinstance(batch, (tuple, list)):
            batch = batch[0]
        if not isinstance(batch, torch.Tensor) or batch.dim() not in (3, 4):
            raise TypeError("a batch must be a (B, 3, H, W) tensor, an (images, labels) tuple or "
                            f"an {{'images': …}} dict; got {type(batch).__name__}")
        yield batch.unsqueeze(0) if batch.dim() == 3 else batch


def to_numpy(x: torch.Tensor) -> np.ndarray:
    """One image ``(3, H, W)`` or ``(1, 3, H, W)`` -> NumPy ``(H, W, 3)`` float32 in [0, 1] (a copy)."""
    x = _one_image(x, "to_numpy")
    return np.array(x[0].detach().to("cpu", torch.float32).permute(1, 2, 0).numpy(), copy=True)


def to_pil(x: torch.Tensor) -> Image.Image:
    """One image ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1] -> an 8-bit RGB PIL image, each
    value rounded to the nearest of 0..255 (torchvision's float conversion would truncate)."""
    x = _one_image(x, "to_pil")
    pixels = x[0].detach().to("cpu", torch.float32).mul(255.0).round_().to(torch.uint8)
    return TF.to_pil_image(pixels, mode="RGB")


def check_output_path(path: str | os.PathLike) -> Path:
    """``path`` (``~`` expanded) if an image can be saved there: its extension names a format
    Pillow can write, and it is not a folder. Otherwise an :class:`ImageError` saying what to
    give instead. :func:`save_image` checks with it; so does the ``vizlib`` command, before any work.
    """
    path = Path(path).expanduser()
    fmt = Image.registered_extensions().get(path.suffix.lower())
    if fmt is None or fmt not in Image.SAVE:
        raise ImageError(f"output {str(path)!r}: cannot tell an image format from "
                         f"{path.suffix or 'no extension'!r}; use the extension .png or .jpg")
    if path.is_dir():
        raise ImageError(f"output {str(path)!r} is a folder; give a file name such as {str(path / 'out.png')!r}")
    return path


def save_image(x: torch.Tensor, path: str | os.PathLike, **pil_kwargs) -> Path:
    """Save one image ``(3, H, W)`` or ``(1, 3, H, W)`` in [0, 1] as 8-bit RGB; returns the path.

    The format comes from the extension (``.png`` lossless, ``.jpg`` at quality 95
    unless ``quality=`` is given; see :func:`check_output_path`). Parent folders are created.
    """
    img = to_pil(x)
    path = check_output_path(path)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        pil_kwargs.setdefault("quality", 95)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **pil_kwargs)
    return path


# --------------------------------------------------------------------------- sniffing


_SIGNATURES = [
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
]


def _describe_bytes(head: bytes) -> str:
    """A short description of what some non-image bytes look like."""
    if not head:
        return "empty data"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "a WebP image that could not be decoded (truncated or corrupt?)"
    if head[4:8] == b"ftyp":
        brand = head[8:12].decode("ascii", "replace")
        if brand in ("heic", "heix", "hevc", "mif1", "msf1", "avif", "avis"):
            return (f"a HEIF/AVIF image (brand {brand!r}) that this Pillow cannot decode — "
                    "convert it to JPEG or PNG first")
        return f"an MP4/QuickTime-style container (brand {brand!r}), not a still image"
    for sig, fmt in _SIGNATURES:
        if head.startswith(sig):
            return f"a {fmt} file that could not be decoded — it is probably truncated or corrupt"
    if head.startswith(b"%PDF"):
        return "a PDF document"
    if head.startswith(b"PK\x03\x04"):
        return "a ZIP archive"
    if head.startswith(b"\x1f\x8b"):
        return "gzip-compressed data"
    if head.startswith(b"\x93NUMPY"):
        return "a NumPy .npy file — load it with np.load(...) and pass the array instead"
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith((b"<!doctype html", b"<html")) or any(t in text[:2048] for t in (b"<html", b"<head", b"<body")):
        return "an HTML page"
    if text.startswith(b"<svg") or (text.startswith(b"<?xml") and b"<svg" in text):
        return "an SVG (vector) image, which Pillow cannot read — convert it to PNG first"
    if text.startswith(b"<?xml"):
        return "an XML document"
    chunk = head[:2048]
    try:
        decoded = chunk.decode("utf-8")
    except UnicodeDecodeError as e:  # tolerate a multi-byte character cut at the end
        decoded = chunk[:e.start].decode("utf-8") if e.start >= len(chunk) - 3 else None
    if decoded is not None:
        printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in decoded)
        if decoded and printable >= 0.95 * len(decoded):
            snippet = " ".join(decoded.split())[:60]
            kind = "JSON text" if decoded.lstrip().startswith(("{", "[")) else "a text file"
            return f"{kind} starting with {snippet!r}"
    return f"unrecognised binary data (first bytes: {head[:16].hex(' ')})"


# --------------------------------------------------------------------------- PIL -> array


def _int_scale(im: Image.Image) -> float | None:
    """The value meaning "white" for an integer-mode ("I", "I;16*") PIL image, if known."""
    if im.mode.startswith("I;16"):
        bits = 16
    else:
        bits = None
    if getattr(im, "format", None) == "TIFF":
        try:
            b = im.tag_v2.get(258)  # BitsPerSample
            b = b[0] if isinstance(b, (tuple, list)) else b
            if b:
                bits = int(b)
        except Exception:  # noqa: BLE001 - metadata is advisory
            pass
    elif getattr(im, "format", None) == "PNG" and im.mode.startswith("I"):
        bits = 16  # PNG's only integer mode is 16-bit gray
    return None if bits is None else float(2 ** bits - 1)


def _readable(im: Image.Image) -> Image.Image:
    """``im`` in a mode whose pixels are read as they are (1, L, LA, RGB, RGBA, I, I;16*, F);
    PIL converts the others (palette, premultiplied alpha, CMYK, YCbCr, HSV, ...)."""
    mode = im.mode
    if mode in ("1", "L", "LA", "RGB", "RGBA", "I", "F") or mode.startswith("I;16"):
        return im
    if mode in ("La", "PA", "RGBa"):
        return im.convert({"La": "LA", "PA": "RGBA", "RGBa": "RGBA"}[mode])
    if mode == "P":
        has_alpha = "transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA")
        return im.convert("RGBA" if has_alpha else "RGB")
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as e:
        raise ImageError(f"unsupported image mode {mode!r} ({e}); convert the image to RGB first") from None


def _check_values(im: Image.Image, int_scale: float | None) -> None:
    """Refuse an integer ("I", "I;16*") or float ("F") image whose values are not in
    0..white (PIL's ``getextrema``: no copy of the pixels)."""
    if im.mode == "F":
        lo, hi = im.getextrema()
        if not (0.0 <= lo and hi <= 1.0):  # also catches a NaN extreme
            raise ImageError(
                "32-bit float image (mode 'F') must have finite values in [0, 1]; got "
                f"{lo:.4g}..{hi:.4g} — rescale it and pass the array"
            )
    elif im.mode == "I" or im.mode.startswith("I;16"):
        lo, hi = im.getextrema()
        scale = 65535.0 if int_scale is None else int_scale
        if lo < 0 or hi > scale:
            raise ImageError(
                f"integer image (mode {im.mode!r}) has values {lo}..{hi}, outside 0..{scale:.0f}; "
                "convert it yourself to an array in [0, 1] and pass that"
            )


def _pil_to_chw(im: Image.Image, int_scale: float | None) -> np.ndarray:
    """A loaded PIL image in a :func:`_readable` mode -> C-contiguous float32 (3, H, W) in
    [0, 1], alpha composited over white. Peak memory: one copy of the pixels plus the result."""
    mode = im.mode
    if mode == "1":
        return _raw_to_chw(np.asarray(im, dtype=bool), 1.0, alpha=False)
    if mode == "F":
        raw = np.asarray(im, dtype=np.float32)
        if not np.isfinite(raw).all():
            raise ImageError(
                "32-bit float image (mode 'F') must have finite values in [0, 1]; got "
                f"{int(np.isnan(raw).sum())} NaN and {int(np.isinf(raw).sum())} Inf values — "
                "replace them and pass the array"
            )
        return _raw_to_chw(raw, 1.0, alpha=False)
    if mode == "I" or mode.startswith("I;16"):
        return _raw_to_chw(np.asarray(im), 65535.0 if int_scale is None else int_scale, alpha=False)
    return _raw_to_chw(np.asarray(im, dtype=np.uint8), 255.0, alpha=mode in ("LA", "RGBA"))


def _raw_to_chw(raw: np.ndarray, scale: float, alpha: bool) -> np.ndarray:
    """(H, W) or (H, W, C) pixels (C = 1, 2 gray+alpha, 3, 4 RGBA) -> float32 (3, H, W).

    Divides by ``scale``, composites alpha over white, repeats gray to 3 channels.
    Always returns a new array (never a view of ``raw``).
    """
    if raw.ndim == 2:
        raw = raw[:, :, None]
    f = np.array(np.moveaxis(raw, 2, 0), dtype=np.float32, order="C", copy=True)  # (C, H, W)
    del raw
    if scale != 1.0:
        f /= np.float32(scale)
    if alpha:
        a = f[-1:]
        color = f[:-1]
        color *= a
        color += 1.0 - a
        np.clip(color, 0.0, 1.0, out=color)
        f = color
    if f.shape[0] == 1:
        f = np.repeat(f, 3, axis=0)
    return f


def _native_bytes(mode: str, w: int, h: int) -> int:
    """Bytes PIL needs to hold a decoded image of this mode (multi-band modes use 4 per pixel)."""
    if mode in ("1", "L", "P"):
        per = 1
    elif mode.startswith("I;16"):
        per = 2
    else:
        per = 4
    return per * w * h


def _reducible(im: Image.Image) -> Image.Image:
    """``im`` in a :func:`_readable` mode that ``Image.reduce`` takes (1-bit -> L, 16-bit -> I)."""
    im = _readable(im)
    if im.mode == "1":
        return im.convert("L")
    if im.mode.startswith("I;16"):
        return im.convert("I")
    return im


def _reduce(im: Image.Image, max_pixels: int) -> Image.Image:
    """``im`` shrunk by the smallest whole factor k that leaves at most ``max_pixels``.

    Each output pixel is the mean of a k x k block (``Image.reduce``, size
    ceil(W/k) x ceil(H/k); edge blocks average the pixels they have). ``Image.reduce`` takes
    only 8-bit, "I" and "F" modes, so the image is converted (:func:`_reducible`) one strip of
    rows at a time: converting it whole could take four times its decoded size (palette -> RGBA).
    """
    w, h = im.size
    k = max(2, math.ceil(math.sqrt(w * h / max_pixels)))
    while math.ceil(w / k) * math.ceil(h / k) > max_pixels:
        k += 1
    rows = k * max(1, _STRIP_BYTES // (4 * w * k))
    out = None
    for y0 in range(0, h, rows):
        strip = _reducible(im.crop((0, y0, w, min(h, y0 + rows)))).reduce(k)
        if out is None:
            out = Image.new(strip.mode, (math.ceil(w / k), math.ceil(h / k)))
        out.paste(strip, (0, y0 // k))
    return out


def _orientation(im: Image.Image) -> int:
    """EXIF (or XMP) orientation tag 1..8; 1 when absent or unreadable."""
    try:
        o = int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # noqa: BLE001 - broken metadata must not stop loading
        return 1
    return o if 1 <= o <= 8 else 1


def _upright(im: Image.Image, orientation: int) -> Image.Image:
    """``im`` turned upright by ``PIL.ImageOps.exif_transpose`` for the file's EXIF
    ``orientation`` (``im`` may be a converted or reduced copy that lost the tag, which is
    then given back to it). A new image, or ``im`` itself when it is upright already."""
    if orientation == 1:
        return im
    im.getexif().setdefault(ExifTags.Base.Orientation, orientation)
    return ImageOps.exif_transpose(im)


_warned_truncated = False


def _warn_if_truncated_allowed() -> None:
    global _warned_truncated
    if ImageFile.LOAD_TRUNCATED_IMAGES and not _warned_truncated:
        _warned_truncated = True
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES is switched on (by other code): truncated "
            "images will load with grey areas instead of raising an error",
            RuntimeWarning,
            stacklevel=3,
        )


def _too_big_message(what: str, w: int, h: int, max_pixels: int) -> str:
    return (
        f"{what} is {w}x{h} = {w * h / 1e6:.1f} megapixels, more than max_pixels={max_pixels:,} "
        f"(as a float32 tensor it would take {_fmt_bytes(12 * w * h)}). Pass downscale=True to "
        "shrink it while decoding (cheap for JPEG), or raise max_pixels if you really need full resolution"
    )


def _pil_to_tensor(im: Image.Image, what: str, max_pixels: int | None, downscale: bool,
                   may_draft: bool) -> torch.Tensor:
    """Decode a (possibly lazy) PIL image into an upright (1, 3, H, W) float32 tensor.

    ``may_draft``: the image was opened here and is not decoded yet (it may be drafted).
    """
    _warn_if_truncated_allowed()
    try:
        w, h = im.size
        if w < 1 or h < 1:
            raise ImageError(f"{what} has no pixels (size {w}x{h})")
        int_scale = _int_scale(im)
        shrink = max_pixels is not None and w * h > max_pixels
        if shrink:
            if not downscale:
                raise ImageError(_too_big_message(what, w, h, max_pixels))
            if may_draft:
                # JPEG: let libjpeg decode at 1/2, 1/4 or 1/8 scale (never the full image).
                f = math.sqrt(w * h / max_pixels)
                im.draft(im.mode, (math.ceil(w / f), math.ceil(h / f)))
            dw, dh = im.size
            need = _native_bytes(im.mode, dw, dh)
            if may_draft and dw * dh > max_pixels and need > DECODE_BUDGET_BYTES:  # not yet decoded
                fmt = getattr(im, "format", None) or "this"
                raise ImageError(
                    f"{what} is {w}x{h} = {w * h / 1e6:.1f} megapixels; {fmt} images cannot be reduced "
                    f"while decoding (only JPEG can), and decoding it whole would need {_fmt_bytes(need)} "
                    f"(more than DECODE_BUDGET_BYTES={_fmt_bytes(DECODE_BUDGET_BYTES)}). Shrink it "
                    "with an external tool first (e.g. ImageMagick: magick in.png -resize 10% out.png)"
                )
            shrink = dw * dh > max_pixels
        im.load()
        _check_values(im, int_scale)
        pixels = _reduce(im, max_pixels) if shrink else _readable(im)
        arr = _pil_to_chw(_upright(pixels, _orientation(im)), int_scale)
    except ImageError:
        raise
    except MemoryError:
        raise ImageError(f"{what}: out of memory while decoding; pass a smaller max_pixels with downscale=True") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error) as e:
        raise ImageError(
            f"{what}: the image data is truncated or corrupt and could not be decoded ({e}). "
            "The file may be incomplete (e.g. an interrupted download): download or save it again"
        ) from None
    return torch.from_numpy(arr)[None]


def _open_pil(fp, what: str, content_type: str | None = None) -> Image.Image:
    """``Image.open`` with clear errors; our own max_pixels check replaces PIL's bomb check."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                return Image.open(fp)
            except Image.DecompressionBombError:
                # Reopen with PIL's limit lifted just to read the header: load_image then
                # applies max_pixels itself (and can downscale while decoding).
                fp.seek(0)
                with _PIL_LIMIT_LOCK:
                    old = Image.MAX_IMAGE_PIXELS
                    Image.MAX_IMAGE_PIXELS = None
                    try:
                        return Image.open(fp)
                    finally:
                        Image.MAX_IMAGE_PIXELS = old
    except UnidentifiedImageError:
        fp.seek(0)
        head = fp.read(4096)
        desc = _describe_bytes(head)
        if what.startswith("URL") and (desc == "an HTML page" or "html" in (content_type or "").lower()):
            raise ImageError(
                f"{what} returned an HTML page (Content-Type: {content_type or 'not given'}), not an image. "
                "The link probably points to a web page that shows the image: open it in a browser, "
                "right-click the image, choose 'Copy image address' and use that URL"
            ) from None
        ct = f" (Content-Type: {content_type or 'not given'})" if what.startswith("URL") else ""
        raise ImageError(f"{what}{ct} is not an image that Pillow can read: it looks like {desc}") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error, zlib.error) as e:
        raise ImageError(f"{what}: cannot read the image header ({e}); the file is probably truncated or corrupt") from None


def _decode_stream(fp, what: str, max_pixels, downscale, content_type=None) -> torch.Tensor:
    im = _open_pil(fp, what, content_type)
    with im:
        return _pil_to_tensor(im, what, max_pixels, downscale, may_draft=True)


# --------------------------------------------------------------------------- sources


def _from_array(a: np.ndarray) -> torch.Tensor:
    shape = _shape(a)
    if a.ndim == 2:
        a = a[:, :, None]
    elif a.ndim == 3:
        c = a.shape[2]
        if c not in (1, 3, 4):
            if a.shape[0] in (1, 3, 4):
                raise ImageError(f"array of shape {shape} looks channels-first (C, H, W); use a.transpose(1, 2, 0)")
            raise ImageError(f"array must be (H, W), (H, W, 3) RGB or (H, W, 4) RGBA; got {shape} ({c} channels)")
    elif a.ndim == 4 and a.shape[0] == 1:
        raise ImageError(f"array of shape {shape} has a batch dimension; pass a[0] (one (H, W, C) image)")
    else:
        raise ImageError(f"array must be (H, W), (H, W, 3) RGB or (H, W, 4) RGBA; got {shape}")
    if a.shape[0] == 0 or a.shape[1] == 0:
        raise ImageError(f"array of shape {shape} has no pixels")

    if a.dtype == np.bool_:
        scale = 1.0
    elif a.dtype == np.uint8:
        scale = 255.0
    elif a.dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            n_nan, n_inf = int(np.isnan(a).sum()), int(np.isinf(a).sum())
            raise ImageError(f"float array contains NaN ({n_nan} values) / Inf ({n_inf} values); images must be finite in [0, 1]")
        lo, hi = float(a.min()), float(a.max())
        if lo < 0.0 or hi > 1.0:
            hint = " — this looks like 0..255 data: use a.astype(np.uint8) or a / 255" if 10.0 < hi <= 255.0 and lo >= 0 else \
                " — rescale it (e.g. (a - a.min()) / (a.max() - a.min())) or clip with np.clip(a, 0, 1)"
            raise ImageError(f"float array must have values in [0, 1]; got min {lo:.4g}, max {hi:.4g}{hint}")
        scale = 1.0
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = int(a.min()), int(a.max())
        raise ImageError(
            f"{a.dtype} array (values {lo}..{hi}) is ambiguous: use a.astype(np.uint8) for 0..255 data, "
            "a.astype(np.uint16) for 0..65535 data, or a float array in [0, 1]"
        )
    else:
        raise ImageError(f"array dtype {a.dtype} is not an image type; use uint8, uint16, bool or float in [0, 1]")
    return torch.from_numpy(_raw_to_chw(a, scale, alpha=a.shape[2] == 4))[None]


def _from_tensor(t: torch.Tensor) -> torch.Tensor:
    x = t.detach()
    if x.ndim == 3:
        if x.shape[0] != 3 and x.shape[-1] == 3:
            raise ImageError(f"tensor of shape {_shape(x)} looks channels-last (H, W, 3); use x.permute(2, 0, 1)")
        if x.shape[0] == 3:
            x = x[None]
    if x.ndim != 4:
        raise ImageError(f"tensor image must have shape (3, H, W) or (1, 3, H, W); got {_shape(x)}")
    check_images(x, name="image")
    if x.shape[0] != 1:
        raise ImageError(f"load_image loads one image; got a batch {_shape(x)} — pick one with x[i:i+1]")
    return x.to(device="cpu", dtype=torch.float32, copy=True)


def _is_url(s: str) -> bool:
    return s.strip().lower().startswith(("http://", "https://"))


def _from_url(url: str, max_pixels, downscale, timeout) -> torch.Tensor:
    url = url.strip()
    if config.offline():
        raise ImageFetchError(
            f"not downloading {url}: VIZLIB_OFFLINE is set. Use a local file or a bundled sample, "
            "e.g. vizlib.samples.sample_image('astronaut') (list_sample_images() lists them)"
        )
    try:
        body, content_type = fetch_bytes(url, timeout=timeout)
    except FetchError as e:
        raise ImageFetchError(f"could not download the image: {e}") from None
    what = f"URL {url}"
    if not body:
        raise ImageError(f"{what} returned an empty response (Content-Type: {content_type or 'not given'})")
    return _decode_stream(io.BytesIO(body), what, max_pixels, downscale, content_type)


def _from_path(s: str, max_pixels, downscale) -> torch.Tensor:
    if s.lstrip().lower().startswith("data:"):
        raise ImageError("data: URIs are not supported; decode the base64 part and pass the bytes")
    p = Path(s).expanduser()
    try:
        exists = p.exists()
    except OSError as e:  # e.g. a name too long for the file system
        raise ImageNotFoundError(f"not a usable file path ({e.strerror}): {s[:80]!r}") from None
    if not exists:
        msg = f"image file not found: '{p}'"
        if not p.is_absolute():
            msg += f" (relative paths are resolved from the current folder, {os.getcwd()})"
        if "/" not in s and "\\" not in s and not p.suffix:
            msg += (f"; for a bundled sample use vizlib.samples.sample_image({s!r}) "
                    "(vizlib.samples.list_sample_images() lists them)")
        raise ImageNotFoundError(msg)
    if p.is_dir():
        raise ImageError(f"'{p}' is a folder, not an image file")
    try:
        n = p.stat().st_size
        if n == 0:
            raise ImageError(f"'{p}' is an empty file (0 bytes); was the download or save interrupted?")
        with open(p, "rb") as fp:
            return _decode_stream(fp, f"'{p}'", max_pixels, downscale)
    except PermissionError:
        raise ImageError(f"no permission to read '{p}'") from None


def load_image(source: Any, size: Size = None, *, max_pixels: int | None = 50_000_000,
               downscale: bool = False, timeout: float = 10.0) -> torch.Tensor:
    """Load one image as a ``(1, 3, H, W)`` float32 CPU tensor with values in [0, 1].

    ``source`` may be:

    - a path (``str`` or ``pathlib.Path``) or an ``http(s)://`` URL (downloaded with
      :func:`vizlib.fetch.fetch_bytes`, refused when ``VIZLIB_OFFLINE`` is set);
    - raw ``bytes`` of an image file, or a binary file object;
    - a ``PIL.Image.Image``;
    - a NumPy array ``(H, W)`` gray, ``(H, W, 3)`` RGB or ``(H, W, 4)`` RGBA of dtype
      uint8 (/255), uint16 (/65535), bool, or float already in [0, 1];
    - a tensor ``(3, H, W)`` or ``(1, 3, H, W)``, floating, in [0, 1] (validated and
      copied; the caller's tensor is never modified).

    Files are rotated upright by their EXIF orientation; transparency (RGBA, LA,
    palette with transparency) is composited over white; 1-bit, gray, 16-bit (scaled by
    the true bit depth), palette, CMYK, YCbCr... become RGB.

    ``size``: None (keep), an int (the shorter side becomes ``size``, aspect kept) or
    ``(H, W)`` (exact); antialiased bilinear, see :func:`resize`.

    ``max_pixels`` guards decoded files (paths, URLs, bytes, PIL images): a larger image
    is refused, unless ``downscale=True``, which shrinks it to at most ``max_pixels``
    while decoding — JPEGs are decoded directly at 1/2, 1/4 or 1/8 scale, other formats
    whole in their compact native form (refused beyond ``DECODE_BUDGET_BYTES``) then
    block-averaged strip by strip. ``max_pixels=None`` disables the guard. ``timeout``
    is for URLs, in seconds.

    Raises :class:`ImageError` (a ``ValueError``), or its subclasses
    :class:`ImageNotFoundError`, :class:`ImageFetchError`, :class:`ImageTypeError`.
    """
    size = _parse_size(size)
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1):
        raise ImageError(f"max_pixels must be a positive int or None; got {max_pixels!r}")

    if isinstance(source, torch.Tensor):
        x = _from_tensor(source)
    elif isinstance(source, np.ndarray):
        x = _from_array(source)
    elif isinstance(source, Image.Image):
        x = _pil_to_tensor(source, "the given PIL image", max_pixels, downscale, may_draft=False)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if not data:
            raise ImageError("the given bytes are empty (0 bytes)")
        x = _decode_stream(io.BytesIO(data), "the given bytes", max_pixels, downscale)
    elif isinstance(source, (str, os.PathLike)):
        s = os.fspath(source)
        if isinstance(s, bytes):
            s = os.fsdecode(s)
        if not s.strip():
            raise ImageError("the image path is an empty string")
        if _is_url(s):
            x = _from_url(s, max_pixels, downscale, timeout)
        elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", s.strip()) and not os.path.exists(s):
            raise ImageError(f"unsupported URL scheme in {s!r}: only http:// and https:// URLs can be loaded")
        else:
            x = _from_path(s, max_pixels, downscale)
    elif hasattr(source, "read"):
        data = source.read()
        if isinstance(data, str):
            raise ImageTypeError("the file object is open in text mode; open it with open(path, 'rb')")
        if not data:
            raise ImageError("the given file object is empty (0 bytes read)")
        x = _decode_stream(io.BytesIO(data), "the given file object", max_pixels, downscale)
    else:
        raise ImageTypeError(
            f"cannot load an image from {type(source).__name__}; pass a path, an http(s) URL, bytes, "
            "a PIL image, a NumPy array or a torch tensor"
        )
    if size is not None:
        x = resize(x, size)
    return x
