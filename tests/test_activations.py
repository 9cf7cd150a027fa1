"""vizlib.activations (lecture 02): exact sparsity numbers, layer discovery, no side effects."""
import pytest
import torch

from vizlib import activations
from vizlib.hooks import hook_count
from vizlib.models import load_model


def test_dead_channel_fraction_exact():
    a = torch.zeros(2, 4, 3, 3)
    a[0, 0, 1, 1] = 0.5          # image 0: one live channel of four
    a[1, :3, 0, 0] = 1.0         # image 1: three live channels
    a[1, 3] = -1.0               # negative values count as silent
    torch.testing.assert_close(activations.dead_channel_fraction(a), torch.tensor([0.75, 0.25]))
    torch.testing.assert_close(activations.dead_channel_fraction(a, threshold=0.6),
                               torch.tensor([1.0, 0.25]))


def test_zero_fraction_exact():
    a = torch.tensor([[0.0, 1.0, 2.0, 0.0], [1.0, 1.0, 1.0, -3.0]]).view(2, 4, 1, 1)
    torch.testing.assert_close(activations.zero_fraction(a), torch.tensor([0.5, 0.25]))


def test_dead_fraction_rejects_non_maps():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        activations.dead_channel_fraction(torch.rand(3, 4))


def test_layer_activations_and_stats_on_a_hand_weighted_net(tiny_net):
    x = torch.rand(3, 3, 4, 4)
    acts = activations.layer_activations(tiny_net, x, ["conv1", "relu1"])
    torch.testing.assert_close(acts["relu1"][:, 0], x[:, 0])
    rows = activations.activation_stats(tiny_net, x, ["relu1"])
    assert rows == [dict(layer="relu1", channels=2, height=4, width=4,
                         dead_fraction=0.5, zero_fraction=0.5)]
    assert hook_count(tiny_net) == 0 and not tiny_net.training


def test_normalize_maps_exact():
    a = torch.tensor([[[0.0, 2.0], [4.0, 4.0]], [[3.0, 3.0], [3.0, 3.0]]])
    out = activations.normalize_maps(a)
    torch.testing.assert_close(out[0], torch.tensor([[0.0, 0.5], [1.0, 1.0]]))
    assert torch.equal(out[1], torch.zeros(2, 2))


@pytest.mark.parametrize("name,expected", [
    ("alexnet", ["relu1", "relu2", "relu3", "relu4", "relu5"]),
    ("resnet18", ["relu1", "layer1", "layer2", "layer3", "layer4"]),
    ("squeezenet1_1", ["relu1", "fire2", "fire3", "fire4", "fire5", "fire6", "fire7", "fire8",
                       "fire9", "relu10"]),
    ("shapesnet", ["relu1", "relu2", "relu3", "relu4"]),
])
def test_feature_map_layers(name, expected, random_model):
    model = random_model(name)
    assert activations.feature_map_layers(model, image_size=64) == expected


def test_feature_map_layers_vgg16_are_its_13_conv_relus(random_model):
    model = random_model("vgg16")
    names = activations.feature_map_layers(model, image_size=32)
    assert len(names) == 13 and names[0] == "relu1_1" and names[-1] == "relu5_3"


def test_offline_model_first_layer_is_never_silent_deeper_layers_are():
    """What lecture 02 shows on the offline model, asserted: no silent first-layer channel,
    a clear share of silent channels in every deeper layer."""
    from vizlib import shapes

    model = load_model("shapesnet", device="cpu")
    batch = shapes.make_batch(32, size=64, seed=1)
    rows = activations.activation_stats(model, batch["images"], activations.feature_map_layers(model))
    dead = {r["layer"]: r["dead_fraction"] for r in rows}
    assert dead["relu1"] < 0.02
    assert min(dead["relu2"], dead["relu3"], dead["relu4"]) > 0.05
