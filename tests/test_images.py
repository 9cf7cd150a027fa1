"""Tests for vizlib.images: loading every kind of source, errors, samples, helpers.

All inputs are generated in tmp_path; URLs are served by a local http.server thread.
"""
from __future__ import annotations

import io
import json
import os
import socket
import struct
import subprocess
import sys
import textwrap
import zlib
from http.server import SimpleHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile, ImageOps

from vizlib import images as I
from vizlib.fetch import FetchError
from conftest import serve_http

ROOT = Path(__file__).resolve().parents[1]


def _px(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) tensor -> (H, W, 3) float64 array for exact comparisons."""
    assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[:2] == (1, 3)
    return x[0].permute(1, 2, 0).double().numpy()


def _close(a, b, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=0, atol=atol)


def _save(tmp_path, name, im, **kw) -> Path:
    p = tmp_path / name
    im.save(p, **kw)
    return p


# ----------------------------------------------------------------------------- file modes


def test_rgba_png_composited_over_white_exact(tmp_path):
    a = np.array([[[255, 0, 0, 255], [255, 0, 0, 128]],
                  [[0, 0, 255, 0], [0, 255, 0, 51]]], dtype=np.uint8)
    x = I.load_image(_save(tmp_path, "rgba.png", Image.fromarray(a, "RGBA")))
    alpha = a[..., 3:] / 255.0
    expected = a[..., :3] / 255.0 * alpha + (1 - alpha)
    _close(_px(x), expected)
    _close(_px(x)[1, 0], [1, 1, 1])                      # fully transparent -> white
    _close(_px(x)[0, 1], [1, 1 - 128 / 255, 1 - 128 / 255])  # half red over white


def test_la_png_composited_over_white(tmp_path):
    a = np.array([[[0, 255], [0, 0], [100, 102]]], dtype=np.uint8)
    x = I.load_image(_save(tmp_path, "la.png", Image.fromarray(a, "LA")))
    g = a[..., 0] / 255 * (a[..., 1] / 255) + (1 - a[..., 1] / 255)
    _close(_px(x), np.repeat(g[..., None], 3, axis=2))
    _close(_px(x)[0, 1], [1, 1, 1])


def test_palette_png_with_transparency(tmp_path):
    p = Image.new("P", (3, 1))
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    p.putdata([0, 1, 2])
    # tRNS: index 0 opaque, index 1 fully transparent, index 2 half transparent
    path = _save(tmp_path, "pal.png", p, transparency=bytes([255, 0, 128]))
    with Image.open(path) as im:
        assert im.mode == "P"
    x = _px(I.load_image(path))
    _close(x[0, 0], [1, 0, 0])
    _close(x[0, 1], [1, 1, 1])
    _close(x[0, 2], [1 - 128 / 255, 1 - 128 / 255, 1])


def test_palette_gif_single_transparent_index(tmp_path):
    p = Image.new("P", (2, 1))
    p.putpalette([10, 20, 30, 200, 100, 50] + [0] * (256 * 3 - 6))
    p.putdata([0, 1])
    x = _px(I.load_image(_save(tmp_path, "t.gif", p, transparency=0)))
    _close(x[0, 0], [1, 1, 1])
    _close(x[0, 1], np.array([200, 100, 50]) / 255)


def test_16bit_gray_png_scaled_by_true_bit_depth(tmp_path):
    a = np.array([[65535, 32768, 0, 257]], dtype=np.uint16)
    path = _save(tmp_path, "g16.png", Image.fromarray(a))
    x = _px(I.load_image(path))
    _close(x[0, :, 0], [1.0, 32768 / 65535, 0.0, 1 / 255], atol=1e-7)
    assert x[0, 1, 0] < 0.51  # not clipped at 255 (which would give 1.0)
    _close(x[..., 0], x[..., 2], atol=0)


def test_tiff_scaled_by_its_bits_per_sample(tmp_path):
    a = np.array([[4095, 2048, 0]], dtype=np.uint16)
    path = _save(tmp_path, "g16.tif", Image.fromarray(a))
    _close(_px(I.load_image(path))[0, :, 0], [4095 / 65535, 2048 / 65535, 0], atol=1e-7)
    with Image.open(path) as im:
        im.tag_v2[258] = 12  # as a 12-bit camera/microscope TIFF declares itself
        _close(_px(I.load_image(im))[0, :, 0], [1.0, 2048 / 4095, 0], atol=1e-7)


def test_gray_L_and_1bit(tmp_path):
    g = Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8), "L")
    x = _px(I.load_image(_save(tmp_path, "l.png", g)))
    _close(x, np.repeat(np.array([[0, 128, 255]])[..., None] / 255, 3, axis=2))
    b = Image.new("1", (3, 2), 0)
    b.putpixel((1, 0), 1)
    b.putpixel((2, 1), 1)
    y = _px(I.load_image(_save(tmp_path, "b.png", b)))
    expected = np.array([[0, 1, 0], [0, 0, 1]], dtype=float)
    _close(y, np.repeat(expected[..., None], 3, axis=2), atol=0)


def test_cmyk_tiff_exact_and_jpeg_close(tmp_path):
    im = Image.new("CMYK", (3, 1))
    im.putdata([(0, 255, 255, 0), (0, 0, 0, 255), (0, 0, 0, 0)])
    expected = [[1, 0, 0], [0, 0, 0], [1, 1, 1]]
    _close(_px(I.load_image(_save(tmp_path, "c.tif", im)))[0], expected, atol=1e-7)
    big = im.resize((48, 16), Image.Resampling.NEAREST)
    path = _save(tmp_path, "c.jpg", big, quality=100)
    with Image.open(path) as im:
        assert im.mode == "CMYK"
    x = _px(I.load_image(path))
    _close(x[8, 8], [1, 0, 0], atol=3 / 255)
    _close(x[8, 24], [0, 0, 0], atol=3 / 255)
    _close(x[8, 40], [1, 1, 1], atol=3 / 255)


def test_ycbcr_and_other_modes_become_rgb():
    rgb = Image.fromarray(np.array([[[200, 30, 40], [0, 0, 0]]], dtype=np.uint8))
    x = _px(I.load_image(rgb.convert("YCbCr")))
    _close(x, np.asarray(rgb.convert("YCbCr").convert("RGB")) / 255)
    hsv = _px(I.load_image(rgb.convert("HSV")))
    _close(hsv, np.asarray(rgb.convert("HSV").convert("RGB")) / 255)


def _marked_jpeg(tmp_path, orientation: int) -> Path:
    a = np.full((20, 40, 3), 255, dtype=np.uint8)  # stored: 20 rows x 40 columns
    a[:8, :8] = (255, 0, 0)  # red block at the stored top-left corner
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(tmp_path, f"o{orientation}.jpg", Image.fromarray(a), quality=95, exif=exif)


@pytest.mark.parametrize("orientation, red_at, white_at", [
    (6, (3, 16), (3, 3)),    # rotate 90 clockwise: top-left -> top-right
    (8, (36, 3), (3, 3)),    # rotate 90 counter-clockwise: top-left -> bottom-left
])
def test_exif_orientation_jpeg(tmp_path, orientation, red_at, white_at):
    x = _px(I.load_image(_marked_jpeg(tmp_path, orientation)))
    assert x.shape == (40, 20, 3)  # H and W swapped
    _close(x[red_at], [1, 0, 0], atol=0.04)
    _close(x[white_at], [1, 1, 1], atol=0.04)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pil_exactly(tmp_path, orientation):
    a = np.random.default_rng(orientation).integers(0, 256, (3, 5, 3), dtype=np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path, "o.png", Image.fromarray(a), exif=exif)
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im).convert("RGB")) / 255
    _close(_px(I.load_image(path)), expected, atol=1e-7)


def _one_of_each_mode(mode: str, h: int, w: int, seed: int) -> Image.Image:
    """A random h x w image of a PIL mode that needs more than uint8 RGB to read."""
    rng = np.random.default_rng(seed)
    u8 = rng.integers(0, 256, (h, w, 4), dtype=np.uint8)
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "F":
        return Image.fromarray(rng.random((h, w), dtype=np.float32), "F")
    if mode == "P":
        p = Image.fromarray(u8[..., :3]).convert("P")
        p.info["transparency"] = int(np.asarray(p)[0, 0])
        return p
    if mode == "1":
        return Image.fromarray(u8[..., 0] > 127)
    return Image.fromarray(u8 if mode == "RGBA" else u8[..., :2].copy(), mode)


# 16-bit as PNG: Pillow 13 turns an uncompressed 8/16-bit TIFF of orientation 5-8 wrongly while
# decoding it (its own exif_transpose on a buffer of the swapped size), before vizlib sees it.
_EXT = {"I;16": "png", "F": "tif", "P": "png", "1": "png", "RGBA": "png", "LA": "png"}


@pytest.mark.parametrize("mode", list(_EXT))
@pytest.mark.parametrize("orientation", [2, 5, 6, 7])
def test_exif_orientation_matches_pil_for_16bit_float_alpha_palette(tmp_path, mode, orientation):
    """Every mode turns as PIL.ImageOps.exif_transpose turns it, also when downscaled."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = _save(tmp_path, f"o.{_EXT[mode]}", _one_of_each_mode(mode, 12, 20, orientation), exif=exif)
    with Image.open(path) as im:
        upright = ImageOps.exif_transpose(im)
    assert upright.mode == mode  # the reference is read by the same code, only turned by PIL
    x = I.load_image(path)
    assert x.shape[2:] == ((20, 12) if orientation >= 5 else (12, 20))
    _close(_px(x), _px(I.load_image(upright)), atol=0)
    small = I.load_image(path, max_pixels=60, downscale=True)  # factor 2; 12 and 20 are even
    _close(_px(small), _px(I.load_image(upright, max_pixels=60, downscale=True)), atol=0)


def test_broken_exif_metadata_loads_as_stored(tmp_path):
    a = np.random.default_rng(0).integers(0, 256, (2, 3, 3), dtype=np.uint8)
    path = _save(tmp_path, "broken.png", Image.fromarray(a), exif=b"Exif\x00\x00garbage!!")
    with Image.open(path) as im, pytest.raises(SyntaxError):
        im.getexif()  # PIL itself cannot read it ...
    _close(_px(I.load_image(path)), a / 255, atol=1e-7)  # ... but the pixels load, unturned


# ----------------------------------------------------------------------------- arrays / tensors / PIL


def test_numpy_dtypes_exact():
    u8 = np.array([[0, 51, 255]], dtype=np.uint8)
    _close(_px(I.load_image(u8))[..., 1], u8 / 255)
    u16 = np.zeros((1, 2, 3), dtype=np.uint16)
    u16[0, 0] = (65535, 32768, 0)
    _close(_px(I.load_image(u16))[0, 0], [1, 32768 / 65535, 0], atol=1e-7)
    b = np.array([[True, False]])
    _close(_px(I.load_image(b))[..., 0], [[1, 0]], atol=0)
    for dt in (np.float16, np.float32, np.float64):
        f = np.array([[[0.25, 0.5, 1.0]]], dtype=dt)
        _close(_px(I.load_image(f))[0, 0], [0.25, 0.5, 1.0], atol=0)
    one = np.array([[[7]]], dtype=np.uint8)  # (H, W, 1)
    _close(_px(I.load_image(one))[0, 0], [7 / 255] * 3)
    rgba = np.array([[[255, 0, 0, 0], [0, 0, 255, 255]]], dtype=np.uint8)
    _close(_px(I.load_image(rgba))[0], [[1, 1, 1], [0, 0, 1]])


def test_numpy_caller_array_untouched():
    a = np.random.default_rng(0).random((4, 5, 3)).astype(np.float32)
    before = a.copy()
    x = I.load_image(a)
    x.mul_(0)
    np.testing.assert_array_equal(a, before)
    assert x.shape == (1, 3, 4, 5)


@pytest.mark.parametrize("arr, words", [
    (np.zeros((3, 8, 9), np.uint8), "channels-first"),
    (np.zeros((8, 9, 2), np.uint8), "(H, W, 3) RGB"),
    (np.zeros((1, 8, 9, 3), np.uint8), "a[0]"),
    (np.zeros((2, 8, 9, 3), np.uint8), "got (2, 8, 9, 3)"),
    (np.zeros((8,), np.uint8), "got (8)"),
    (np.zeros((0, 9, 3), np.uint8), "no pixels"),
    (np.array([[0, 300]], np.int64), "int64 array (values 0..300)"),
    (np.array([[0.0, 200.0]]), "0..255 data"),
    (np.array([[0.0, 2.0]]), "np.clip(a, 0, 1)"),
    (np.array([[-0.5, 0.5]]), "values in [0, 1]"),
    (np.array([[np.nan, 0.5]]), "NaN"),
    (np.array([[np.inf, 0.5]], np.float32), "Inf"),
    (np.array([["a"]]), "dtype"),
])
def test_numpy_bad_inputs(arr, words):
    with pytest.raises(I.ImageError, match=None) as e:
        I.load_image(arr)
    assert words in str(e.value)


def test_tensor_inputs_validated_and_copied():
    t = torch.rand(3, 4, 5)
    before = t.clone()
    x = I.load_image(t)
    assert x.shape == (1, 3, 4, 5) and x.dtype == torch.float32
    assert x.data_ptr() != t.data_ptr()
    x.fill_(0)
    assert torch.equal(t, before)
    y = I.load_image(before[None].double())
    assert y.dtype == torch.float32 and torch.allclose(y, before[None])
    g = torch.rand(1, 3, 2, 2, requires_grad=True)
    assert not I.load_image(g).requires_grad
    with pytest.raises(I.ImageError, match=r"x.float\(\) / 255"):
        I.load_image((t * 255).to(torch.uint8))
    with pytest.raises(I.ImageError, match="values in \\[0, 1\\]"):
        I.load_image(t * 3)
    with pytest.raises(I.ImageError, match="one image"):
        I.load_image(torch.rand(2, 3, 4, 4))
    with pytest.raises(I.ImageError, match="channels-last"):
        I.load_image(torch.rand(4, 5, 3))


def test_pil_input_not_modified():
    im = Image.fromarray(np.array([[[255, 0, 0, 0]]], dtype=np.uint8), "RGBA")
    x = I.load_image(im)
    _close(_px(x)[0, 0], [1, 1, 1])
    assert im.mode == "RGBA" and im.getpixel((0, 0)) == (255, 0, 0, 0)


def test_bytes_bytearray_and_file_object(tmp_path):
    a = np.array([[[10, 20, 30], [40, 50, 60]]], dtype=np.uint8)
    path = _save(tmp_path, "a.png", Image.fromarray(a))
    data = path.read_bytes()
    for src in (data, bytearray(data), memoryview(data), io.BytesIO(data), str(path), path):
        _close(_px(I.load_image(src)), a / 255, atol=1e-7)
    with open(path, "rb") as f:
        _close(_px(I.load_image(f)), a / 255, atol=1e-7)


# ----------------------------------------------------------------------------- size


def test_size_semantics_and_torchvision_agreement():
    from torchvision.transforms import functional as TF

    x = torch.rand(1, 3, 20, 40)
    assert I.load_image(x, size=10).shape == (1, 3, 10, 20)        # shorter side
    assert I.load_image(torch.rand(1, 3, 30, 7), size=10).shape == (1, 3, 42, 10)  # int(10*30/7)=42
    assert I.load_image(x, size=(7, 9)).shape == (1, 3, 7, 9)
    assert I.load_image(x, size=[7, 9]).shape == (1, 3, 7, 9)
    for size in (10, (7, 9), 33):
        ref = TF.resize(x, size if isinstance(size, tuple) else [size], antialias=True).clamp(0, 1)
        torch.testing.assert_close(I.resize(x, size), ref, rtol=0, atol=1e-6)
    flat = torch.full((1, 3, 50, 60), 0.3)
    torch.testing.assert_close(I.resize(flat, 17), torch.full((1, 3, 17, 20), 0.3), rtol=0, atol=1e-6)
    assert torch.equal(I.resize(x, None), x) and I.resize(x, None).data_ptr() != x.data_ptr()
    for bad in (0, -3, 2.5, (1, 2, 3), True, (0, 4), "224"):
        with pytest.raises(I.ImageError, match="size"):
            I.load_image(x, size=bad)


def test_resize_keeps_dtype_and_clamps():
    x = torch.zeros(2, 3, 8, 8, dtype=torch.float64)
    x[:, :, ::2, ::2] = 1
    y = I.resize(x, (3, 5))
    assert y.dtype == torch.float64 and y.shape == (2, 3, 3, 5)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_center_crop_matches_torchvision():
    from torchvision.transforms import functional as TF

    x = torch.rand(2, 3, 11, 16)
    for size in (5, (4, 7), (11, 16), (10, 3)):
        torch.testing.assert_close(I.center_crop(x, size), TF.center_crop(x, list(size) if isinstance(size, tuple) else size))
    c = I.center_crop(x, 4)
    c.zero_()
    assert float(x.min()) >= 0 and x.abs().sum() > 0 and not torch.equal(x[:, :, 3:7, 6:10], c)
    with pytest.raises(I.ImageError, match="resize it first"):
        I.center_crop(x, 12)


def test_stack_images():
    a, b = torch.rand(1, 3, 20, 30), torch.rand(3, 40, 20)
    s = I.stack_images([a, b], 16)
    assert s.shape == (2, 3, 16, 16)
    torch.testing.assert_close(s[:1], I.center_crop(I.resize(a, 16), 16))
    assert I.stack_images([a, b], (5, 6)).shape == (2, 3, 5, 6)
    assert torch.equal(I.stack_images([a, a]), torch.cat([a, a]))
    with pytest.raises(I.ImageError, match="different sizes"):
        I.stack_images([a, b])
    with pytest.raises(I.ImageError, match="at least one"):
        I.stack_images([])
    with pytest.raises(I.ImageError, match=r"images\[1\]"):
        I.stack_images([a, torch.rand(1, 1, 4, 4)])


# ----------------------------------------------------------------------------- check_images


@pytest.mark.parametrize("x, words", [
    (torch.rand(3, 224, 224), "got (3, 224, 224) — add a batch dimension with x[None]"),
    (torch.rand(224, 224, 3), "x.permute(2, 0, 1)[None]"),
    (torch.rand(2, 224, 224, 3), "x.permute(0, 3, 1, 2)"),
    (torch.rand(2, 1, 8, 8), "x.expand(-1, 3, -1, -1)"),
    (torch.rand(2, 4, 8, 8), "RGBA"),
    (torch.rand(8, 8), "grayscale"),
    (torch.rand(0, 3, 8, 8), "empty"),
    (torch.zeros(1, 3, 2, 2, dtype=torch.uint8), "uint8 tensor: convert with x.float() / 255"),
    (torch.zeros(1, 3, 2, 2, dtype=torch.bool), "x.float()"),
    (torch.zeros(1, 3, 2, 2, dtype=torch.int64), "integer tensor"),
    (torch.tensor([float("nan"), 0.5, 0.5]).view(1, 3, 1, 1), "contains NaN (1 values)"),
    (torch.tensor([float("inf"), 0.5, 0.5]).view(1, 3, 1, 1), "Inf"),
    (torch.full((1, 3, 2, 2), -1.5), "ImageNet-normalised"),
    (torch.full((1, 3, 2, 2), 200.0), "divide by 255"),
    (np.zeros((1, 3, 2, 2)), "NumPy array"),
    ([1, 2, 3], "got list"),
])
def test_check_images_messages(x, words):
    with pytest.raises(I.ImageError) as e:
        I.check_images(x)
    assert words in str(e.value)
    assert str(e.value).startswith("images ")


def test_check_images_returns_same_object_and_names():
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    assert I.check_images(x) is x
    assert I.check_images(x.half()) is not None
    with pytest.raises(I.ImageError, match="^batch must have shape"):
        I.check_images(torch.rand(3, 4, 4), name="batch")
    assert issubclass(I.ImageError, ValueError)


# ----------------------------------------------------------------------------- conversions


def test_to_numpy_to_pil_save_roundtrip(tmp_path):
    vals = torch.randint(0, 256, (1, 3, 5, 7)).float() / 255
    a = I.to_numpy(vals)
    assert a.shape == (5, 7, 3) and a.dtype == np.float32
    np.testing.assert_array_equal(a, vals[0].permute(1, 2, 0).numpy())
    a[:] = 0
    assert vals.sum() > 0  # to_numpy returns a copy
    assert I.to_numpy(vals[0]).shape == (5, 7, 3)
    p = I.to_pil(vals)
    assert p.mode == "RGB" and p.size == (7, 5)
    path = I.save_image(vals, tmp_path / "sub" / "out.png")
    assert path.exists()
    torch.testing.assert_close(I.load_image(path), vals, rtol=0, atol=0)
    assert I.save_image(vals, tmp_path / "o.jpg").stat().st_size > 0
    with pytest.raises(I.ImageError, match="one image"):
        I.to_numpy(torch.rand(2, 3, 4, 4))
    with pytest.raises(I.ImageError, match="extension"):
        I.save_image(vals, tmp_path / "out.nope")


def test_to_pil_rounds_to_nearest():
    """Each value becomes the nearest of 0..255 (torchvision's own float conversion truncates)."""
    x = torch.linspace(0, 1, 3 * 16 * 16).view(1, 3, 16, 16)
    expected = np.rint(x[0].permute(1, 2, 0).numpy() * np.float32(255)).astype(np.uint8)
    np.testing.assert_array_equal(np.asarray(I.to_pil(x)), expected)
    np.testing.assert_array_equal(np.asarray(I.to_pil(x.double()[0])), expected)
    assert np.asarray(I.to_pil(torch.full((1, 3, 1, 1), 0.999)))[0, 0, 0] == 255
    with pytest.raises(I.ImageError, match="to_pil takes one image"):
        I.to_pil(torch.rand(2, 3, 4, 4))


def test_check_output_path(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert I.check_output_path("~/a/b.PNG") == tmp_path / "a" / "b.PNG"
    for name, words in (("x.nope", "from '.nope'"), ("x", "from 'no extension'"),
                        ("x.psd", "from '.psd'")):  # Pillow reads PSD but cannot write it
        with pytest.raises(I.ImageError, match=f"output '{tmp_path / name}': cannot tell an image format {words}"):
            I.check_output_path(tmp_path / name)
    (tmp_path / "d.png").mkdir()
    with pytest.raises(I.ImageError, match=r"is a folder; give a file name such as '.*d\.png/out\.png'"):
        I.save_image(torch.rand(1, 3, 2, 2), tmp_path / "d.png")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_resize_of_half_precision_is_the_float32_resize(dtype):
    x = torch.rand(2, 3, 19, 23).to(dtype)
    for size in (7, (30, 11)):
        y = I.resize(x, size)
        assert y.dtype == dtype
        torch.testing.assert_close(y, I.resize(x.float(), size).to(dtype), rtol=0, atol=0)
    assert torch.equal(I.resize(x, 19), x) and I.resize(x, 19).data_ptr() != x.data_ptr()


# ----------------------------------------------------------------------------- file errors


def test_missing_file(tmp_path):
    with pytest.raises(I.ImageNotFoundError) as e:
        I.load_image(tmp_path / "nope.jpg")
    assert "not found" in str(e.value) and "nope.jpg" in str(e.value)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, ValueError)


def test_sample_name_given_as_path_hints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(I.ImageNotFoundError, match=r"sample_image\('astronaut'\)"):
        I.load_image("astronaut")


def test_folder_empty_text_html(tmp_path):
    with pytest.raises(I.ImageError, match="folder"):
        I.load_image(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(I.ImageError, match=r"empty file \(0 bytes\)"):
        I.load_image(tmp_path / "empty.jpg")
    with pytest.raises(I.ImageError, match="empty"):
        I.load_image(b"")
    (tmp_path / "notes.png").write_text("hello world, these are notes\n")
    with pytest.raises(I.ImageError, match="a text file starting with 'hello world, these are notes'"):
        I.load_image(tmp_path / "notes.png")
    (tmp_path / "page.jpg").write_text("<!DOCTYPE html>\n<html><head><title>x</title></head></html>")
    with pytest.raises(I.ImageError, match="looks like an HTML page"):
        I.load_image(tmp_path / "page.jpg")
    np.save(tmp_path / "a.npy", np.zeros(3))
    with pytest.raises(I.ImageError, match="np.load"):
        I.load_image(tmp_path / "a.npy")


def test_truncated_jpeg_and_png_raise(tmp_path):
    rng = np.random.default_rng(0)
    noise = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for ext in ("jpg", "png"):
        buf = io.BytesIO()
        noise.save(buf, "JPEG" if ext == "jpg" else "PNG")
        data = buf.getvalue()
        path = tmp_path / f"cut.{ext}"
        path.write_bytes(data[: len(data) * 2 // 3])
        with pytest.raises(I.ImageError, match="truncated or corrupt"):
            I.load_image(path)
        with pytest.raises(I.ImageError, match="truncated or corrupt"):
            I.load_image(data[:40])  # header cut
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_warns_when_truncated_loading_was_switched_on_elsewhere(monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    monkeypatch.setattr(I, "_warned_truncated", False)
    with pytest.warns(RuntimeWarning, match="LOAD_TRUNCATED_IMAGES"):
        I.load_image(Image.new("RGB", (2, 2)))


def test_bad_source_types():
    with pytest.raises(I.ImageTypeError, match="cannot load an image from int") as e:
        I.load_image(42)
    assert isinstance(e.value, TypeError)
    with pytest.raises(I.ImageError, match="only http:// and https://"):
        I.load_image("ftp://example.com/a.png")
    with pytest.raises(I.ImageError, match="max_pixels"):
        I.load_image(np.zeros((2, 2), np.uint8), max_pixels=0)
    with pytest.raises(I.ImageError, match="data: URIs"):
        I.load_image("data:image/png;base64,iVBORw0KGgo=")
    with pytest.raises(I.ImageNotFoundError):
        I.load_image("x" * 5000)


# ----------------------------------------------------------------------------- too many pixels


def test_too_many_pixels_refused_then_downscaled_exactly(tmp_path):
    rng = np.random.default_rng(1)
    blocks = rng.integers(0, 256, (250, 375, 3), dtype=np.uint8)
    big = np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)  # 1000 x 1500, constant 4x4 blocks
    path = _save(tmp_path, "big.png", Image.fromarray(big))
    with pytest.raises(I.ImageError) as e:
        I.load_image(path, max_pixels=100_000)
    assert "1500x1000" in str(e.value) and "downscale=True" in str(e.value)
    x = I.load_image(path, max_pixels=100_000, downscale=True)
    assert x.shape == (1, 3, 250, 375)  # factor 4 is the smallest that fits
    _close(_px(x), blocks / 255, atol=1e-6)
    assert I.load_image(path, max_pixels=None).shape == (1, 3, 1000, 1500)
    # uneven sizes: edge blocks average only what exists
    odd = np.zeros((5, 7), np.uint8)
    odd[:, 6] = 255
    y = _px(I.load_image(Image.fromarray(odd), max_pixels=12, downscale=True))
    assert y.shape == (3, 4, 3)
    _close(y[:, 3, 0], [1, 1, 1])
    _close(y[:, 2, 0], [0, 0, 0])


@pytest.mark.parametrize("mode", list(_EXT))
def test_downscale_is_the_block_mean_in_every_mode(tmp_path, mode):
    """Downscaling by k averages k x k blocks of the image as it loads at full size: exactly
    for float, within PIL's rounding to the image's own bits otherwise (16-bit: 1/65535;
    8-bit: 1/255; transparency, averaged premultiplied in 8 bits: 2/255)."""
    path = _save(tmp_path, f"m.{_EXT[mode]}", _one_of_each_mode(mode, 30, 45, 7))
    full = I.load_image(path)
    small = I.load_image(path, max_pixels=150, downscale=True)  # k = 3: 10 x 15
    assert small.shape == (1, 3, 10, 15)
    mean = full.reshape(1, 3, 10, 3, 15, 3).mean(dim=(3, 5))
    atol = {"I;16": 1 / 65535, "F": 1e-6, "RGBA": 2 / 255, "LA": 2 / 255, "P": 2 / 255}.get(mode, 1 / 255)
    torch.testing.assert_close(small, mean, rtol=0, atol=atol)


@pytest.mark.parametrize("downscale", [False, True])
def test_float_and_integer_images_out_of_range_refused(tmp_path, downscale):
    """Values outside 0..white are refused before any averaging could hide them."""
    kw = dict(max_pixels=4, downscale=True) if downscale else {}
    f = np.zeros((4, 4), np.float32)
    f[1, 2] = 2.0
    with pytest.raises(I.ImageError, match=r"mode 'F'.*\[0, 1\].*0\.\.2"):
        I.load_image(Image.fromarray(f, "F"), **kw)
    f[1, 2] = np.nan  # not the first pixel: PIL's extrema skip it, the pixels do not
    with pytest.raises(I.ImageError, match=r"mode 'F'.*1 NaN"):
        I.load_image(Image.fromarray(f, "F"), **kw)
    twelve = np.zeros((4, 4), np.uint16)
    twelve[0, 1] = 5000  # above 4095, but a 2x2 mean of 1250 would not be
    path = _save(tmp_path, "g12.tif", Image.fromarray(twelve))
    with Image.open(path) as im:
        im.tag_v2[258] = 12
        with pytest.raises(I.ImageError, match=r"values 0\.\.5000, outside 0\.\.4095"):
            I.load_image(im, **kw)


def test_big_palette_png_downscaled_strip_by_strip(tmp_path):
    """A 36-megapixel palette PNG (36 MB decoded) shrinks without being converted whole to
    RGB (which alone would take 144 MB)."""
    path = tmp_path / "pal.png"
    im = Image.new("P", (6000, 6000), 1)
    im.putpalette([255, 255, 255, 200, 100, 50] + [0] * (254 * 3))
    im.save(path)
    code = textwrap.dedent(f"""
        import json, resource
        from vizlib.images import load_image
        load_image(r"{tmp_path / 'warm.png'}")
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        x = load_image({str(path)!r}, max_pixels=1_000_000, downscale=True)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(dict(shape=list(x.shape), px=x[0, :, 0, 0].tolist(), grew_mb=(after - before) / 1024)))
    """)
    Image.new("P", (2, 2)).save(tmp_path / "warm.png")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["shape"] == [1, 3, 1000, 1000]  # factor 6
    _close(r["px"], np.array([200, 100, 50]) / 255, atol=1e-7)
    assert r["grew_mb"] < 100, f"peak memory grew by {r['grew_mb']:.0f} MB"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_declared_png(side: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)  # 1-bit gray
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + _png_chunk(b"IEND", b""))


def test_huge_declared_png_refused_without_allocating():
    data = _huge_declared_png(100_000)
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(I.ImageError, match=r"100000x100000 = 10000.0 megapixels.*downscale=True"):
        I.load_image(data)
    with pytest.raises(I.ImageError, match="only JPEG can") as e:
        I.load_image(data, downscale=True)
    assert "ImageMagick" in str(e.value)
    assert Image.MAX_IMAGE_PIXELS == limit  # PIL's own limit restored


def _giant_grey_jpeg(path: Path, side: int) -> None:
    """A side x side uniform grey (128) baseline JPEG of a few MB, built without
    allocating the image: every 8x8 block codes as DC-diff 0 + EOB, so the entropy
    data is one 3-byte pattern (4 blocks) repeated."""
    buf = io.BytesIO()
    Image.new("L", (64, 64), 128).save(buf, "JPEG", quality=75)
    d = buf.getvalue()
    pos, sof, sos_end = 2, None, None
    while pos < len(d):  # walk the markers up to the start of scan
        marker, length = d[pos + 1], int.from_bytes(d[pos + 2:pos + 4], "big")
        if marker == 0xC0:
            sof = pos
        if marker == 0xDA:
            sos_end = pos + 2 + length
            break
        pos += 2 + length
    scan = d[sos_end:-2]
    assert scan == scan[:3] * 16, "unexpected entropy coding for the 64 grey blocks"
    header = bytearray(d[:sos_end])
    header[sof + 5:sof + 9] = struct.pack(">HH", side, side)
    blocks = (side // 8) ** 2
    assert side % 8 == 0 and blocks % 4 == 0
    with open(path, "wb") as f:
        f.write(header)
        f.write(scan[:3] * (blocks // 4))
        f.write(b"\xff\xd9")


def test_giant_jpeg_downscaled_on_decode_with_little_memory(tmp_path):
    path = tmp_path / "giant.jpg"
    _giant_grey_jpeg(path, 20_000)
    assert path.stat().st_size < 6_000_000
    # default: our clear refusal, not PIL's DecompressionBombError (400 Mpx > PIL's limit)
    with pytest.raises(I.ImageError, match=r"20000x20000 = 400.0 megapixels.*downscale=True"):
        I.load_image(path)
    # downscale in a fresh process, measuring its peak memory
    code = textwrap.dedent(f"""
        import json, resource, sys
        from vizlib.images import load_image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        x = load_image({str(path)!r}, max_pixels=1_000_000, downscale=True)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps(dict(shape=list(x.shape), lo=float(x.min()), hi=float(x.max()),
                              grew_mb=(after - before) / 1024)))
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout.strip().splitlines()[-1])
    b, c, h, w = r["shape"]
    assert (b, c) == (1, 3) and h == w and h * w <= 1_000_000 and h >= 500
    assert r["lo"] == r["hi"] == pytest.approx(128 / 255, abs=1e-7)
    assert r["grew_mb"] < 150, f"peak memory grew by {r['grew_mb']:.0f} MB (full decode would be 400+ MB)"


# ----------------------------------------------------------------------------- URLs


@pytest.fixture
def http_site(tmp_path, monkeypatch):
    """A local web server on 127.0.0.1 serving tmp_path/www; yields (folder, base URL)."""
    monkeypatch.delenv("VIZLIB_OFFLINE", raising=False)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    root = tmp_path / "www"
    root.mkdir()

    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    with serve_http(Handler) as base:
        yield root, base


def test_url_image_loads(http_site):
    root, base = http_site
    a = np.array([[[1, 2, 3], [250, 251, 252]]], dtype=np.uint8)
    Image.fromarray(a).save(root / "pic.png")
    (root / "pic.bin").write_bytes((root / "pic.png").read_bytes())  # served as octet-stream
    _close(_px(I.load_image(f"{base}/pic.png")), a / 255, atol=1e-7)
    _close(_px(I.load_image(f"{base}/pic.bin")), a / 255, atol=1e-7)
    assert I.load_image(f"{base}/pic.png", size=(4, 8)).shape == (1, 3, 4, 8)


def test_url_returning_html(http_site):
    root, base = http_site
    (root / "index.html").write_text("<!doctype html><html><body><img src='x.png'></body></html>")
    with pytest.raises(I.ImageError) as e:
        I.load_image(f"{base}/index.html")
    msg = str(e.value)
    assert "returned an HTML page" in msg and "Content-Type: text/html" in msg and "Copy image address" in msg
    (root / "fake.png").write_text("<html><body>login required</body></html>")  # lies about its type
    with pytest.raises(I.ImageError, match=r"returned an HTML page \(Content-Type: image/png\)"):
        I.load_image(f"{base}/fake.png")


def test_url_404(http_site):
    _, base = http_site
    with pytest.raises(I.ImageFetchError) as e:
        I.load_image(f"{base}/missing.png")
    assert "404" in str(e.value) and "missing.png" in str(e.value)
    assert isinstance(e.value, FetchError) and isinstance(e.value, I.ImageError)


def test_offline_refuses_url_without_network(monkeypatch):
    monkeypatch.setenv("VIZLIB_OFFLINE", "1")

    def boom(*a, **k):
        raise AssertionError("network touched")
    monkeypatch.setattr("urllib.request.urlopen", boom)
    monkeypatch.setattr(socket.socket, "connect", boom)
    with pytest.raises(I.ImageFetchError) as e:
        I.load_image("https://example.com/cat.jpg")
    assert "VIZLIB_OFFLINE" in str(e.value) and "sample_image" in str(e.value)
