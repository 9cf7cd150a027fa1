"""vizlib.sanity: the pointing game, deletion / insertion curves and cascading randomisation
are exact on hand-made cases, and on ShapesNet they show what lecture 15 teaches."""

import pytest
import torch
from torch import nn

from vizlib import attribution as A
from vizlib import blur
from vizlib import sanity as S
from vizlib import shapes
from vizlib.hooks import hook_count


# ----------------------------------------------------------------------------------------
# Exact behaviour on hand-made inputs
# ----------------------------------------------------------------------------------------

def test_pointing_game_and_chance():
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[:, 1:3, 1:3] = True
    maps = torch.zeros(2, 5, 5)
    maps[0, 2, 2] = 1.0       # on the object
    maps[1, 4, 4] = 1.0       # two pixels diagonally off it
    assert S.pointing_game(maps, masks).tolist() == [True, False]
    assert S.pointing_game(maps, masks, tolerance=2).tolist() == [True, False]  # distance sqrt(8) > 2
    assert S.pointing_game(maps, masks, tolerance=3).tolist() == [True, True]
    torch.testing.assert_close(S.pointing_chance(masks), torch.full((2,), 4 / 25))
    with pytest.raises(ValueError, match=r"maps must have shape \(B, H, W\) = \(2, 5, 5\), got \(2, 4, 5\)"):
        S.pointing_game(maps[:, :4], masks)
    with pytest.raises(TypeError, match="maps must be a tensor"):
        S.pointing_game(maps.numpy(), masks)


class Brightness(nn.Module):
    """Logits (3 * mean of the left half, 0): the probability of class 0 only depends on the
    left half's brightness."""

    def forward(self, x):
        s = 3 * x[:, :, :, :2].mean((1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], 1)


def test_deletion_and_insertion_exact():
    model = Brightness().eval()
    x = torch.ones(1, 3, 4, 4)
    right_first = torch.zeros(1, 4, 4)
    right_first[..., 2:] = 1.0                      # a map that ranks the irrelevant half first
    left_first = 1.0 - right_first
    p = lambda s: torch.sigmoid(torch.tensor(float(s))).double()   # noqa: E731 (2-class softmax)
    # 2 steps: delete 0, 8, 16 pixels
    bad = S.deletion_curve(model, x, right_first, 0, steps=2)
    good = S.deletion_curve(model, x, left_first, 0, steps=2)
    torch.testing.assert_close(bad[0], torch.stack([p(3), p(3), p(0)]))
    torch.testing.assert_close(good[0], torch.stack([p(3), p(0), p(0)]))
    assert float(S.auc(good)) < float(S.auc(bad))
    for bad_steps in (0, 2.5, True):
        with pytest.raises(ValueError, match=f"steps must be a positive integer, got {bad_steps!r}"):
            S.deletion_curve(model, x, left_first, 0, steps=bad_steps)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        S.insertion_curve(model, x, left_first, 0, steps=2, batch_size=0)
    torch.testing.assert_close(S.auc(torch.tensor([[0.0, 1.0, 1.0]])), torch.tensor([0.75]))
    # insertion into a blurred all-ones image (= all ones): the curve is flat
    flat = S.insertion_curve(model, x, left_first, 0, steps=2)
    torch.testing.assert_close(flat[0], torch.stack([p(3)] * 3))
    # blur keeps a constant image and the mean of any image (reflect padding is symmetric)
    torch.testing.assert_close(S.blur(torch.full((1, 3, 9, 9), 0.3)), torch.full((1, 3, 9, 9), 0.3))
    ramp = torch.linspace(0, 1, 8).view(1, 1, 1, 8).expand(1, 3, 8, 8)
    assert float(S.blur(ramp, sigma=2.0)[..., 0].mean()) > 0.0  # the left edge is lifted ...
    assert float(S.blur(ramp, sigma=2.0)[..., -1].mean()) < 1.0  # ... and the right one lowered
    # one blur in vizlib: RISE's canvas is render's Gaussian blur with an 11-wide kernel of std 5
    x = torch.rand(2, 3, 12, 7)
    torch.testing.assert_close(S.blur(x), blur.gaussian_blur(x, 5.0, 11))


def test_rank_correlation_matches_scipy():
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 5, (3, 6, 6), generator=g).double()    # many ties
    b = a + torch.randint(0, 3, (3, 6, 6), generator=g).double()
    ours = S.rank_correlation(a, b)
    for i in range(3):
        assert float(ours[i]) == pytest.approx(stats.spearmanr(a[i].flatten(), b[i].flatten())[0], abs=1e-12)
    torch.testing.assert_close(S.rank_correlation(a, a), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(S.rank_correlation(a, -a), -torch.ones(3, dtype=torch.float64))
    assert S.rank_correlation(a, torch.zeros_like(a)).tolist() == [0.0, 0.0, 0.0]  # constant map


def test_randomized_copy_leaves_the_model_alone(shapesnet):
    before = {k: v.clone() for k, v in shapesnet.state_dict().items()}
    rng = torch.get_rng_state()
    assert S.randomizable_layers(shapesnet) == ["fc", "conv4", "conv3", "conv2", "conv1"]
    net = S.randomized_copy(shapesnet, ["fc", "conv4"], seed=3)
    again = S.randomized_copy(shapesnet, ["fc", "conv4"], seed=3)
    assert torch.equal(rng, torch.get_rng_state())
    for k, v in shapesnet.state_dict().items():
        assert torch.equal(v, before[k])
        changed = not torch.equal(net.state_dict()[k], v)
        assert changed == (k.startswith("net.fc") or k.startswith("net.features.conv4")), k
        assert torch.equal(net.state_dict()[k], again.state_dict()[k])
    assert hook_count(shapesnet) == 0


# ----------------------------------------------------------------------------------------
# What lecture 15 shows on ShapesNet (measured on 8 held-out images)
# ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def report(shapesnet):
    data = shapes.make_batch(8, 64, seed=15)
    methods = {"random": S.random_map, "saliency": A.saliency,
               "guided_backprop": A.guided_backprop, "grad_cam": A.grad_cam}
    return {r["method"]: r for r in S.heatmap_report(shapesnet, data, methods, steps=6)}


def test_methods_point_above_chance(report):
    """Measured: chance 0.18; random 0.12; saliency 0.88, guided backprop 1.00, Grad-CAM 1.00
    (tolerance 4 px); deletion AUC random 0.68 vs 0.28-0.32; insertion 0.73 vs 0.80-0.87."""
    chance = report["random"]["chance"]
    assert 0.1 < chance < 0.3
    assert report["random"]["pointing"] <= chance + 0.25
    for name in ("saliency", "guided_backprop", "grad_cam"):
        assert report[name]["pointing"] >= chance + 0.4, name
        # deleting by the map destroys the class faster, and inserting by it restores it
        # faster, than doing so in a random order
        assert report[name]["deletion"] < report["random"]["deletion"] - 0.2, name
        assert report[name]["insertion"] > report["random"]["insertion"] + 0.05, name


def test_guided_backprop_ignores_the_top_layer(report):
    """Adebayo et al. 2018: guided backprop barely changes when the classifier is randomised;
    the gradient changes more and Grad-CAM decorrelates at once. Measured (fc randomised):
    guided backprop 0.95, gradient 0.79, Grad-CAM 0.22; every layer randomised: 0.21-0.26."""
    gb, grad, gc = report["guided_backprop"], report["saliency"], report["grad_cam"]
    assert gb["corr_top"] > 0.85
    assert grad["corr_top"] < gb["corr_top"] - 0.1
    assert gc["corr_top"] < 0.5
    for row in (gb, grad, gc):
        assert row["corr_all"] < 0.5   # with every layer random, no map survives


def test_cascade_stages(shapesnet):
    data = shapes.make_batch(4, 64, seed=15)
    stages = S.cascading_randomization(shapesnet, A.guided_backprop, data["images"], data["labels"])
    assert [s["layer"] for s in stages] == ["original", "fc", "conv4", "conv3", "conv2", "conv1"]
    assert stages[0]["correlation"].tolist() == [1.0] * 4
    means = [float(s["correlation"].mean()) for s in stages]
    assert means[-1] < means[1]
    assert hook_count(shapesnet) == 0
