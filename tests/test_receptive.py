import pytest
import torch
from torch import nn

from vizlib.hooks import capture_activations, hook_count
from vizlib.receptive import ReceptiveField, empirical_receptive_field, receptive_fields


def _check_empirical(model, layer, rf, size):
    """Empirical (size, position) of ``layer``'s centre unit equals the analytic box."""
    h, w, top, left = empirical_receptive_field(model, layer, size)
    with torch.no_grad(), capture_activations(model, layer) as acts:
        try:
            model(torch.zeros(1, 3, size, size))
        except RuntimeError:  # a classifier head that needs a larger input: the layer ran
            pass
    out_h, out_w = acts[layer].shape[-2:]
    box = rf.box(out_h // 2, out_w // 2)
    assert (h, w, top, left) == (rf.size, rf.size, box[0], box[1]), (layer, size)
    assert (box[2] - box[0], box[3] - box[1]) == (rf.size, rf.size)


def _auto_check(model, layer, rf):
    """Try growing inputs until the centre unit's field lies inside the image."""
    size = rf.size + 2 * rf.stride + 2
    for _ in range(6):
        try:
            return _check_empirical(model, layer, rf, size)
        except ValueError:
            size += rf.stride
    raise AssertionError(f"no input size found for {layer}")


# ----------------------------------------------------------------------------------------
# Hand-built nets with known answers
# ----------------------------------------------------------------------------------------

def test_three_stacked_3x3_convs_see_7x7():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 2, 3))
    rfs = receptive_fields(net)
    assert list(rfs) == ["0", "1", "2", "3"]
    assert [rfs[n].size for n in rfs] == [3, 3, 5, 7]
    assert all(rf.stride == 1 and rf.offset == 0 for rf in rfs.values())
    assert rfs["3"].box(2, 5) == (2, 5, 9, 12)
    for name, rf in rfs.items():
        _check_empirical(net, name, rf, 15)


def test_conv_pool_conv():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
    rfs = receptive_fields(net)
    assert [(rf.size, rf.stride, rf.offset) for rf in rfs.values()] == [(3, 1, 0), (4, 2, 0), (8, 2, 0)]
    assert rfs["2"].box(1, 3) == (2, 6, 10, 14)
    for name, rf in rfs.items():
        _check_empirical(net, name, rf, 20)


def test_stride_and_padding_positions():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    rfs = receptive_fields(net)
    assert rfs["0"] == ReceptiveField(3, 2, -1)
    assert rfs["1"] == ReceptiveField(7, 2, -3)
    assert rfs["0"].box(0, 0) == (-1, -1, 2, 2)  # unit 0 hangs over the border by the padding
    assert rfs["0"].box(2, 3) == (3, 5, 6, 8)
    assert rfs["1"].box(4, 1) == (5, -1, 12, 6)
    for name, rf in rfs.items():
        _check_empirical(net, name, rf, 21)


def test_dilation_and_avgpool():
    net = nn.Sequential(nn.Conv2d(3, 2, 3, dilation=2, padding=2), nn.AvgPool2d(3, stride=2, padding=1),
                        nn.Conv2d(2, 2, 5, padding=2))
    rfs = receptive_fields(net)
    assert rfs["0"] == ReceptiveField(5, 1, -2)
    assert rfs["1"] == ReceptiveField(7, 2, -3)
    assert rfs["2"] == ReceptiveField(15, 2, -7)
    for name, rf in rfs.items():
        _auto_check(net, name, rf)


def test_stops_at_adaptive_pool_and_fc():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, 2))
    assert list(receptive_fields(net)) == ["0"]


def test_non_square_kernel_raises():
    with pytest.raises(ValueError, match="non-square"):
        receptive_fields(nn.Sequential(nn.Conv2d(3, 2, (3, 5))))


def test_unknown_layer_raises():
    class Odd(nn.Module):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="Odd"):
        receptive_fields(nn.Sequential(nn.Conv2d(3, 2, 3), Odd()))


def test_empirical_raises_when_field_is_clipped():
    net = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Conv2d(2, 2, 3), nn.Conv2d(2, 2, 3))
    with pytest.raises(ValueError, match="larger input_size"):
        empirical_receptive_field(net, "2", 8)


# ----------------------------------------------------------------------------------------
# The course networks: analytic == empirical, size and position
# ----------------------------------------------------------------------------------------

def test_shapesnet_fields_and_model_unchanged():
    from vizlib.models import load_model

    model = load_model("shapesnet", device="cpu")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rfs = receptive_fields(model)
    assert list(rfs) == [n for n in model.layer_names if n not in ("avgpool", "fc")]
    assert rfs["relu4"] == ReceptiveField(40, 8, -16)
    for name, rf in rfs.items():
        _auto_check(model, name, rf)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert hook_count(model) == 0
    assert all(not p.requires_grad for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("name,expected", [
    ("alexnet", {"pool5": (195, 32)}),
    ("squeezenet1_1", {"conv10": (207, 16)}),
    ("resnet18", {"layer4": (435, 32)}),
])
def test_course_nets_analytic_equals_empirical(random_model, name, expected):
    model = random_model(name)
    rfs = receptive_fields(model)
    assert "fc" not in rfs and "avgpool" not in rfs
    for layer, (size, stride) in expected.items():
        assert (rfs[layer].size, rfs[layer].stride) == (size, stride)
    for layer, rf in rfs.items():
        if name == "resnet18" and layer in ("layer1", "layer2", "layer3", "layer4"):
            # a stage's output *is* its last block's output: same tensor, same field
            assert model.layer(layer)[-1] is model.layer(layer + "_1") and rf == rfs[layer + "_1"]
            continue
        _auto_check(model, layer, rf)
    assert hook_count(model) == 0


def test_vgg16_analytic_equals_empirical(random_model):
    model = random_model("vgg16")
    weight = model.layer("conv1_1").weight.clone()
    rfs = receptive_fields(model)
    assert rfs["conv1_2"].size == 5 and rfs["conv5_3"].size == 196
    assert rfs["pool5"] == ReceptiveField(212, 32, -90)
    early = [n for n in rfs if n[4] in "1234"]  # every layer of blocks 1-4 (conv1_1 … pool4)
    assert len(early) == 24
    for layer in early:
        _auto_check(model, layer, rfs[layer])
    # the deepest layers are the slow ones: check them once, at the smallest inputs that fit
    _check_empirical(model, "conv5_3", rfs["conv5_3"], 206)
    _check_empirical(model, "pool5", rfs["pool5"], 222)
    assert torch.equal(model.layer("conv1_1").weight, weight)
    assert hook_count(model) == 0
