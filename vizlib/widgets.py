"""ipywidgets explorers for the lectures: sliders and menus over what vizlib computes.

Each function returns a widget; displaying it in a notebook draws the default view at
once (so an executed notebook, or the HTML book, still shows a figure).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import torch
from torch import nn

from . import activations, filters, plot
from .images import to_numpy


def filter_explorer(model: nn.Module, image: torch.Tensor, layer: str | None = None):
    """Pick a first-layer filter; see its colour channels, and where it fires on ``image``.

    ``image``: ``(1, 3, H, W)`` float in [0, 1].
    """
    import ipywidgets as widgets

    conv = filters.first_conv(model) if layer is None else model.layer(layer)
    weights = conv.weight.detach().float().cpu()
    acts = activations.layer_activations(model, image, [conv])
    response = next(iter(acts.values()))[0].cpu()

    def show(index: int = 0):
        fig, axes = plt.subplots(1, 5, figsize=(13, 2.8))
        w = filters.normalize_filters(weights[index:index + 1], "symmetric")[0]
        axes[0].imshow(w.permute(1, 2, 0).numpy(), interpolation="nearest")
        axes[0].set_title(f"filter {index}")
        for c, name in enumerate(("red", "green", "blue")):
            axes[c + 1].imshow(weights[index, c].numpy(), cmap="RdBu_r", interpolation="nearest",
                               vmin=-weights[index].abs().max(), vmax=weights[index].abs().max())
            axes[c + 1].set_title(f"{name} weights")
        axes[4].imshow(plot.overlay_heatmap(image[0], response[index].clamp(min=0), alpha=0.6))
        axes[4].set_title("response on the image")
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        plt.show()

    return widgets.interactive(show, index=widgets.IntSlider(0, 0, weights.shape[0] - 1, 1,
                                                             description="filter"))


def activation_explorer(model: nn.Module, image: torch.Tensor, layers: list[str] | None = None):
    """Pick a layer and a channel; see that channel's map beside the image.

    ``image``: ``(1, 3, H, W)`` float in [0, 1]; ``layers`` default to
    :func:`vizlib.activations.feature_map_layers`.
    """
    import ipywidgets as widgets

    layers = layers or activations.feature_map_layers(model)
    acts = {k: v[0].cpu() for k, v in activations.layer_activations(model, image, layers).items()}
    layer_menu = widgets.Dropdown(options=layers, value=layers[0], description="layer")
    channel = widgets.IntSlider(0, 0, acts[layers[0]].shape[0] - 1, 1, description="channel")

    def follow(change):
        channel.max = acts[change["new"]].shape[0] - 1

    layer_menu.observe(follow, names="value")

    def show(layer: str, index: int):
        a = acts[layer]
        index = min(index, a.shape[0] - 1)
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.3))
        axes[0].imshow(to_numpy(image))
        axes[0].set_title("image")
        axes[1].imshow(a[index].numpy(), cmap="viridis")
        axes[1].set_title(f"{layer}[{index}]  {tuple(a.shape[1:])}")
        axes[2].imshow(plot.overlay_heatmap(image[0], a[index], alpha=0.6))
        axes[2].set_title("overlaid")
        for ax in axes:
            ax.axis("off")
        fig.suptitle(f"max {float(a[index].max()):.3g}; "
                     f"{float((a.flatten(1).amax(1) <= 0).float().mean()):.0%} of {layer}'s channels are silent")
        fig.tight_layout()
        plt.show()

    return widgets.interactive(show, layer=layer_menu, index=channel)
