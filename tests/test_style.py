"""vizlib.style (lectures 12-13): Gram matrix and losses against float64 references, finite
differences and properties; layer defaults by name."""
import pytest
import torch

from vizlib import color, metrics, style, style_losses


def _gram_reference(f):
    """Average over positions of the outer product of the feature vector with itself, float64."""
    f = f.double()
    b, c, h, w = f.shape
    out = torch.zeros(b, c, c, dtype=torch.float64)
    for n in range(b):
        for y in range(h):
            for x in range(w):
                v = f[n, :, y, x]
                out[n] += torch.outer(v, v)
    return out / (h * w)


def test_gram_matrix_matches_the_average_of_outer_products():
    f = torch.randn(2, 5, 4, 3)
    g = style_losses.gram_matrix(f)
    assert g.shape == (2, 5, 5) and g.dtype == torch.float32
    torch.testing.assert_close(g.double(), _gram_reference(f), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(style_losses.gram_matrix(f, normalize=False), g * 12)


def test_gram_matrix_hand_computed():
    # one channel of ones, one channel [1, -1]: G = [[1, 0], [0, 1]]; with [2, 0]: cross term 1
    f = torch.tensor([[[[1.0, 1.0]], [[1.0, -1.0]]], [[[1.0, 1.0]], [[2.0, 0.0]]]])
    expected = torch.tensor([[[1.0, 0.0], [0.0, 1.0]], [[1.0, 1.0], [1.0, 2.0]]])
    torch.testing.assert_close(style_losses.gram_matrix(f), expected)


def test_gram_matrix_is_symmetric_psd_and_blind_to_where_things_are():
    f = torch.randn(3, 8, 6, 6, dtype=torch.float64)
    g = style_losses.gram_matrix(f)
    torch.testing.assert_close(g, g.transpose(1, 2))
    assert torch.linalg.eigvalsh(g).min() > -1e-10
    perm = torch.randperm(36)
    shuffled = f.flatten(2)[:, :, perm].view_as(f)      # same features, other places
    torch.testing.assert_close(style_losses.gram_matrix(shuffled), g)
    # each image of a batch is its own Gram
    torch.testing.assert_close(style_losses.gram_matrix(f[1:2]), g[1:2])


def test_covariance_is_the_gram_of_centred_features():
    f = torch.randn(2, 4, 5, 5, dtype=torch.float64)
    cov = style_losses.covariance_matrix(f)
    centred = f - f.mean(dim=(2, 3), keepdim=True)
    torch.testing.assert_close(cov, style_losses.gram_matrix(centred))
    # torch.cov uses the unbiased 1/(N-1); ours is the population 1/N
    torch.testing.assert_close(cov[0], torch.cov(f[0].flatten(1)) * 24 / 25)


def test_content_loss_values_and_broadcast():
    a = torch.zeros(2, 2, 2, 2)
    t = torch.ones(1, 2, 2, 2)
    a[1] = 1.0
    a[1, 0, 0, 0] = 3.0
    loss = style_losses.content_loss(a, t)
    torch.testing.assert_close(loss, torch.tensor([1.0, 4.0 / 8]))
    with pytest.raises(ValueError, match="does not match"):
        style_losses.content_loss(a, torch.ones(1, 3, 2, 2))


def test_style_loss_values_and_independence_of_size():
    f = torch.tensor([[[[1.0, 1.0]], [[1.0, -1.0]]]])      # Gram = identity
    target = torch.tensor([[[2.0, 1.0], [1.0, 1.0]]])
    torch.testing.assert_close(style_losses.style_loss(f, target), torch.tensor([(1 + 1 + 1 + 0) / 4]))
    # the same texture tiled twice has the same Gram matrix: zero loss against the small one
    big = f.repeat(1, 1, 3, 2)
    torch.testing.assert_close(style_losses.style_loss(big, style_losses.gram_matrix(f)), torch.zeros(1))
    with pytest.raises(ValueError, match="does not match"):
        style_losses.style_loss(f, torch.eye(3)[None])


def test_tv_loss_hand_computed():
    x = torch.tensor([[[[0.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 0.0]]]])
    # positions (0,0): dx=1 dy=0 ; (0,1): 0,0 ; (1,0): dx=1, dy=0 ; (1,1): dx=0, dy=-1
    torch.testing.assert_close(style_losses.tv_loss(x), torch.tensor([3.0 / 4]))
    torch.testing.assert_close(style_losses.tv_loss(x, beta=1.0), torch.tensor([3.0 / 4]), atol=1e-4, rtol=0)
    flat = torch.full((2, 3, 5, 5), 0.3)
    torch.testing.assert_close(style_losses.tv_loss(flat), torch.zeros(2))
    with pytest.raises(ValueError, match="beta"):
        style_losses.tv_loss(x, beta=0)


def test_losses_have_correct_gradients_by_finite_differences():
    f = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    tgt = style_losses.gram_matrix(torch.randn(1, 3, 5, 5, dtype=torch.float64))
    content = torch.randn(1, 3, 4, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: style_losses.style_loss(x, tgt), (f,))
    assert torch.autograd.gradcheck(lambda x: style_losses.content_loss(x, content), (f,))
    assert torch.autograd.gradcheck(lambda x: style_losses.tv_loss(x, beta=1.5), (f,))


def test_losses_leave_inputs_alone():
    f = torch.randn(1, 3, 4, 4)
    before = f.clone()
    style_losses.style_loss(f, style_losses.gram_matrix(f))
    style_losses.tv_loss(f)
    assert torch.equal(f, before)


def test_default_layers_by_name(random_model, shapesnet):
    vgg = random_model("vgg19")
    assert style_losses.default_style_layers(vgg) == ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    assert style_losses.default_content_layer(vgg) == "relu4_2"
    assert style_losses.default_style_layers(shapesnet) == ["relu1", "relu2", "relu3", "relu4"]
    assert style_losses.default_content_layer(shapesnet) == "relu3"


# ------------------------------------------------------------------ on the shared render loop

from unittest import mock  # noqa: E402

from vizlib import render  # noqa: E402
from vizlib.hooks import hook_count  # noqa: E402


def _img(h, w, seed):
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _untouched(model):
    assert hook_count(model) == 0
    assert all(p.grad is None and not p.requires_grad for p in model.parameters())
    assert not model.training


def test_targets_blend_several_styles_and_weight_layers_by_scale(shapesnet):
    a, b = _img(20, 20, 1), _img(28, 24, 2)
    ta = style_losses.style_targets(shapesnet, None, a, style_layers=["relu1", "relu2"])
    tb = style_losses.style_targets(shapesnet, None, b, style_layers=["relu1", "relu2"])
    both = style_losses.style_targets(shapesnet, None, [a, b], style_layers=["relu1", "relu2"], style_blend=(1, 3))
    for n in ("relu1", "relu2"):
        torch.testing.assert_close(both["grams"][n], 0.25 * ta["grams"][n] + 0.75 * tb["grams"][n])
        assert ta["layer_weights"][n] == pytest.approx(1 / (2 * float(ta["grams"][n].pow(2).mean())))
    with pytest.raises(ValueError, match="style_blend"):
        style_losses.style_targets(shapesnet, None, [a, b], style_blend=(1,))


def test_gram_texture_runs_on_the_render_loop_and_matches_the_grams(shapesnet):
    tex = _img(32, 32, 3)
    with mock.patch.object(render, "render", wraps=render.render) as spy:
        res = style.gram_texture(shapesnet, tex, 24, steps=6, style_layers=["relu1", "relu2"], progress=False)
    assert spy.call_count == 1
    assert res.image.shape == (1, 3, 24, 24)
    loss = res.history["loss"]
    assert loss[-1] < 0.2 * loss[0], loss
    _untouched(shapesnet)


def test_style_transfer_runs_only_the_layers_it_needs_and_computes_targets_once(shapesnet):
    content, style_img = _img(24, 24, 4), _img(40, 40, 5)
    seen = {"conv3": 0, "style_passes": 0}

    def count_conv3(m, i, o):
        seen["conv3"] += 1

    def count_style(m, args, o):
        seen["style_passes"] += int(args[0].shape[-1] == 40)

    h3 = shapesnet.layer("conv3").register_forward_hook(count_conv3)
    h1 = shapesnet.layer("conv1").register_forward_hook(count_style)
    try:
        with mock.patch.object(render, "render", wraps=render.render) as spy:
            res = style.style_transfer(shapesnet, content, style_img, style_layers=["relu1", "relu2"],
                                       content_layer="relu2", steps=3, optimizer="adam", progress=False)
    finally:
        h3.remove()
        h1.remove()
    assert spy.call_count == 1 and isinstance(spy.call_args.args[1], render.Objective)
    assert seen == {"conv3": 0, "style_passes": 1}
    assert res.image.shape == content.shape
    _untouched(shapesnet)


def test_style_transfer_objective_is_the_weighted_sum_of_the_losses(shapesnet):
    content, style_img = _img(24, 24, 6), _img(24, 24, 7)
    targets = style_losses.style_targets(shapesnet, content, style_img)
    obj = -(2.0 * style.content_term(targets) + 5.0 * style.style_term(targets))
    x = _img(24, 24, 8)
    acts = render.layer_outputs(shapesnet, x, obj.layers)
    c = style_losses.content_loss(acts["relu3"], targets["content"]) / targets["content"].pow(2).mean()
    s = style_losses.weighted_style_loss(acts, targets)
    torch.testing.assert_close(obj(acts), -(2 * c + 5 * s))
    # starting from the content image with no style: nothing to do
    res = style.style_transfer(shapesnet, content, style_img, style_weight=0.0, tv_weight=0.0, steps=0)
    assert torch.equal(res.image, content)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_style_transfer_lowers_the_loss_with_both_optimizers(shapesnet, optimizer):
    content, style_img = _img(24, 24, 9), _img(32, 32, 10)
    res = style.style_transfer(shapesnet, content, style_img, optimizer=optimizer, steps=6, progress=False)
    assert res.history["loss"][-1] < 0.7 * res.history["loss"][0], res.history["loss"]


def test_multi_scale_noise_init_and_colour_preservation(shapesnet):
    content, style_img = _img(20, 30, 11), _img(32, 32, 12)
    res = style.style_transfer(shapesnet, content, style_img, init="noise", scales=(12, 20), steps=2,
                               optimizer="adam", preserve_colors=True, progress=False)
    assert res.image.shape == (1, 3, 20, 30)
    assert res.history["scale"] == [(12, 18)] * 2 + [(20, 30)] * 2
    with pytest.raises(ValueError, match="init"):
        style.style_transfer(shapesnet, content, style_img, init="zeros", steps=1)


def test_preserve_colors_keeps_luminance_of_one_and_chroma_of_the_other():
    a = 0.3 + 0.4 * torch.rand(1, 3, 6, 6, dtype=torch.float64)
    b = 0.3 + 0.4 * torch.rand(1, 3, 6, 6, dtype=torch.float64)
    out = color.preserve_colors_of(a, b)
    m = color.RGB_TO_YIQ.double()
    yiq = lambda x: torch.einsum("ij,bjhw->bihw", m, x)  # noqa: E731
    torch.testing.assert_close(yiq(out)[:, 0], yiq(a)[:, 0])
    torch.testing.assert_close(yiq(out)[:, 1:], yiq(b)[:, 1:])
    torch.testing.assert_close(color.preserve_colors_of(b, b), b)


# ------------------------------------------------------------------ figures and explorers

def test_style_figures_draw_and_source_map_values():
    import matplotlib.pyplot as plt

    from vizlib import plot

    imgs = [torch.rand(1, 3, 8, 8) for _ in range(4)]
    figs = [plot.show_image_grid([imgs[:2], imgs[2:]], ["r1", "r2"], ["c1", "c2"]),
            plot.plot_loss_curves({"a": [3.0, 2.0, 1.0], "b": ([0.5, 1.0], [2.0, 1.5])}),
            plot.show_gram(style_losses.gram_matrix(torch.rand(1, 4, 3, 3)))]
    assert [len(f.axes) for f in figs] == [4, 1, 2]
    src = torch.tensor([[[0, 0], [0, 9]], [[9, 0], [9, 9]]])
    rgb = plot.source_map_image(src, (10, 10))
    torch.testing.assert_close(rgb[0, :2, 1, 1], torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(rgb[0, :2, 0, 1], torch.tensor([0.0, 1.0]))
    plt.close("all")


def test_texture_distance_is_zero_for_the_same_image_and_large_for_noise():
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.2 + 0.4
    same = metrics.texture_distance(img, img)
    assert same == {"histogram": 0.0, "spectrum": 0.0}
    flipped = metrics.texture_distance(img.flip(-1), img)      # same statistics, other places
    assert flipped["histogram"] == pytest.approx(0.0, abs=1e-12) and flipped["spectrum"] < 1e-9
    noise = metrics.texture_distance(torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)), img)
    assert noise["histogram"] > 0.5
    hist = metrics.texture_statistics(img)["histogram"]
    torch.testing.assert_close(hist.sum(-1), torch.ones(1, 3, dtype=torch.float64))
