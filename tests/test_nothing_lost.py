"""Nothing lost (issue 25, first part): bad numbers are refused before any work, a diverged or broken
network never replaces a good checkpoint, and one output folder serves one training run at a time."""
import math

import pytest
import torch

from vizlib import fast_style as fs
from vizlib.validate import check_number


def test_numbers_are_refused_by_name_when_not_finite_or_out_of_range():
    assert check_number(2, "lr", positive=True) == 2.0 and check_number(0.0, "tv_weight", minimum=0) == 0.0
    for value, kw, message in [(float("nan"), {}, "style_weight must be a finite number, got nan"),
                               (float("inf"), {"minimum": 0}, "style_weight must be a finite number >= 0, got inf"),
                               (-1.0, {"minimum": 0}, "style_weight must be a finite number >= 0, got -1.0"),
                               (0.0, {"positive": True}, "style_weight must be a finite number > 0, got 0.0"),
                               (True, {}, "got True"), ("1", {}, "got '1'")]:
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            check_number(value, "style_weight", **kw)


@pytest.mark.parametrize("bad", [dict(style_weight=float("nan")), dict(content_weight=-1.0),
                                 dict(tv_weight=float("inf")), dict(lr=float("nan")), dict(lr=0.0),
                                 dict(steps=float("nan")), dict(batch_size=0)])
def test_training_refuses_a_bad_number_before_loading_anything(tmp_path, bad):
    name = next(iter(bad))
    with pytest.raises(ValueError, match=f"^{name} must be"):
        fs.train(object(), object(), tmp_path / "run", model=object(), **bad)     # nothing else is looked at
    assert not (tmp_path / "run").exists()


def _small_run(tmp_path, shapesnet, **kw):
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    args = dict(model=shapesnet, batch_size=2, width=4, residual_blocks=1, progress=False, sample_every=0,
                checkpoint_every=1, device="cpu", seed=3)
    return fs.train(style, images, tmp_path / "run", **{**args, **kw})


def test_a_network_holding_nan_is_never_saved_and_the_good_checkpoint_stays(tmp_path, shapesnet):
    _small_run(tmp_path, shapesnet, steps=2)
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    good = ckpt.read_bytes()
    net, _ = fs.load_checkpoint(ckpt)
    with torch.no_grad():
        next(net.parameters())[0] = float("nan")
    with pytest.raises(ValueError, match="holds NaN or Inf .* the checkpoint already there is kept"):
        fs.save_checkpoint(ckpt, net)
    assert ckpt.read_bytes() == good and not list(ckpt.parent.glob("*.tmp"))


def test_a_diverged_run_stops_with_the_step_and_keeps_the_last_checkpoint(tmp_path, shapesnet, monkeypatch):
    _small_run(tmp_path, shapesnet, steps=2)
    ckpt = tmp_path / "run" / "checkpoint.safetensors"
    good = ckpt.read_bytes()
    real = fs.train_step

    def diverging(*args, **kwargs):
        losses = real(*args, **kwargs)
        return dict(losses, total=math.nan)

    monkeypatch.setattr(fs, "train_step", diverging)
    with pytest.raises(FloatingPointError, match=r"diverged at step 3: the loss is nan; .* still holds step 2"):
        _small_run(tmp_path, shapesnet, steps=4)
    assert ckpt.read_bytes() == good


def test_a_second_run_into_the_same_folder_is_refused_while_the_first_holds_it(tmp_path, shapesnet):
    held = fs._lock_folder(tmp_path / "run")          # the first run
    try:
        with pytest.raises(RuntimeError, match=r"in use by another training run \(pid \d+\)"):
            _small_run(tmp_path, shapesnet, steps=1)
    finally:
        held.close()
    _small_run(tmp_path, shapesnet, steps=1)          # free again once the first run ends


@pytest.mark.parametrize("option, value, message", [
    ("--style-weight", "nan", "argument --style-weight: must be a finite number >= 0, not nan"),
    ("--content-weight", "-1", "argument --content-weight: must be a finite number >= 0, not -1"),
    ("--lr", "inf", "argument --lr: must be a finite number > 0, not inf")])
def test_the_command_line_refuses_the_same_numbers_as_its_option(tmp_path, capsys, option, value, message):
    from vizlib import cli
    with pytest.raises(SystemExit) as stop:
        cli.main(["train-style", "sample:brick", str(tmp_path), "-o", str(tmp_path / "run"), option, value])
    assert stop.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_every_door_refuses_the_same_bad_numbers_and_8_bit_images(shapesnet):
    from vizlib import render as R
    from vizlib.style import style_transfer
    for make, message in [(lambda: R.TV(float("nan")), "TV weight must be a finite number >= 0, got nan"),
                          (lambda: R.TV(1.0, beta=0), "TV beta must be a finite number > 0, got 0"),
                          (lambda: R.L2(-1.0), "L2 weight must be a finite number >= 0, got -1.0")]:
        with pytest.raises(ValueError, match=message):
            make()
    param = R.PixelImage(shape=(16, 16), seed=0)
    objective = R.channel("relu1", 0)
    for kw, message in [(dict(steps=2, lr=float("nan")), "lr must be a finite number > 0, got nan"),
                        (dict(steps=float("nan"), lr=0.1), "steps must be a finite number >= 0, got nan"),
                        (dict(steps=2.5, lr=0.1), "steps must be a whole number >= 0, got 2.5")]:
        with pytest.raises(ValueError, match=message):
            R.render(shapesnet, objective, param, progress=False, **kw)
    image = torch.rand(1, 3, 24, 24)
    with pytest.raises(ValueError, match="style_weight must be a finite number >= 0, got nan"):
        style_transfer(shapesnet, image, image, style_weight=float("nan"), steps=1, progress=False)
    with pytest.raises(TypeError, match=r"torch.uint8, the model takes floats in \[0, 1\]: convert with x.float\(\) / 255"):
        shapesnet((image * 255).to(torch.uint8))
