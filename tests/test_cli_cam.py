"""`vizlib cam`: a heatmap of a photo over the photo, the most common first use; mistakes refused
before any network loads."""
import pytest
import torch

from vizlib import attribution, models, plot
from vizlib.cli import main
from vizlib.images import load_image
from vizlib.samples import sample_image


def test_cam_of_a_sample_photo_is_the_library_overlay(tmp_path, capsys):
    out = tmp_path / "cam.png"
    assert main(["cam", "sample:chelsea", "-o", str(out), "--network", "shapesnet", "--size", "48",
                 "--class", "2"]) == 0
    printed = capsys.readouterr().out
    model = models.load_model("shapesnet")
    image = sample_image("chelsea", size=48)
    heat = attribution.grad_cam(model, image, torch.tensor([2]))
    expected = torch.from_numpy(plot.overlay_heatmap(image[0], heat[0].abs(), alpha=0.5)).permute(2, 0, 1)
    got = load_image(out)[0]
    assert got.shape == image.shape[1:]
    torch.testing.assert_close(got, expected.float(), atol=1 / 255 + 1e-6, rtol=0)
    assert f"grad_cam of {model.classes[2]!r}" in printed and str(out) in printed


def test_cam_on_the_real_network_names_the_photo(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VIZLIB_OFFLINE", "1")
    assert main(["cam", "sample:chelsea", "-o", str(tmp_path / "c.png"), "--size", "160"]) == 0
    assert "top class 'Egyptian cat'" in capsys.readouterr().out


@pytest.fixture
def nothing_expensive(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a network was loaded before the arguments were checked")
    monkeypatch.setattr(models, "load_model", refuse)


@pytest.mark.parametrize("argv, message", [
    (["cam", "sample:chelsea", "-o", "{tmp}/c.pnj"], "cannot tell an image format from '.pnj'"),
    (["cam", "sample:chelsea"], "give an IMAGE and -o OUTPUT"),
    (["cam", "sample:chelsy", "-o", "{tmp}/c.png"], "unknown sample image 'chelsy'; did you mean 'chelsea'"),
    (["cam", "{tmp}/missing.jpg", "-o", "{tmp}/c.png"], "image '{tmp}/missing.jpg'"),
    (["cam", "sample:chelsea", "-o", "{tmp}/c.png", "--alpha", "2"], "--alpha 2.0: must be between 0 and 1"),
    (["cam", "sample:chelsea", "-o", "{tmp}/c.png", "--device", "banana"], "not a device"),
])
def test_cam_mistakes_are_one_line_before_any_network_loads(tmp_path, capsys, nothing_expensive, argv, message):
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and len(err.strip().splitlines()) == 1, err


def test_a_class_name_is_matched_and_a_wrong_one_gets_suggestions(tmp_path, capsys):
    assert main(["cam", "sample:coffee", "-o", str(tmp_path / "c.png"), "--network", "shapesnet", "--size", "32",
                 "--class", models.load_model("shapesnet").classes[1].upper()]) == 0
    assert main(["cam", "sample:coffee", "-o", str(tmp_path / "c.png"), "--network", "shapesnet",
                 "--class", "99"]) == 2
    assert "--class 99: the network has classes 0..7" in capsys.readouterr().err
    assert main(["cam", "--samples"]) == 0 and "sample:chelsea" in capsys.readouterr().out
