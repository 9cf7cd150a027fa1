"""vizlib.plot and vizlib.widgets: each figure draws what its docstring promises (panels, titles,
the pixels and colour limits of every image, the lines' data), overlays are exact, and each
explorer draws its first view when it is made, redraws when a control moves, and carries a PNG
of that first view in its display bundle."""
import base64

import ipywidgets
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vizlib import plot, widgets
from vizlib.hooks import capture_activations, hook_count
from vizlib.style_losses import default_style_layers


@pytest.fixture(autouse=True)
def _close_figures():
    plt.close("all")
    yield
    plt.close("all")


def _rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _array(ax, i=0) -> np.ndarray:
    """The pixels of the ``i``-th image drawn in ``ax``."""
    return np.asarray(ax.images[i].get_array())


def _stretch(m: torch.Tensor) -> np.ndarray:
    """Each map min..max -> 0..1, by hand (a constant map -> 0)."""
    lo, hi = m.amin(), m.amax()
    return ((m - lo) / (hi - lo)).numpy() if hi > lo else np.zeros(tuple(m.shape), np.float32)


def _drawing(make):
    """``make()``'s result and the figures opened while it ran (an explorer's redraws)."""
    before = set(plt.get_fignums())
    result = make()
    return result, [plt.figure(n) for n in sorted(set(plt.get_fignums()) - before)]


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def _is_png(b64: str) -> bool:
    return base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------ overlays and colour limits

def test_overlay_exact_blend():
    image = torch.zeros(1, 3, 2, 2)
    heat = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    out = plot.overlay_heatmap(image, heat, alpha=0.5, cmap="gray")
    np.testing.assert_allclose(out[0, 1], [0.5, 0.5, 0.5], atol=1e-6)  # white at the peak, half blended
    np.testing.assert_allclose(out[0, 0], [0.0, 0.0, 0.0], atol=1e-6)


def test_heatmaps_are_clipped_at_a_high_percentile():
    heat = torch.linspace(0, 1, 1000).view(10, 100)
    heat[-1, -1] = 1000.0  # one hot pixel
    assert plot.display_range(heat, None) == (0.0, 1000.0)
    lo, hi = plot.display_range(heat)
    assert lo == 0.0 and hi == pytest.approx(float(torch.quantile(heat.flatten(), 0.99)))
    image = torch.zeros(1, 3, 10, 100)
    clipped = plot.overlay_heatmap(image, heat, alpha=1.0, cmap="gray")
    stretched = plot.overlay_heatmap(image, heat, alpha=1.0, cmap="gray", clip=None)
    assert clipped[5, 50, 0] > 0.4 and stretched[5, 50, 0] < 0.01  # the median pixel: seen vs blank
    fig = plot.show_map_table(image, heat[None, None], overlay=False)
    assert any("99th percentile" in t.get_text() for t in fig.texts)


def test_overlay_shared_scale_and_resize():
    image = torch.ones(3, 4, 4)
    weak = plot.overlay_heatmap(image * 0, torch.full((2, 2), 0.25), alpha=1.0, cmap="gray", vmax=1.0)
    np.testing.assert_allclose(weak, 0.25, atol=1 / 255)  # on a fixed scale a weak map stays weak (256-level colour map)
    assert weak.shape == (4, 4, 3)


# ------------------------------------------------------------------ image and map figures

def test_show_images_draws_each_image_with_its_title_in_a_grid():
    images = _rand(3, 3, 8, 8)
    fig = plot.show_images(images, titles=["a", "b", "c"], ncols=2, suptitle="three")
    assert len(fig.axes) == 4 and _titles(fig)[:3] == ["a", "b", "c"]
    for ax, img in zip(fig.axes, images):
        np.testing.assert_array_equal(_array(ax), img.permute(1, 2, 0).numpy())
    assert len(fig.axes[3].images) == 0 and not fig.axes[3].axison        # the empty slot is blank
    assert fig._suptitle.get_text() == "three"
    mixed = plot.show_images([_rand(1, 3, 4, 6), _rand(3, 5, 5)])    # sizes may differ
    assert [_array(ax).shape for ax in mixed.axes] == [(4, 6, 3), (5, 5, 3)]


def test_show_filters_tiles_each_filter_stretched_to_its_own_range():
    w = torch.randn(10, 3, 5, 5, generator=torch.Generator().manual_seed(0))
    fig = plot.show_filters(w, ncols=4, title="filters")
    (ax,) = fig.axes
    grid = _array(ax)
    assert ax.get_title() == "filters" and grid.shape == (1 + 3 * 6, 1 + 4 * 6, 3)  # 3 rows of 4, 1 px gaps
    lo, hi = w[7].min(), w[7].max()
    tile = grid[1 + 6:1 + 6 + 5, 1 + 3 * 6:1 + 3 * 6 + 5]                             # filter 7: row 1, col 3
    np.testing.assert_allclose(tile, ((w[7] - lo) / (hi - lo)).permute(1, 2, 0).numpy(), atol=1e-6)
    np.testing.assert_array_equal(grid[1 + 12:, 1 + 2 * 6:], 1.0)                    # two empty slots: white
    sym = _array(plot.show_filters(w, ncols=4, mode="symmetric").axes[0])
    assert not np.allclose(sym, grid)                                                 # mode is passed on


def test_show_activation_maps_stretches_each_channel_and_titles_it():
    act = _rand(1, 6, 5, 5)
    act[0, 2] = 0.0                                                                   # a silent channel
    fig = plot.show_activation_maps(act, ncols=3, title="maps")
    assert _titles(fig) == [str(c) for c in range(6)] and fig._suptitle.get_text() == "maps"
    for c, ax in enumerate(fig.axes):
        np.testing.assert_allclose(_array(ax), _stretch(act[0, c]), atol=1e-6)
        assert ax.images[0].get_clim() == (0, 1) and ax.images[0].get_cmap().name == "viridis"
    assert not _array(fig.axes[2]).any()                                              # drawn black
    picked = plot.show_activation_maps(act[0], channels=[4, 1])                       # (C, H, W) too
    assert _titles(picked) == ["4", "1"]
    np.testing.assert_allclose(_array(picked.axes[0]), _stretch(act[0, 4]), atol=1e-6)
    assert len(plot.show_activation_maps(_rand(40, 3, 3)).axes) == 32                 # max_channels
    with pytest.raises(ValueError, match="one image"):
        plot.show_activation_maps(torch.rand(2, 6, 5, 5))
    with pytest.raises(ValueError, match=r"\(C, H, W\); got \(5, 5\)"):
        plot.show_activation_maps(torch.rand(5, 5))


def test_show_heatmaps_draws_each_overlay_on_its_own_or_a_shared_scale():
    images, heat = _rand(2, 3, 8, 8), _rand(2, 4, 4, seed=1) * 0.3
    fig = plot.show_heatmaps(images, heat, titles=["x", "y"])
    assert _titles(fig) == ["x", "y"]
    for i, ax in enumerate(fig.axes):
        np.testing.assert_allclose(_array(ax), plot.overlay_heatmap(images[i], heat[i], alpha=0.5))
    shared = plot.show_heatmaps(images, heat, vmax=1.0)
    np.testing.assert_allclose(_array(shared.axes[1]), plot.overlay_heatmap(images[1], heat[1], vmax=1.0))
    assert not np.allclose(_array(shared.axes[1]), _array(fig.axes[1]))


def test_plot_layer_stats_draws_one_line_per_key_over_the_layers():
    rows = [dict(layer="a", dead_fraction=0.1, zero_fraction=0.5),
            dict(layer="b", dead_fraction=0.3, zero_fraction=0.6)]
    fig = plot.plot_layer_stats(rows, title="stats")
    (ax,) = fig.axes
    assert [list(line.get_ydata()) for line in ax.lines] == [[0.1, 0.3], [0.5, 0.6]]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["dead fraction", "zero fraction"]
    assert ax.get_ylim() == (0, 1.02) and ax.get_title() == "stats"


def test_save_figure_writes_the_format_of_its_extension(tmp_path):
    fig = plot.show_images(_rand(1, 3, 4, 4))
    plot.save_figure(fig, tmp_path / "f.png")
    plot.save_figure(fig, tmp_path / "f.pdf")
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "f.pdf").read_bytes()[:5] == b"%PDF-"


# ------------------------------------------------------------------ attribution figures

def test_gradient_image_is_grey_at_zero_and_clipped_at_a_high_percentile():
    img = plot.gradient_image(torch.tensor([-2.0, 0.0, 1.0]).view(1, 3, 1, 1), clip=None)
    torch.testing.assert_close(img.flatten(), torch.tensor([0.0, 0.5, 0.75]))
    # clipped at the 99th percentile of |g|: one huge value among 1000 no longer greys out the rest
    g = torch.full((1, 3, 10, 100), 0.01)
    g[0, 0, 0, 0] = 100.0
    assert float(plot.gradient_image(g, clip=None)[0, 1].max()) < 0.501
    assert float(plot.gradient_image(g)[0, 1].min()) == 1.0


def test_show_map_table_draws_each_map_with_its_own_colour_limits():
    images, maps = _rand(2, 3, 8, 8), _rand(2, 3, 8, 8, seed=1)
    maps[1, 2] = 0.25                                                                  # a constant map
    fig = plot.show_map_table(images, maps, overlay=False, show_image=False,
                              col_labels=["p", "q", "r"], row_labels=["a", "b"], clip=None)
    assert len(fig.axes) == 6 and _titles(fig)[:3] == ["p", "q", "r"]
    assert [fig.axes[0].get_ylabel(), fig.axes[3].get_ylabel()] == ["a", "b"]
    for k, ax in enumerate(fig.axes):
        m = maps[k // 3, k % 3]
        np.testing.assert_array_equal(_array(ax), m.numpy())
        lo, hi = float(m.min()), float(m.max())
        assert ax.images[0].get_clim() == pytest.approx((lo, hi if hi > lo else lo + 1.0))
    assert not fig.texts                                                               # no clip: no caption
    over = plot.show_map_table(images, maps, col_labels=["p", "q", "r"])
    assert len(over.axes) == 8 and _titles(over)[:4] == ["image", "p", "q", "r"]
    np.testing.assert_array_equal(_array(over.axes[4]), images[1].permute(1, 2, 0).numpy())
    np.testing.assert_allclose(_array(over.axes[5]),
                               plot.overlay_heatmap(images[1], maps[1, 0], alpha=0.55, cmap="jet"))


def test_show_attribution_grid_resizes_small_maps_to_the_images():
    x = _rand(2, 3, 16, 16)
    maps = {"saliency": _rand(2, 16, 16, seed=1), "grad_cam": _rand(2, 4, 4, seed=2)}
    fig = plot.show_attribution_grid(x, maps, row_labels=["a", "b"])
    assert len(fig.axes) == 6 and _titles(fig)[:3] == ["image", "saliency", "grad_cam"]
    assert fig.axes[3].get_ylabel() == "b"
    big = F.interpolate(maps["grad_cam"][:, None], size=(16, 16), mode="bilinear", align_corners=False)[:, 0]
    np.testing.assert_allclose(_array(fig.axes[5]), plot.overlay_heatmap(x[1], big[1], alpha=0.55),
                               atol=1e-6)
    np.testing.assert_allclose(_array(fig.axes[1]), plot.overlay_heatmap(x[0], maps["saliency"][0], alpha=0.55))


def test_line_plots_draw_their_data_into_a_new_or_a_given_axes():
    scores = torch.tensor([0.9, 0.2, 0.4])
    fig = plot.plot_occlusion_sweep(scores, [0, 4, 8], clean=1.5, title="sweep")
    (ax,) = fig.axes
    assert list(ax.lines[0].get_xdata()) == [0, 4, 8]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), scores.numpy())
    assert list(ax.lines[1].get_ydata()) == [1.5, 1.5] and ax.get_title() == "sweep"   # the clean score
    host, axes = plt.subplots(1, 2)
    assert plot.plot_occlusion_sweep(scores, [0, 4, 8], 1.0, ax=axes[1]) is host and len(axes[1].lines) == 2

    curves = plot.plot_perturbation_curves({"random": [1.0, 0.5, 0.0], "saliency": [1.0, 0.2, 0.1]})
    (ax,) = curves.axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["random (AUC 0.50)", "saliency (AUC 0.38)"]
    np.testing.assert_allclose(ax.lines[0].get_xdata(), [0.0, 0.5, 1.0])
    assert ax.lines[0].get_linestyle() == "--" and ax.lines[1].get_linestyle() == "-"

    cascade = plot.plot_cascade({"saliency": [1.0, 0.5, -0.3]}, ["original", "fc", "conv4"])
    (ax,) = cascade.axes
    assert [t.get_text() for t in ax.get_xticklabels()] == ["original", "+fc", "+conv4"]
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.0, 0.5, -0.3])
    assert ax.get_ylim() == pytest.approx((-0.35, 1.05))                              # room for the lowest
    long = plot.plot_cascade({"m": np.zeros(25)}, [f"s{i}" for i in range(25)])
    shown = [t.get_text() for t in long.axes[0].get_xticklabels()]
    assert [i for i, s in enumerate(shown) if s] == list(range(0, 25, 3))              # every 3rd, and the last


# ------------------------------------------------------------------ gradient ascent and style figures

def test_show_image_table_rows_columns_and_labels():
    rows = {"first": _rand(3, 3, 6, 6), "second": _rand(2, 3, 6, 6, seed=1)}
    fig = plot.show_image_table(rows, col_titles=["c0", "c1", "c2"], title="table")
    assert len(fig.axes) == 6 and _titles(fig)[:3] == ["c0", "c1", "c2"]
    assert [fig.axes[0].get_ylabel(), fig.axes[3].get_ylabel()] == ["first", "second"]
    np.testing.assert_array_equal(_array(fig.axes[4]), rows["second"][1].permute(1, 2, 0).numpy())
    assert len(fig.axes[5].images) == 0                                                    # second row is short


def test_history_by_layer_loss_curves_and_gram_plots_draw_their_data():
    hist = plot.plot_history({"objective": [1.0, 2.0, 3.0], "tv": [0.5, 0.4, 0.3]}, keys=["tv"])
    assert [list(line.get_ydata()) for line in hist.axes[0].lines] == [[0.5, 0.4, 0.3]]
    rows = [dict(layer="relu1", mse=0.1, ssim=0.9), dict(layer="relu3", mse=0.3, ssim=0.5)]
    by_layer = plot.plot_by_layer(rows, ["mse", "ssim"])
    assert _titles(by_layer) == ["mse", "ssim"]
    assert list(by_layer.axes[1].lines[0].get_ydata()) == [0.9, 0.5]
    assert [t.get_text() for t in by_layer.axes[0].get_xticklabels()] == ["relu1", "relu3"]
    curves = plot.plot_loss_curves({"a": [3.0, 2.0, 1.0], "b": ([0.5, 1.0], [2.0, 1.5])})
    (ax,) = curves.axes
    assert ax.get_yscale() == "log" and list(ax.lines[0].get_xdata()) == [1, 2, 3]
    assert list(ax.lines[1].get_xdata()) == [0.5, 1.0]
    assert plot.plot_loss_curves({"a": [1.0, 2.0]}, log=False).axes[0].get_yscale() == "linear"
    g = _rand(1, 4, 4)
    gram = plot.show_gram(g, title="G")
    assert len(gram.axes) == 2 and gram.axes[0].get_title() == "G"                     # the map and its colour bar
    np.testing.assert_array_equal(_array(gram.axes[0]), g[0].numpy())
    grid = plot.show_image_grid([[_rand(1, 3, 4, 4)], [_rand(3, 4, 4), _rand(3, 4, 4)]], ["r1", "r2"], ["c1", "c2"])
    assert len(grid.axes) == 4 and len(grid.axes[1].images) == 0 and grid.axes[2].get_ylabel() == "r2"


# ------------------------------------------------------------------ explorers

def test_filter_explorer_draws_the_filter_and_its_response_and_follows_the_slider(shapesnet):
    image = _rand(1, 3, 32, 32)
    explorer, drawn = _drawing(lambda: widgets.filter_explorer(shapesnet, image))
    assert isinstance(explorer, ipywidgets.interactive)
    slider = explorer.children[0]
    conv = shapesnet.layer("conv1")
    w = conv.weight.detach()
    assert (slider.description, slider.min, slider.max) == ("filter", 0, w.shape[0] - 1)
    (fig,) = drawn                                                                     # drawn when made
    assert _titles(fig) == ["filter 0", "red weights", "green weights", "blue weights", "response on the image"]
    np.testing.assert_array_equal(_array(fig.axes[2]), w[0, 1].numpy())
    bound = float(w[0].abs().max())
    assert fig.axes[2].images[0].get_clim() == pytest.approx((-bound, bound))         # symmetric about 0
    with torch.no_grad():
        response = conv(shapesnet.normalize(image))[0, 0].clamp(min=0)
    np.testing.assert_allclose(_array(fig.axes[4]), plot.overlay_heatmap(image[0], response, alpha=0.6),
                               atol=1e-5)
    bundle, _ = explorer._repr_mimebundle_()
    first = bundle["image/png"]
    assert _is_png(first) and "application/vnd.jupyter.widget-view+json" in bundle

    _, redrawn = _drawing(lambda: setattr(slider, "value", 3))
    (fig,) = redrawn
    assert fig.axes[0].get_title() == "filter 3"
    np.testing.assert_array_equal(_array(fig.axes[1]), w[3, 0].numpy())
    assert explorer._repr_mimebundle_()[0]["image/png"] == first                       # the first view stays
    assert hook_count(shapesnet) == 0


def test_activation_explorer_shows_the_chosen_channel_and_its_menu_follows_the_layer(shapesnet):
    from vizlib.activations import feature_map_layers

    image = _rand(1, 3, 32, 32)
    explorer, (first,) = _drawing(lambda: widgets.activation_explorer(shapesnet, image))
    assert isinstance(explorer, ipywidgets.interactive)
    menu, channel = explorer.children[:2]
    layers = feature_map_layers(shapesnet)
    with torch.no_grad(), capture_activations(shapesnet, layers) as acts:
        shapesnet(image)
    assert list(menu.options) == layers and menu.value == layers[0]
    assert channel.max == acts[layers[0]].shape[1] - 1
    a = acts[layers[0]][0, 0]
    assert first.axes[1].get_title() == f"{layers[0]}[0]  {tuple(a.shape)}"
    np.testing.assert_allclose(_array(first.axes[1]), a.numpy(), atol=1e-6)
    np.testing.assert_array_equal(_array(first.axes[0]), image[0].permute(1, 2, 0).numpy())

    _, (fig,) = _drawing(lambda: setattr(menu, "value", layers[-1]))
    assert channel.max == acts[layers[-1]].shape[1] - 1
    _, (fig,) = _drawing(lambda: setattr(channel, "value", 5))
    assert fig.axes[1].get_title().startswith(f"{layers[-1]}[5]")
    np.testing.assert_allclose(_array(fig.axes[1]), acts[layers[-1]][0, 5].numpy(), atol=1e-6)
    assert hook_count(shapesnet) == 0


def test_attribution_and_cascade_explorers_draw_the_methods_maps(shapesnet):
    from vizlib import attribution as A
    from vizlib import sanity

    x = _rand(2, 3, 64, 64)
    explorer, (fig,) = _drawing(lambda: widgets.attribution_explorer(shapesnet, x, methods=["saliency", "grad_cam"]))
    assert isinstance(explorer, ipywidgets.interactive)
    index, cls, layer, method = explorer.children[:4]
    assert (index.max, list(method.options), cls.value) == (1, ["saliency", "grad_cam"], -1)
    assert [label for label, _ in cls.options] == ["top class", *shapesnet.classes]
    assert fig.axes[1].get_title() == "saliency"
    np.testing.assert_allclose(_array(fig.axes[1]), A.saliency(shapesnet, x[:1], None)[0].numpy(), atol=1e-6)
    _, (fig,) = _drawing(lambda: explorer.children[3].__setattr__("value", "grad_cam"))
    assert fig.axes[1].get_title() == f"grad_cam @ {layer.value}"
    np.testing.assert_allclose(_array(fig.axes[1]),
                               A.grad_cam(shapesnet, x[:1], None, layer=layer.value)[0].numpy(), atol=1e-6)
    _, (fig,) = _drawing(lambda: cls.__setattr__("value", 2))
    with torch.no_grad():
        p = shapesnet(x[:1]).softmax(1)[0, 2]
    assert fig.axes[2].get_title() == f"for '{shapesnet.classes[2]}' (p = {float(p):.2f})"

    labels = torch.tensor([0, 1])
    cascade, (fig,) = _drawing(lambda: widgets.cascade_explorer(shapesnet, x, labels, methods=["saliency"]))
    assert isinstance(cascade, ipywidgets.interactive)
    stages = sanity.randomizable_layers(shapesnet)
    assert cascade.children[2].max == len(stages) and cascade.children[2].value == 1
    assert fig.axes[1].get_title() == "saliency: trained model"
    assert fig.axes[2].get_title().startswith(f"randomised: {stages[0]}\nrank correlation ")
    _, (fig,) = _drawing(lambda: cascade.children[2].__setattr__("value", 0))
    assert fig.axes[2].get_title() == "randomised: none\nrank correlation 1.00"       # nothing randomised
    assert hook_count(shapesnet) == 0


def test_gram_and_stylize_explorers_draw_what_they_name(shapesnet):
    from vizlib import fast_style

    image = _rand(1, 3, 24, 24, seed=13)
    explorer, (fig,) = _drawing(lambda: widgets.gram_explorer(shapesnet, image, layers=["relu1", "relu2"]))
    assert isinstance(explorer, ipywidgets.Widget)
    assert list(explorer.children[0].options) == ["relu1", "relu2"] and explorer.children[0].value == "relu2"
    with torch.no_grad(), capture_activations(shapesnet, "relu2") as acts:
        shapesnet(image)
    f = acts["relu2"][0].flatten(1)
    gram = f @ f.T / f.shape[1]                                                        # G = F F^T / N, by hand
    np.testing.assert_allclose(_array(fig.axes[1]), gram.numpy(), rtol=1e-4, atol=1e-6)
    off = gram.clone().fill_diagonal_(float("-inf"))
    i, j = divmod(int(off.argmax()), gram.shape[0])
    assert fig._suptitle.get_text().startswith(f"channels {i} and {j} fire together most")
    assert fig.axes[2].get_title() == f"channel {i}" and fig.axes[3].get_title() == f"channel {j}"

    net = fast_style.TransformerNet(4, 0)
    images = _rand(2, 3, 16, 16)
    stylize, (fig,) = _drawing(lambda: widgets.stylize_explorer(net, images))
    assert isinstance(stylize, ipywidgets.Widget)
    out = fast_style.stylize(net, images)
    assert _titles(fig) == ["original", "strength 1.00"]
    np.testing.assert_allclose(_array(fig.axes[1]), out[0].permute(1, 2, 0).numpy(), atol=1e-6)
    _, (fig,) = _drawing(lambda: stylize.children[1].__setattr__("value", 0.0))
    np.testing.assert_allclose(_array(fig.axes[1]), images[0].permute(1, 2, 0).numpy(), atol=1e-6)
    _, (fig,) = _drawing(lambda: stylize.children[0].__setattr__("value", 1))
    np.testing.assert_array_equal(_array(fig.axes[0]), images[1].permute(1, 2, 0).numpy())
    default = widgets.gram_explorer(shapesnet, image)
    assert list(default.children[0].options) == default_style_layers(shapesnet)


def test_style_explorer_reruns_with_the_chosen_layers(shapesnet):
    content, style_image = _rand(1, 3, 24, 24, seed=13), _rand(1, 3, 24, 24, seed=14)
    box, (fig,) = _drawing(lambda: widgets.style_explorer(shapesnet, content, style_image, steps=1))
    assert isinstance(box, ipywidgets.VBox)
    weight, tv = box.children[0].children
    boxes = box.children[1].children
    names = [b.description for b in boxes]
    assert _titles(fig) == ["content", "style", f"style weight 100, layers {', '.join(names)}"]
    np.testing.assert_array_equal(_array(fig.axes[1]), style_image[0].permute(1, 2, 0).numpy())
    assert _is_png(box._repr_mimebundle_()[0]["image/png"])
    _, (fig,) = _drawing(lambda: boxes[0].__setattr__("value", False))
    assert fig.axes[2].get_title() == f"style weight 100, layers {', '.join(names[1:])}"
    _, (fig,) = _drawing(lambda: weight.__setattr__("value", 10.0))
    assert fig.axes[2].get_title().startswith("style weight 10, ")
    assert hook_count(shapesnet) == 0 and not shapesnet.training
    assert all(p.grad is None and not p.requires_grad for p in shapesnet.parameters())
