import collections
import itertools
from collections import OrderedDict

import pytest
import torch
from torch import nn

from vizlib import shapes
from vizlib.hooks import hook_count
from vizlib.patches import (TopActivations, class_purity, crop_patches, majority_labels,
                            purity_vs_chance, top_activations, chance_purity)
from vizlib.receptive import ReceptiveField, receptive_fields

# image -> (top, left, brightness) of a 3x3 red square planted in it (channel 0's stimulus)
RED = {0: (4, 5, 0.3), 2: (10, 1, 0.9), 3: (0, 0, 0.5), 5: (20, 17, 0.7), 8: (13, 13, 0.6)}
# image -> (top, left, brightness) of a 3x3 green square (channel 1's stimulus)
GREEN = {1: (7, 7, 0.8), 4: (2, 20, 0.4), 9: (25, 25, 1.0)}


def _box_net():
    """One 3x3 conv (padding 1): channel 0 sums the red 3x3 window, channel 1 the green."""
    net = nn.Sequential(OrderedDict(conv=nn.Conv2d(3, 2, 3, padding=1, bias=False)))
    with torch.no_grad():
        net.conv.weight.zero_()
        net.conv.weight[0, 0] = 1.0
        net.conv.weight[1, 1] = 1.0
    return net.eval().requires_grad_(False)


def _planted(n=12, size=28):
    images = torch.zeros(n, 3, size, size)
    for colour, planted in ((0, RED), (1, GREEN)):
        for i, (t, l, b) in planted.items():
            images[i, colour, t:t + 3, l:l + 3] = b
    return images


def test_known_answer_on_planted_squares():
    net, images = _box_net(), _planted()
    top = top_activations(net, "conv", images, k=3, batch_size=5)
    assert top.channels == [0, 1] and top.values.shape == (2, 3) and top.layer == "conv"
    # channel 0: the brightest red squares, their full 3x3 window at the square's centre
    assert top.image_index[0].tolist() == [2, 5, 8]
    assert torch.allclose(top.values[0], torch.tensor([9 * 0.9, 9 * 0.7, 9 * 0.6]))
    assert top.y[0].tolist() == [11, 21, 14] and top.x[0].tolist() == [2, 18, 14]
    assert top.image_index[1].tolist() == [9, 1, 4]
    assert top.y[1].tolist() == [26, 8, 3] and top.x[1].tolist() == [26, 8, 21]
    assert hook_count(net) == 0


def test_crop_equals_the_planted_patch():
    net, images = _box_net(), _planted()
    rf = receptive_fields(net)["conv"]
    assert rf == ReceptiveField(3, 1, -1)
    top = top_activations(net, "conv", images, k=5)
    patches = crop_patches(images, top, rf, channel=0)
    assert patches.shape == (5, 3, 3, 3)
    for patch, i in zip(patches, top.image_index[0].tolist()):
        t, l, b = RED[i]
        assert torch.equal(patch, images[i, :, t:t + 3, l:l + 3])
        assert torch.allclose(patch[0], torch.full((3, 3), b)) and patch[1:].abs().sum() == 0
    # a callable source gives the same crops
    assert torch.equal(crop_patches(lambda i: images[i], top, rf, channel=0), patches)


def test_crop_zero_pads_at_the_border():
    images = torch.arange(2 * 3 * 6 * 6, dtype=torch.float).view(2, 3, 6, 6)
    top = TopActivations(values=torch.ones(1, 2), image_index=torch.tensor([[1, 0]]),
                         y=torch.tensor([[0, 5]]), x=torch.tensor([[0, 3]]), channels=[4])
    rf = ReceptiveField(size=4, stride=1, offset=-2)  # unit (0, 0) sees rows/cols -2 … 1
    patches = crop_patches(images, top, rf, channel=4)
    assert patches.shape == (2, 3, 4, 4)
    assert patches[0, :, :2].abs().sum() == 0 and patches[0, :, :, :2].abs().sum() == 0
    assert torch.equal(patches[0, :, 2:, 2:], images[1, :, :2, :2])
    assert torch.equal(patches[1, :, :3, :], images[0, :, 3:6, 1:5])  # rows 3 … 6, clipped at 6
    assert patches[1, :, 3:].abs().sum() == 0
    with pytest.raises(KeyError):
        crop_patches(images, top, rf, channel=0)


def test_streaming_equals_all_at_once():
    from vizlib.models import load_model

    model = load_model("shapesnet", pretrained=False, device="cpu")
    batch = shapes.make_batch(40, size=64, seed=1)
    images, labels = batch["images"], batch["labels"]
    whole = top_activations(model, "relu3", images, k=5, batch_size=len(images))
    small = top_activations(model, "relu3", images, k=5, batch_size=7)
    stream = top_activations(model, "relu3", ((images[i:i + 7], labels[i:i + 7]) for i in range(0, 40, 7)),
                             k=5, progress=False)
    for other in (small, stream):
        assert torch.equal(other.image_index, whole.image_index)
        assert torch.equal(other.y, whole.y) and torch.equal(other.x, whole.x)
        assert torch.allclose(other.values, whole.values, atol=1e-5)  # conv sums vary in the last bit
    assert whole.values.shape == (128, 5)
    assert (whole.values[:, :-1] >= whole.values[:, 1:]).all()
    assert whole.image_index.max() < 40 and whole.y.max() < 16 and whole.x.max() < 16
    # one entry per image per channel
    assert all(len(set(row)) == 5 for row in whole.image_index.tolist())
    sub = top_activations(model, "relu3", images, k=50, channels=[3, 7])
    assert sub.channels == [3, 7] and sub.values.shape == (2, 40)  # k capped by the stream
    assert torch.equal(sub.image_index[:, :5], whole.image_index[[3, 7]])
    assert hook_count(model) == 0


def test_class_purity_exact():
    assert class_purity(torch.tensor([2, 2, 2, 2])) == 1.0
    assert class_purity([0, 1, 2, 3]) == 0.25
    assert class_purity(torch.tensor([5, 1, 5, 0, 5, 1])) == 0.5
    assert class_purity([7]) == 1.0
    with pytest.raises(ValueError):
        class_purity([])


def test_purity_vs_chance_exact():
    top = TopActivations(values=torch.zeros(2, 4), image_index=torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]]),
                         y=torch.zeros(2, 4, dtype=torch.long), x=torch.zeros(2, 4, dtype=torch.long),
                         channels=[0, 1])
    labels = torch.tensor([1, 1, 1, 0, 0, 1, 2, 2, 3, 3])
    purity, chance = purity_vs_chance(top, labels, num_classes=4)
    assert purity.tolist() == [0.75, 0.5]
    assert chance == pytest.approx(_enumerated_chance(labels, 4), abs=1e-12)
    assert chance > 0.4  # well above the largest class prior (4 of 10)
    assert majority_labels(top, labels).tolist() == [1, 2]
    _, balanced = purity_vs_chance(top, torch.arange(8) % 4, num_classes=4)
    assert balanced == pytest.approx(_enumerated_chance(torch.arange(8) % 4, 4), abs=1e-12)
    assert balanced == pytest.approx(31 / 70)  # far from the prior 0.25


def _enumerated_chance(labels, k):
    """The expected largest class share of k of the labels, by listing every subset."""
    subsets = list(itertools.combinations(labels.tolist(), k))
    return sum(max(collections.Counter(s).values()) for s in subsets) / (k * len(subsets))


def test_chance_purity_against_a_seeded_simulation():
    labels = torch.arange(2000) % 8
    g = torch.Generator().manual_seed(0)
    for k, approx in ((9, 0.31), (16, 0.26)):
        exact = chance_purity(labels, k, 8)
        draws = torch.multinomial(torch.ones(20000, len(labels)), k, replacement=False, generator=g)
        share = torch.stack([torch.bincount(r, minlength=8) for r in labels[draws]]).max(1).values / k
        assert exact == pytest.approx(float(share.mean()), abs=0.005)
        assert exact == pytest.approx(approx, abs=0.006)
    with pytest.raises(ValueError, match="k must lie"):
        chance_purity(labels[:5], 6)


def test_trained_shapesnet_has_class_selective_channels():
    from vizlib.models import load_model

    model = load_model("shapesnet", device="cpu")
    batch = shapes.make_batch(512, size=64, seed=3)
    top = top_activations(model, "relu4", batch["images"], k=16, batch_size=128)
    purity, chance = purity_vs_chance(top, batch["labels"], num_classes=len(shapes.CLASSES))
    assert chance == pytest.approx(chance_purity(batch["labels"], 16, 8))
    assert 0.24 < chance < 0.28  # 16 of 512 images of 8 classes
    # measured: 72 of 128 channels >= 0.8, 115 >= 0.5, mean 0.77; several at 1.0
    assert purity.max() >= 0.8
    assert (purity >= 0.8).sum() >= 20
    assert purity.mean() > 2.5 * chance  # the true baseline: about 0.26, not 1/8
    best = int(purity.argmax())
    patches = crop_patches(batch["images"], top, receptive_fields(model)["relu4"], top.channels[best])
    assert patches.shape == (16, 3, 40, 40)
