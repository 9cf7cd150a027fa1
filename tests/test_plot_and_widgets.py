"""vizlib.plot and vizlib.widgets: figures draw, overlays are exact, explorers build headless."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from vizlib import plot, widgets
from vizlib.hooks import hook_count
from vizlib.models import load_model


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
    plt.close("all")


def test_overlay_shared_scale_and_resize():
    image = torch.ones(3, 4, 4)
    weak = plot.overlay_heatmap(image * 0, torch.full((2, 2), 0.25), alpha=1.0, cmap="gray", vmax=1.0)
    np.testing.assert_allclose(weak, 0.25, atol=1 / 255)  # on a fixed scale a weak map stays weak (256-level colour map)
    assert weak.shape == (4, 4, 3)


def test_figures_draw():
    figs = [
        plot.show_images(torch.rand(3, 3, 8, 8), titles=["a", "b", "c"], ncols=2),
        plot.show_filters(torch.randn(10, 3, 5, 5), ncols=4, title="filters"),
        plot.show_activation_maps(torch.rand(1, 6, 5, 5), ncols=3, title="maps"),
        plot.show_heatmaps(torch.rand(2, 3, 8, 8), torch.rand(2, 4, 4), titles=["x", "y"]),
        plot.plot_layer_stats([dict(layer="a", dead_fraction=0.1, zero_fraction=0.5),
                               dict(layer="b", dead_fraction=0.3, zero_fraction=0.6)]),
    ]
    for fig in figs:
        assert fig.axes
        plt.close(fig)
    with pytest.raises(ValueError, match="one image"):
        plot.show_activation_maps(torch.rand(2, 6, 5, 5))


def test_explorers_build_without_leaving_hooks():
    import ipywidgets

    model = load_model("shapesnet", device="cpu")
    image = torch.rand(1, 3, 64, 64)
    for explorer in (widgets.filter_explorer(model, image), widgets.activation_explorer(model, image)):
        assert isinstance(explorer, ipywidgets.interactive)
    assert hook_count(model) == 0
    plt.close("all")
