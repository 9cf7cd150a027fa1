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


# --- texture and style (lectures 12-14) ---

def gram_explorer(model: nn.Module, image: torch.Tensor, layers: list[str] | None = None):
    """Pick a layer; see the Gram matrix of ``image``'s features there, and the two channels
    that co-occur most (the largest off-diagonal entry) side by side.

    ``image``: ``(1, 3, H, W)`` float in [0, 1]; ``layers`` default to
    :func:`vizlib.style.default_style_layers`.
    """
    import ipywidgets as widgets

    from . import render, style

    layers = layers or style.default_style_layers(model)
    with torch.no_grad():
        acts = {k: v[:1].detach().cpu() for k, v in render.layer_outputs(model, image, layers).items()}

    def show(layer: str):
        a = acts[layer]
        g = style.gram_matrix(a)[0]
        off = g.clone()
        off.fill_diagonal_(float("-inf"))
        i, j = divmod(int(off.argmax()), g.shape[0])
        fig, axes = plt.subplots(1, 4, figsize=(13, 3.1))
        axes[0].imshow(to_numpy(image))
        axes[0].set_title("image")
        plot.show_gram(g, f"Gram of {layer} ({g.shape[0]}x{g.shape[0]})", ax=axes[1])
        for ax, c in zip(axes[2:], (i, j)):
            ax.imshow(a[0, c].numpy(), cmap="viridis")
            ax.set_title(f"channel {c}")
        for ax in (axes[0], axes[2], axes[3]):
            ax.axis("off")
        fig.suptitle(f"channels {i} and {j} fire together most: G[{i},{j}] = {float(g[i, j]):.3g}")
        fig.tight_layout()
        plt.show()

    return widgets.interactive(show, layer=widgets.Dropdown(options=layers, value=layers[-1], description="layer"))


def style_explorer(model: nn.Module, content: torch.Tensor, style_image: torch.Tensor,
                   steps: int = 20, optimizer: str = "adam"):
    """Style transfer with sliders: the style weight (log scale), the TV weight and which
    style layers count. Each change reruns :func:`vizlib.style.style_transfer` for ``steps``
    steps (keep images small)."""
    import ipywidgets as widgets

    from . import style

    all_layers = style.default_style_layers(model)
    boxes = [widgets.Checkbox(value=True, description=n, indent=False, layout=widgets.Layout(width="90px"))
             for n in all_layers]
    weight = widgets.FloatLogSlider(value=100.0, base=10, min=-1, max=4, description="style weight",
                                    continuous_update=False)
    tv = widgets.FloatLogSlider(value=1.0, base=10, min=-3, max=2, description="TV weight",
                                continuous_update=False)
    out = widgets.Output()

    def redraw(*_):
        chosen = [b.description for b in boxes if b.value] or all_layers[:1]
        res = style.style_transfer(model, content, style_image, style_weight=weight.value, tv_weight=tv.value,
                                   style_layers=chosen, steps=steps, optimizer=optimizer, progress=False)
        with out:
            out.clear_output(wait=True)
            plot.show_images([content, style_image, res.image], ["content", "style",
                             f"style weight {weight.value:.3g}, layers {', '.join(chosen)}"], ncols=3, size=3)
            plt.show()

    for w in [weight, tv, *boxes]:
        w.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([weight, tv]), widgets.HBox(boxes), out])


def stylize_explorer(transformer: nn.Module, images: torch.Tensor, names: list[str] | None = None):
    """Pick an image and a strength; see the trained network's stylisation blended with the
    original (``strength`` 0 = original, 1 = the network's output). ``images``: ``(B, 3, H, W)``."""
    import ipywidgets as widgets

    from . import fast_style

    outs = fast_style.stylize(transformer, images)
    names = names or [f"image {i}" for i in range(len(images))]

    def show(index: int = 0, strength: float = 1.0):
        mixed = (1 - strength) * images[index] + strength * outs[index]
        plot.show_images([images[index], mixed], ["original", f"strength {strength:.2f}"], ncols=2, size=3.5)
        plt.show()

    return widgets.interactive(show, index=widgets.Dropdown(options=list(zip(names, range(len(images)))),
                                                            value=0, description="image"),
                               strength=widgets.FloatSlider(1.0, min=0.0, max=1.0, step=0.05, description="strength"))
