"""ShapesNet, the course's offline model: packaged weights, safe loading, training."""
import json
import shutil

import pytest
import torch
from torch import nn

from vizlib import offline, shapes
from vizlib.offline import ShapesNet, WeightsError, load_shapesnet, save_shapesnet, shapesnet_info

LAYERS = ["conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3", "pool3", "conv4", "relu4"]
# A small retrain: seconds on two CPU cores, enough to learn the easy classes.
# One thread: the suite runs two workers on two cores.
SMALL = dict(seed=1, n_train=4096, n_val=256, epochs=3, size=32, batch_size=32, lr=3e-3, progress=False, threads=1)


@pytest.fixture(scope="module")
def packaged():
    return load_shapesnet()


@pytest.fixture(scope="module")
def small_run():
    return offline.train_shapesnet(**SMALL)


# ----------------------------------------------------------------------------- packaged weights

def test_packaged_weights_load(packaged):
    assert isinstance(packaged, ShapesNet)
    assert not packaged.training
    assert offline.default_weights_path().is_file()
    assert offline.default_weights_path().suffix == ".safetensors"


def test_layer_names(packaged):
    assert [name for name, _ in packaged.features.named_children()] == LAYERS
    f = packaged.features
    assert (f.conv1.in_channels, f.conv1.out_channels, f.conv1.kernel_size, f.conv1.padding) == (3, 32, (5, 5), (2, 2))
    assert (f.conv2.out_channels, f.conv3.out_channels, f.conv4.out_channels) == (64, 128, 128)
    assert all(isinstance(getattr(f, f"relu{i}"), nn.ReLU) and not getattr(f, f"relu{i}").inplace for i in range(1, 5))
    assert all(isinstance(getattr(f, f"pool{i}"), nn.MaxPool2d) for i in range(1, 4))
    assert isinstance(packaged.avgpool, nn.AdaptiveAvgPool2d)
    assert isinstance(packaged.fc, nn.Linear) and packaged.fc.out_features == len(shapes.CLASSES)


def test_any_input_size(packaged):
    with torch.no_grad():
        for side in (16, 48, 64, 100):
            assert packaged(torch.zeros(2, 3, side, side)).shape == (2, len(shapes.CLASSES))


def test_metadata(packaged):
    info = shapesnet_info()
    assert info["classes"] == list(shapes.CLASSES)
    assert info["size"] == 64
    assert info["mean"] == list(offline.MEAN) and info["std"] == list(offline.STD)
    assert info["sha256"] == offline._sha256(offline.default_weights_path())
    assert info["held_out_accuracy"] >= 0.95
    for key in ("seed", "training", "torch_version", "reproduce"):
        assert key in info
    assert "python -m vizlib.offline train" in info["reproduce"]


def test_packaged_accuracy_on_fresh_images(packaged):
    result = offline.evaluate_shapesnet(packaged, n=480, seed=31_337)
    assert result["accuracy"] >= 0.9, result


# ----------------------------------------------------------------------------- safe loading

def _copy_packaged(tmp_path, with_json=True):
    dst = tmp_path / "net.safetensors"
    shutil.copy(offline.default_weights_path(), dst)
    if with_json:
        shutil.copy(offline.default_weights_path().with_suffix(".json"), dst.with_suffix(".json"))
    return dst


def test_missing_file_names_it(tmp_path):
    path = tmp_path / "nowhere.safetensors"
    with pytest.raises(WeightsError, match="nowhere.safetensors"):
        load_shapesnet(path)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "garbage.safetensors"
    path.write_bytes(b"\x00\x01 this is not a safetensors file" * 50)
    with pytest.raises(WeightsError, match="garbage.safetensors"):
        load_shapesnet(path)


def test_pickle_is_refused(tmp_path):
    path = tmp_path / "pickled.safetensors"
    torch.save(ShapesNet().state_dict(), path)
    with pytest.raises(WeightsError, match="pickled.safetensors"):
        load_shapesnet(path)


def test_truncated_file_is_refused(tmp_path):
    path = _copy_packaged(tmp_path, with_json=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="net.safetensors"):
        load_shapesnet(path)


def test_tampered_weights_fail_the_checksum(tmp_path):
    path = _copy_packaged(tmp_path)
    assert isinstance(load_shapesnet(path), ShapesNet)      # an intact copy loads
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x40                                       # one bit inside a tensor
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="sha256"):
        load_shapesnet(path)


def test_wrong_tensors_are_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(8, 128), "something": torch.zeros(3)}, str(path))
    with pytest.raises(WeightsError, match="other.safetensors"):
        load_shapesnet(path)


def test_saving_is_byte_for_byte(tmp_path):
    torch.manual_seed(0)
    net = ShapesNet()
    digests = {save_shapesnet(net, tmp_path / f"n{i}.safetensors")["sha256"] for i in range(4)}
    assert len(digests) == 1


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = ShapesNet()
    meta = save_shapesnet(net, tmp_path / "rt.safetensors", {"note": "test"})
    assert meta["note"] == "test" and len(meta["sha256"]) == 64
    assert json.loads((tmp_path / "rt.json").read_text())["sha256"] == meta["sha256"]
    back = load_shapesnet(tmp_path / "rt.safetensors")
    for k, v in net.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    assert shapesnet_info(tmp_path / "rt.safetensors")["note"] == "test"


# ----------------------------------------------------------------------------- training

def test_small_retrain_learns(small_run):
    model, metrics = small_run
    chance = 1 / len(shapes.CLASSES)
    assert metrics["val_accuracy"] > 2 * chance, metrics["val_per_class"]
    losses = metrics["step_losses"]
    k = len(losses) // 5
    assert sum(losses[-k:]) / k < 0.8 * sum(losses[:k]) / k
    assert not model.training


def test_small_retrain_is_bit_for_bit():
    # determinism needs no long run: the same short recipe, twice
    a, ma = offline.train_shapesnet(**{**SMALL, "n_train": 512, "epochs": 1})
    b, mb = offline.train_shapesnet(**{**SMALL, "n_train": 512, "epochs": 1})
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert ma["step_losses"] == mb["step_losses"]


def test_training_restores_global_state():
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    torch.manual_seed(5)
    rng = torch.get_rng_state()
    offline.train_shapesnet(seed=2, n_train=64, n_val=16, epochs=1, size=32, batch_size=32, progress=False)
    assert torch.get_num_threads() == threads
    assert torch.are_deterministic_algorithms_enabled() == det
    assert torch.equal(torch.get_rng_state(), rng)


def test_cli_train_and_evaluate(tmp_path, capsys):
    out = tmp_path / "cli.safetensors"
    assert offline.main(["train", "--out", str(out), "--quick", "--n-train", "128", "--n-val", "32",
                         "--no-progress"]) == 0
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["training"]["n_train"] == 128 and "--quick" in info["reproduce"]
    assert info["sha256"] == offline._sha256(out)
    assert offline.main(["evaluate", "--weights", str(out), "--n", "32"]) == 0
    assert "held-out accuracy" in capsys.readouterr().out
    assert offline.main(["evaluate", "--weights", str(tmp_path / "missing.safetensors"), "--n", "8"]) == 1
    assert "missing.safetensors" in capsys.readouterr().err
