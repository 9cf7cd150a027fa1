"""vizlib.samples: the bundled photos, the paintings with their offline stand-ins, and the
lectures' example batches — all without touching the network."""
from __future__ import annotations

import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from vizlib import config, shapes
from vizlib import samples as S
from vizlib.config import VizlibWarning
from vizlib.images import ImageError, ImageNotFoundError, load_image


def _px(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) tensor -> (H, W, 3) float64 array for exact comparisons."""
    assert x.dtype == torch.float32 and x.ndim == 4 and x.shape[:2] == (1, 3)
    return x[0].permute(1, 2, 0).double().numpy()


def _close(a, b, atol=1e-6):
    np.testing.assert_allclose(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), rtol=0, atol=atol)


# ----------------------------------------------------------------------------- bundled photos


@pytest.fixture
def no_sockets(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_sample_list_contains_the_core_images(no_sockets):
    names = S.list_sample_images()
    for core in ("astronaut", "chelsea", "coffee", "camera", "grace_hopper", "china", "flower"):
        assert core in names
    assert names == sorted(names) and set(names) <= set(S.SAMPLE_IMAGES)


@pytest.mark.parametrize("name", S.list_sample_images())
def test_every_sample_loads_offline(name, no_sockets):
    x = S.sample_image(name)
    assert x.ndim == 4 and x.shape[:2] == (1, 3) and x.dtype == torch.float32
    assert min(x.shape[2:]) >= 100
    assert 0 <= float(x.min()) < float(x.max()) <= 1
    info = S.sample_image_info(name)
    assert info["available"] and Path(info["path"]).is_file()
    assert info["description"] and info["credit"] and info["source_package"] in ("scikit-image", "matplotlib", "scikit-learn")
    # exact pixels: the file decoded by PIL, /255, gray -> 3 equal channels, alpha over white
    with Image.open(info["path"]) as im:
        if im.mode in ("L", "RGB"):
            ref = np.asarray(im.convert("RGB")) / 255
            _close(_px(x), ref, atol=1e-6)


def test_sample_image_values_match_source_packages():
    from sklearn.datasets import load_sample_image

    _close(_px(S.sample_image("china")), load_sample_image("china.jpg") / 255)
    cam = _px(S.sample_image("camera"))
    _close(cam[..., 0], cam[..., 2], atol=0)
    assert S.sample_image("astronaut", size=64).shape == (1, 3, 64, 64)
    assert S.sample_image("chelsea", size=(10, 20)).shape == (1, 3, 10, 20)
    torch.testing.assert_close(S.sample_image("cat"), S.sample_image("chelsea"))
    assert S.sample_image_info("ihc")["name"] == "immunohistochemistry"


def test_unknown_sample_name_suggests_closest():
    with pytest.raises(ImageError) as e:
        S.sample_image("astronot")
    msg = str(e.value)
    assert "did you mean 'astronaut'" in msg and "chelsea" in msg and "grace_hopper" in msg
    with pytest.raises(ImageError, match="did you mean 'grace_hopper'"):
        S.sample_image_info("grace-hoper")


def test_a_bare_missing_name_points_to_the_samples_and_a_file_name_does_not(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageNotFoundError, match=r"vizlib\.samples\.sample_image\('cat'\)"):
        load_image("cat")
    with pytest.raises(ImageNotFoundError) as e:
        load_image("chelsea.png")
    assert "sample_image" not in str(e.value)


# ----------------------------------------------------------------------------- paintings


def test_a_painting_offline_is_its_bundled_stand_in_with_a_filterable_warning(no_sockets):
    assert config.offline()  # conftest sets VIZLIB_OFFLINE=1
    _, _, fallback = S.PAINTINGS["great_wave"]
    with pytest.warns(VizlibWarning, match=r"The Great Wave .* not available \(VIZLIB_OFFLINE is set\).*'hubble_deep_field'") as record:
        got = S.painting("great_wave", size=48)
    assert len(record) == 1 and "\n" not in str(record[0].message)
    assert record[0].filename == __file__  # said where the caller asked, not inside vizlib
    torch.testing.assert_close(got, S.sample_image(fallback, size=48))
    with warnings.catch_warnings():
        warnings.simplefilter("error", VizlibWarning)
        with pytest.raises(VizlibWarning):
            S.painting("great_wave", size=48)
    assert issubclass(VizlibWarning, UserWarning)


def test_every_painting_has_a_title_a_wikimedia_url_and_a_present_stand_in():
    present = set(S.list_sample_images())
    for name, (title, url, fallback) in S.PAINTINGS.items():
        assert title and url.startswith("https://upload.wikimedia.org/") and fallback in present, name


def test_a_path_that_is_not_a_painting_name_is_loaded_as_is_and_errors_are_not_hidden(tmp_path):
    Image.new("RGB", (20, 10), (0, 128, 255)).save(tmp_path / "p.png")
    torch.testing.assert_close(S.painting(str(tmp_path / "p.png")), load_image(tmp_path / "p.png"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", VizlibWarning)
        with pytest.raises(ImageNotFoundError):
            S.painting(str(tmp_path / "missing.png"))


# ----------------------------------------------------------------------------- example batches


def test_example_batch_offline(shapesnet):
    ex = S.example_batch(shapesnet, n=3, seed=2)
    assert ex["images"].shape == (3, 3, 64, 64) and ex["masks"].shape == (3, 64, 64)
    assert ex["names"] == [shapes.CLASSES[int(i)] for i in ex["targets"]]
    again = S.example_batch(shapesnet, n=3, seed=2)
    assert torch.equal(again["images"], ex["images"]) and torch.equal(again["targets"], ex["targets"])
    assert ex["images"].device.type == "cpu" and ex["images"].dtype == torch.float32


def test_example_batch_for_an_imagenet_model_is_the_bundled_photos_it_names():
    model = nn.Linear(1, 1)
    model.source = "imagenet"
    ex = S.example_batch(model, n=3, size=40)
    assert ex["names"] == list(S.EXAMPLE_PHOTOS[:3]) and ex["targets"] is None and ex["masks"] is None
    assert ex["images"].shape == (3, 3, 40, 40)
    assert float(ex["images"].min()) >= 0 and float(ex["images"].max()) <= 1
    assert set(S.EXAMPLE_PHOTOS) <= set(S.list_sample_images())
