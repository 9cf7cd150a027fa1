"""vizlib.filters (lecture 01): exact values on hand-made filters."""
import pytest
import torch
from torch import nn

from vizlib import filters
from vizlib.hooks import hook_count


def test_per_filter_normalisation_exact():
    w = torch.tensor([[-2.0, 0.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    w2 = torch.tensor([[1.0, 1.0], [1.0, 3.0]]).view(1, 1, 2, 2)
    out = filters.normalize_filters(torch.cat([w, w2]))
    torch.testing.assert_close(out[0, 0], torch.tensor([[0.0, 1 / 3], [2 / 3, 1.0]]))
    torch.testing.assert_close(out[1, 0], torch.tensor([[0.0, 0.0], [0.0, 1.0]]))


def test_global_and_symmetric_modes_exact():
    w = torch.tensor([[-2.0, 0.0], [2.0, 4.0]]).view(1, 1, 2, 2)
    w2 = torch.tensor([[1.0, 1.0], [1.0, 3.0]]).view(1, 1, 2, 2)
    both = torch.cat([w, w2])
    g = filters.normalize_filters(both, "global")
    torch.testing.assert_close(g[1, 0], torch.tensor([[0.5, 0.5], [0.5, 5 / 6]]))
    s = filters.normalize_filters(both, "symmetric")
    torch.testing.assert_close(s[0, 0], torch.tensor([[0.25, 0.5], [0.75, 1.0]]))


def test_constant_filter_becomes_grey_not_nan():
    out = filters.normalize_filters(torch.full((2, 3, 3, 3), 7.0))
    assert torch.equal(out, torch.full_like(out, 0.5))


def test_normalisation_rejects_wrong_shape_and_mode():
    with pytest.raises(ValueError, match=r"\(N, C, kH, kW\)"):
        filters.normalize_filters(torch.rand(3, 3, 3))
    with pytest.raises(ValueError, match="per_filter"):
        filters.normalize_filters(torch.rand(1, 3, 3, 3), mode="minmax")


def test_filter_grid_places_each_filter():
    w = torch.zeros(3, 3, 2, 2)
    w[1] = 1.0
    w[1, :, 0, 0] = 0.0  # filter 1: one dark pixel, rest bright
    grid = filters.filter_grid(w, ncols=2, padding=1, pad_value=0.25)
    assert grid.shape == (3, 2 * 3 + 1, 2 * 3 + 1)
    torch.testing.assert_close(grid[:, 1:3, 4:6], filters.normalize_filters(w)[1])
    assert torch.all(grid[:, 0, :] == 0.25)
    assert torch.all(grid[:, 4:6, 4:6] == 0.25)  # the empty fourth slot is padding


def test_filter_grid_of_one_filter_keeps_its_border():
    w = torch.rand(1, 1, 3, 2)
    grid = filters.filter_grid(w, padding=2, pad_value=0.5)
    assert grid.shape == (3, 3 + 4, 2 + 4)
    torch.testing.assert_close(grid[:, 2:5, 2:4], filters.normalize_filters(w)[0].expand(3, -1, -1))
    grid[:, 2:5, 2:4] = 0.5
    assert torch.all(grid == 0.5)


def test_smoothness_known_answers():
    ramp = (torch.arange(5.0)[:, None] + torch.arange(5.0)[None]).view(1, 1, 5, 5)  # i + j
    checker = ((torch.arange(5)[:, None] + torch.arange(5)[None]) % 2).float().view(1, 1, 5, 5)
    const = torch.ones(1, 1, 5, 5)
    s = filters.filter_smoothness(torch.cat([ramp, checker, const]))
    torch.testing.assert_close(s[0], torch.tensor(1.0))  # every neighbour is one step brighter
    torch.testing.assert_close(s[1], torch.tensor(-1.0))
    assert s[2] == 0
    noise = filters.filter_smoothness(torch.randn(512, 3, 7, 7, generator=torch.Generator().manual_seed(1)))
    assert abs(float(noise.mean())) < 0.02


def test_smoothness_matches_float64_reference():
    w = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    got = filters.filter_smoothness(w)
    for i in range(4):
        a = torch.cat([w[i, :, :, :-1].flatten(), w[i, :, :-1, :].flatten()]).double()
        b = torch.cat([w[i, :, :, 1:].flatten(), w[i, :, 1:, :].flatten()]).double()
        ref = torch.corrcoef(torch.stack([a, b]))[0, 1]
        assert float(got[i]) == pytest.approx(float(ref), abs=1e-6)


def _spot_detector(stride=1, padding=1):
    conv = nn.Conv2d(3, 2, 3, stride=stride, padding=padding, bias=False)
    with torch.no_grad():
        conv.weight.fill_(-0.1)
        conv.weight[0, :, 1, 1] = 1.0   # filter 0: bright centre, dark surround
        conv.weight[1] = 0.0
    return nn.Sequential(conv, nn.ReLU()).eval()


@pytest.mark.parametrize("stride", [1, 2])
def test_strongest_patch_finds_the_bright_spot(stride):
    model = _spot_detector(stride=stride)
    image = torch.zeros(1, 3, 12, 12)
    image[:, :, 6, 8] = 1.0
    patch, (top, left) = filters.strongest_patch(model, image, channel=0)
    assert patch.shape == (3, 3, 3)
    assert (top + 1, left + 1) == (6, 8)  # the spot sits at the patch centre
    torch.testing.assert_close(patch, image[0, :, top:top + 3, left:left + 3])
    assert hook_count(model) == 0


def test_strongest_patch_at_the_border_is_zero_padded():
    model = _spot_detector()
    image = torch.zeros(1, 3, 6, 6)
    image[:, :, 0, 0] = 1.0
    patch, (top, left) = filters.strongest_patch(model, image, channel=0)
    assert (top, left) == (-1, -1)
    assert patch[:, 1, 1].tolist() == [1.0, 1.0, 1.0] and float(patch.sum()) == 3.0


def test_strongest_patch_rejects_bad_channel_and_batch():
    model = _spot_detector()
    with pytest.raises(IndexError, match="2 filters"):
        filters.strongest_patch(model, torch.rand(1, 3, 8, 8), channel=5)
    with pytest.raises(ValueError, match=r"\(1, 3, H, W\)"):
        filters.strongest_patch(model, torch.rand(2, 3, 8, 8), channel=0)


def test_first_conv_and_conv_layers_of_course_models(random_model):
    from vizlib.models import load_model

    alex = random_model("alexnet")
    assert filters.first_conv(alex) is alex.layer("conv1")
    assert filters.conv_weights(alex).shape == (64, 3, 11, 11)
    assert filters.conv_layers(alex) == ["conv1", "conv2", "conv3", "conv4", "conv5"]
    shapes = load_model("shapesnet", device="cpu")
    assert filters.conv_weights(shapes, "conv2").shape[1] == shapes.layer("conv1").out_channels
