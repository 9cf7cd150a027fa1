"""The fast-style network that ships with vizlib (fast_style.pretrained) and the script that made it."""
import importlib.util
import json
from pathlib import Path

import torch

from vizlib import fast_style, images, samples

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("train_stylizer", ROOT / "scripts" / "train_stylizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_shipped_network_says_how_it_was_made():
    net, info = fast_style.pretrained()
    meta = info["meta"]
    script = _script()
    assert isinstance(net, fast_style.TransformerNet) and not net.training
    assert {k: meta[k] for k in script.SETTINGS} == script.SETTINGS      # the script's settings, all of them
    assert meta["command"] == "python scripts/train_stylizer.py" and meta["style"] == script.STYLE
    assert meta["loss_model"] == "efficientnet_lite0" and "astronaut" in meta["held_out"]
    assert meta["final_losses"]["total"] < 0.5 * meta["first_losses"]["total"]
    assert (ROOT / "vizlib" / "data" / fast_style.PRETRAINED_FILE).stat().st_size < 2_000_000


def test_the_shipped_network_paints_an_unseen_photo():
    net, _ = fast_style.pretrained()
    photo = samples.sample_image("astronaut", 64)
    out = fast_style.stylize(net, photo, precision="float32")
    assert out.shape == photo.shape and 0 <= out.min() and out.max() <= 1
    change = (out - photo).abs().mean()
    assert change > 0.05, f"the stylised photo is almost the photo (mean change {change:.3f})"
    # the layout survives: the stylised photo is closer to its own photo than to another one
    other = images.center_crop(samples.sample_image("chelsea", 64), tuple(photo.shape[-2:]))
    gray = lambda x: x.mean(1).flatten()  # noqa: E731
    mine = torch.corrcoef(torch.stack([gray(out), gray(photo)]))[0, 1]
    theirs = torch.corrcoef(torch.stack([gray(out), gray(other)]))[0, 1]
    assert mine > theirs + 0.2, (float(mine), float(theirs))


def test_training_images_leave_out_the_held_out_photos():
    script = _script()
    crops = script.training_images(crops=1, seed=0)
    names = [n for n in samples.list_sample_images() if n not in script.HELD_OUT]
    assert crops.shape == (2 * len(names), 3, 128, 128)
    assert torch.equal(crops[1], crops[0].flip(-1))
    json.dumps(script.SETTINGS)
