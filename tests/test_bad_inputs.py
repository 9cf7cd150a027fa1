"""Bad input across the public API: every row must fail with an error that names the problem and
what was expected, and leave the caller's objects (tensors, model weights, mode, requires_grad,
hooks) exactly as they were."""
from __future__ import annotations

import http.server
import io
import struct
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vizlib import (activations, ascent, attribution, fast_style, filters, hooks, images, models, neighbors,
                    offline, shapes, style)
from vizlib.images import ImageError
from conftest import ModelState, serve_http


@dataclass
class Row:
    id: str
    call: Callable  # call(ctx) -> anything; must raise
    error: type | tuple
    match: str      # regex the message must match (the problem and what was expected)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _huge_png_header(side: int) -> bytes:
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))


def _jpeg_bytes(size=(32, 32)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, "JPEG")
    return buf.getvalue()


class _Ctx:
    """What the rows work on: files on disk, a model, images, a local HTTP server."""

    def __init__(self, tmp_path, model, server, monkeypatch):
        self.tmp = tmp_path
        self.monkeypatch = monkeypatch
        self.model = model
        self.x = torch.rand(2, 3, 64, 64)
        self.server = server

    def url(self, path: str) -> str:
        """A URL on the local test server (with the network switched on for this test)."""
        self.monkeypatch.delenv("VIZLIB_OFFLINE", raising=False)
        return self.server + path

    def file(self, name: str, data: bytes):
        path = self.tmp / name
        path.write_bytes(data)
        return path


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        if self.path.startswith("/slow"):
            time.sleep(3)
        body = b"<!doctype html><html><body>Sign in to continue</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    with serve_http(_Handler) as base:
        yield base


def _dropout_net():
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 4, 3), relu=nn.ReLU(), pool=nn.AdaptiveAvgPool2d(1),
                                    flat=nn.Flatten(), drop=nn.Dropout(0.5), fc=nn.Linear(4, 2)))
    return net.train()


ROWS = [
    # ---- files and URLs -----------------------------------------------------------------
    Row("path is a text file", lambda c: images.load_image(c.file("notes.jpg", b"just some words\n")),
        ImageError, r"not an image|cannot identify|text"),
    Row("truncated JPEG", lambda c: images.load_image(c.file("cut.jpg", _jpeg_bytes()[:300])),
        ImageError, r"truncated|incomplete|damaged"),
    Row("empty file", lambda c: images.load_image(c.file("empty.png", b"")), ImageError, r"empty"),
    Row("missing file", lambda c: images.load_image(c.tmp / "nowhere.png"), ImageError, r"no such|not found|does not exist"),
    Row("20000x20000 image refused unless downscale=True",
        lambda c: images.load_image(c.file("huge.png", _huge_png_header(20_000))),
        ImageError, r"20000x20000.*downscale=True"),
    Row("HTML saved as .jpg", lambda c: images.load_image(c.file("page.jpg", b"<!DOCTYPE html><html></html>")),
        ImageError, r"HTML"),
    Row("URL returns HTML", lambda c: images.load_image(c.url("/login"), timeout=5),
        ImageError, r"HTML"),
    Row("URL times out", lambda c: images.load_image(c.url("/slow"), timeout=0.5),
        ImageError, r"timed out|timeout"),
    Row("a folder, not a file", lambda c: images.load_image(c.tmp), ImageError, r"folder|directory"),
    Row("not an image source at all", lambda c: images.load_image(3.5), ImageError, r"float|type"),
    # ---- image tensors ----------------------------------------------------------------
    Row("NaN pixels", lambda c: images.check_images(torch.full((1, 3, 8, 8), float("nan"))), ImageError, r"NaN"),
    Row("Inf pixels", lambda c: images.check_images(torch.full((1, 3, 8, 8), float("inf"))), ImageError, r"Inf"),
    Row("four channels", lambda c: images.check_images(torch.rand(1, 4, 8, 8)), ImageError, r"3 RGB channels.*RGBA"),
    Row("channels last", lambda c: images.check_images(torch.rand(1, 8, 8, 3)), ImageError, r"channels-last"),
    Row("uint8 tensor", lambda c: images.check_images(torch.zeros(1, 3, 8, 8, dtype=torch.uint8)), ImageError, r"uint8.*255"),
    Row("0..255 floats", lambda c: images.check_images(torch.full((1, 3, 8, 8), 200.0)), ImageError, r"\[0, 1\].*255"),
    Row("one image where a batch is expected", lambda c: images.check_images(c.x[0]), ImageError, r"batch dimension"),
    Row("a batch where one image is expected", lambda c: images.to_pil(c.x), ImageError, r"one image|batch"),
    Row("numpy array where a tensor is expected", lambda c: images.check_images(np.zeros((1, 3, 8, 8))),
        ImageError, r"NumPy.*load_image"),
    Row("empty batch", lambda c: images.check_images(torch.rand(0, 3, 8, 8)), ImageError, r"empty"),
    # ---- models -----------------------------------------------------------------------
    Row("float64 images into a float32 model", lambda c: c.model(c.x.double()), ValueError, r"float64.*float32"),
    Row("images on another device than the model", lambda c: c.model(torch.rand(1, 3, 64, 64, device="meta")),
        ValueError, r"meta.*cpu"),
    Row("1x1 image, smaller than the model can take", lambda c: c.model(torch.rand(1, 3, 1, 1)),
        ImageError, r"1x1.*too small.*resize"),
    Row("train mode with dropout", lambda c: models.predict(_dropout_net(), c.x), ValueError, r"training mode.*Dropout.*eval"),
    Row("layer that does not exist", lambda c: c.model.layer("relu5"), (KeyError, ValueError), r"relu5.*relu4"),
    Row("unknown model name", lambda c: models.load_model("vgg17"), ValueError, r"vgg17.*vgg16|vgg19"),
    Row("pickled checkpoint where safetensors expected",
        lambda c: offline.load_shapesnet(c.file("evil.safetensors", b"\x80\x04\x95" + b"\0" * 64)),
        Exception, r"safetensors|not a valid|header"),
    # ---- library functions ------------------------------------------------------------
    Row("activations of a missing layer", lambda c: activations.layer_activations(c.model, c.x, ["conv9"]),
        (KeyError, ValueError), r"conv9"),
    Row("capture from a missing layer", lambda c: hooks.capture_activations(c.model, "fc9").__enter__(),
        (KeyError, ValueError), r"fc9"),
    Row("first_conv of a net without convolutions", lambda c: filters.first_conv(nn.Sequential(nn.Linear(2, 2))),
        ValueError, r"[Cc]onv"),
    Row("more neighbours than the database holds",
        lambda c: neighbors.nearest_neighbors(torch.rand(2, 5), torch.rand(3, 5), k=4), ValueError, r"k must be in 1\.\.3, got 4"),
    Row("resize to zero pixels", lambda c: images.resize(c.x, 0), ValueError, r"size"),
    Row("unknown shape class", lambda c: shapes.make_batch(2, 32, seed=0, classes=["hexagon"]), ValueError, r"hexagon"),
    # ---- attribution, gradient ascent, style ------------------------------------------
    Row("class index out of range (attribution)", lambda c: attribution.saliency(c.model, c.x, 99),
        (ValueError, IndexError), r"99"),
    Row("class index out of range (class model)", lambda c: ascent.class_visualization(c.model, 99, size=32, steps=1),
        (ValueError, IndexError), r"99.*8 classes"),
    Row("Grad-CAM at a layer that does not exist", lambda c: attribution.grad_cam(c.model, c.x, 0, layer="relu7"),
        (KeyError, ValueError), r"relu7"),
    Row("occlusion patch larger than the image", lambda c: attribution.occlusion(c.model, c.x, 0, patch=100),
        ValueError, r"patch"),
    Row("style image that is not an image", lambda c: style.style_transfer(c.model, c.x[:1], "not-a-tensor", steps=1),
        (TypeError, ValueError), r"style"),
    Row("pickled fast-style checkpoint",
        lambda c: fast_style.load_checkpoint(c.file("evil.pt", b"\x80\x04\x95" + b"\0" * 64)),
        Exception, r"checkpoint|safetensors|refus|not"),
]


def test_the_table_is_big_enough():
    assert len(ROWS) >= 30 and len({r.id for r in ROWS}) == len(ROWS)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_is_named_and_changes_nothing(row, tmp_path, shapesnet, server, monkeypatch):
    ctx = _Ctx(tmp_path, shapesnet, server, monkeypatch)
    with ModelState(ctx.model, ctx.x):  # the model and the caller's images as they were
        with pytest.raises(row.error, match=row.match):
            row.call(ctx)


@pytest.mark.parametrize("mode", ["I;16", "CMYK", "P"])
def test_awkward_but_valid_images_load_as_rgb_floats(mode, tmp_path):
    """16-bit, CMYK and palette files are not errors: they load as (1, 3, H, W) floats in [0, 1]."""
    rgb = Image.new("RGB", (6, 4), (255, 0, 0))
    im = {"I;16": Image.fromarray(np.full((4, 6), 65535 // 2, np.uint16)),
          "CMYK": rgb.convert("CMYK"), "P": rgb.convert("P")}[mode]
    path = tmp_path / f"x.{'tif' if mode != 'P' else 'png'}"
    im.save(path)
    x = images.load_image(path)
    assert x.shape == (1, 3, 4, 6) and x.dtype == torch.float32
    expected = torch.tensor([0.5, 0.5, 0.5]) if mode == "I;16" else torch.tensor([1.0, 0.0, 0.0])
    assert torch.allclose(x[0, :, 0, 0], expected, atol=1e-2)
