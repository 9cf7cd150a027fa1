"""vizlib.models: names, the door, loading, offline fallback, safe checkpoints."""
import pickle

import pytest
import torch
from torch import nn

from vizlib import layers, models, policy
from vizlib.config import VizlibWarning
from vizlib.hooks import hook_count


def test_normalize_matches_manual_formula():
    x = torch.rand(2, 3, 5, 4)
    mean = torch.tensor(policy.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(policy.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(models.Normalize()(x), (x - mean) / std)


@pytest.mark.parametrize("name,layer,path,kind", [
    ("vgg16", "conv1_1", "net.features.0", nn.Conv2d),
    ("vgg16", "relu4_1", "net.features.18", nn.ReLU),
    ("vgg16", "relu5_3", "net.features.29", nn.ReLU),
    ("vgg16", "pool5", "net.features.30", nn.MaxPool2d),
    ("vgg16", "fc8", "net.classifier.6", nn.Linear),
    ("vgg19", "relu4_1", "net.features.20", nn.ReLU),
    ("vgg19", "conv5_4", "net.features.34", nn.Conv2d),
    ("alexnet", "conv1", "net.features.0", nn.Conv2d),
    ("alexnet", "conv5", "net.features.10", nn.Conv2d),
    ("alexnet", "pool5", "net.features.12", nn.MaxPool2d),
    ("alexnet", "fc6", "net.classifier.1", nn.Linear),
    ("resnet18", "conv1", "net.conv1", nn.Conv2d),
    ("resnet18", "layer4", "net.layer4", nn.Sequential),
    ("squeezenet1_1", "fire9", "net.features.12", nn.Module),
    ("squeezenet1_1", "conv10", "net.classifier.1", nn.Conv2d),
])
def test_layer_names_point_at_the_right_modules(name, layer, path, kind, random_model):
    model = random_model(name)
    assert model.layer_paths[layer] == path
    module = model.layer(layer)
    assert module is dict(model.named_modules())[path]
    assert isinstance(module, kind)
    assert layers.get_layer(model, path) is module  # dotted paths work too


def test_vgg_names_are_complete(random_model):
    model = random_model("vgg16")
    convs = [n for n in model.layer_names if n.startswith("conv")]
    assert convs == ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3",
                     "conv4_1", "conv4_2", "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
    assert model.classes[:2] == ["tench", "goldfish"] and len(model.classes) == 1000


def test_unknown_layer_suggests_close_names(random_model):
    model = random_model("vgg16")
    with pytest.raises(KeyError, match="relu4_1"):
        model.layer("relu4_l")


def test_unknown_model_name_is_refused_with_a_suggestion():
    with pytest.raises(ValueError, match="vgg16"):
        models.load_model("vgg61")


def test_returned_model_is_frozen_eval_and_not_inplace(random_model):
    model = random_model("alexnet")
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert not any(m.inplace for m in model.modules() if isinstance(m, nn.ReLU))


def _notices(record) -> list[str]:
    """The messages of the VizlibWarnings among ``record``."""
    return [str(w.message) for w in record if issubclass(w.category, VizlibWarning)]


def test_offline_switch_falls_back_in_one_line(capsys):
    with pytest.warns(VizlibWarning) as record:
        model = models.load_model("vgg16", device="cpu")  # conftest sets VIZLIB_OFFLINE=1
    assert model.source == "imagenet" and model.name == models.OFFLINE_IMAGENET
    said = _notices(record)
    assert len(said) == 1 and "\n" not in said[0] and "vgg16" in said[0] and "VIZLIB_OFFLINE" in said[0] and models.OFFLINE_IMAGENET in said[0]
    assert record[0].filename == __file__  # the notice points at the caller's line, not into vizlib
    assert capsys.readouterr().err == ""


def test_network_failure_falls_back_without_traceback(monkeypatch, tmp_path, capsys):
    import urllib.request

    monkeypatch.delenv("VIZLIB_OFFLINE")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    with pytest.warns(VizlibWarning) as record:
        model = models.load_model("alexnet", device="cpu")
    assert model.name == models.OFFLINE_IMAGENET and model.source == "imagenet"
    said = _notices(record)
    assert len(said) == 1 and "\n" not in said[0] and "no route to host" in said[0]
    assert "Traceback" not in capsys.readouterr().err
    with pytest.raises(OSError, match="no route to host"):
        models.load_model("alexnet", device="cpu", fallback=False)


def test_cached_checkpoint_in_torch_home_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = models.weights_path("resnet18")
    assert str(path).startswith(str(tmp_path))  # TORCH_HOME is respected
    reference = models.load_model("resnet18", pretrained=False, device="cpu")
    state = {k.removeprefix("net."): v for k, v in reference.state_dict().items()
             if k.startswith("net.")}
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    model = models.load_model("resnet18", device="cpu")
    assert model.source == "imagenet" and model.name == "resnet18"
    torch.testing.assert_close(model.net.conv1.weight, reference.net.conv1.weight)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_checkpoint_with_pickled_code_is_refused(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = models.weights_path("alexnet")
    path.parent.mkdir(parents=True)
    with open(path, "wb") as f:
        pickle.dump({"weight": Evil()}, f)
    with pytest.raises(OSError, match="cannot read"):
        models.load_model("alexnet", device="cpu", fallback=False)
    out = capsys.readouterr()
    assert "pwned" not in out.out
    with pytest.warns(VizlibWarning) as record:
        model = models.load_model("alexnet", device="cpu")
    assert model.name == models.OFFLINE_IMAGENET
    assert any(str(path) in s for s in _notices(record))


def test_offline_model_is_a_course_model():
    model = models.load_model("shapesnet", device="cpu")
    assert model.source == "offline" and model.input_size == 64
    assert model.layer_names[:3] == ["conv1", "relu1", "pool1"]
    assert isinstance(model.layer("conv1"), nn.Conv2d)
    x = torch.rand(2, 3, 64, 64)
    assert model(x).shape == (2, len(model.classes))
    assert hook_count(model) == 0


def test_predict_returns_sorted_probabilities(tiny_net):
    x = torch.zeros(1, 3, 4, 4)
    x[:, 1] = 1.0  # green: channel 1 = -1 -> ReLU 0; logits (0, 0)
    x[:, 0] = 0.5  # red: channel 0 = 0.5 -> logits (0.5, 0)
    (top,) = models.predict(tiny_net, x, k=2)
    assert [c for c, _ in top] == [0, 1]  # a model without class names: indices, not strings
    p0 = torch.softmax(torch.tensor([0.5, 0.0]), 0)
    assert top[0][1] == pytest.approx(float(p0[0]))


def test_layer_paths_that_point_nowhere_are_refused_when_the_model_is_built():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.ReLU())
    with pytest.raises(ValueError, match=r"CourseModel: layer 'conv' -> 'conv' is not a module of toy \(paths are "
                                         r"relative to the network, as in net.named_modules\(\)\); valid paths include '0', '1'"):
        models.CourseModel(net, "toy", ["a", "b"], {"conv": "conv", "relu": "1"}, source="random", input_size=8)
    ok = models.CourseModel(net, "toy", ["a", "b"], {"conv": "0", "relu": "1"}, source="random", input_size=8)
    assert ok.layer("relu") is net[1]


def test_random_initialisation_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = models.load_model("squeezenet1_1", pretrained=False, device="cpu", seed=7)
    assert torch.equal(torch.rand(1), expected_next)  # the global random state was not consumed
    b = models.load_model("squeezenet1_1", pretrained=False, device="cpu", seed=7)
    c = models.load_model("squeezenet1_1", pretrained=False, device="cpu", seed=8)
    assert torch.equal(a.layer("conv1").weight, b.layer("conv1").weight)
    assert not torch.equal(a.layer("conv1").weight, c.layer("conv1").weight)
    assert a.source == "random"
