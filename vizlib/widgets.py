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


# --- attribution (lectures 05-07, 15) ---

def attribution_explorer(model: nn.Module, images: torch.Tensor, methods=None, layers=None,
                         settings: dict | None = None, labels=None):
    """Pick an image, a class, a layer and a method; see the heatmap beside the image.

    Args:
        images: ``(B, 3, H, W)`` float in [0, 1].
        methods: names from :data:`vizlib.attribution.METHODS` (default: all but occlusion).
        layers: layer names offered to the layer-based methods (CAM family; default the last
            few feature layers before :func:`vizlib.attribution.default_cam_layer`).
        settings: ``{method: {keyword: value}}`` passed to the methods (e.g. occlusion's patch).
        labels: optional names for the images.
    Maps are computed on demand and cached.
    """
    import ipywidgets as widgets

    from . import attribution

    methods = list(methods or [m for m in attribution.METHODS if m != "occlusion"])
    settings = settings or {}
    if layers is None:
        names = list(getattr(model, "layer_paths", {}) or {})
        last = attribution.default_cam_layer(model)
        layers = names[max(0, names.index(last) - 4):names.index(last) + 1] if last in names else [last]
    layered = {"grad_cam", "grad_cam_pp", "guided_grad_cam"}
    classes = list(getattr(model, "classes", []))
    class_options = [("top class", -1)] + [(c, i) for i, c in enumerate(classes)]
    cache: dict = {}

    def compute(index, cls, layer, method):
        key = (index, cls, layer if method in layered else None, method)
        if key not in cache:
            kw = dict(settings.get(method, {}))
            if method in layered:
                kw["layer"] = layer
            target = None if cls < 0 else cls
            cache[key] = attribution.METHODS[method](model, images[index:index + 1], target, **kw)[0].cpu()
        return cache[key]

    def show(index: int, cls: int, layer: str, method: str):
        heat = compute(index, cls, layer, method)
        with torch.no_grad():
            probs = model(images[index:index + 1]).softmax(1)[0].cpu()
        c = int(probs.argmax()) if cls < 0 else cls
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
        axes[0].imshow(to_numpy(images[index]))
        axes[0].set_title(labels[index] if labels else f"image {index}")
        im = axes[1].imshow(heat.numpy(), cmap="jet")
        fig.colorbar(im, ax=axes[1], fraction=0.046)
        where = f" @ {layer}" if method in layered else ""
        axes[1].set_title(f"{method}{where}", fontsize=9)
        axes[2].imshow(plot.overlay_heatmap(images[index], heat, alpha=0.55))
        name = classes[c] if classes else str(c)
        axes[2].set_title(f"for '{name}' (p = {float(probs[c]):.2f})", fontsize=9)
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        plt.show()

    return widgets.interactive(
        show,
        index=widgets.IntSlider(0, 0, images.shape[0] - 1, 1, description="image"),
        cls=widgets.Dropdown(options=class_options, value=-1, description="class"),
        layer=widgets.Dropdown(options=list(layers), value=list(layers)[-1], description="layer"),
        method=widgets.Dropdown(options=methods, value=methods[0], description="method"))


def cascade_explorer(model: nn.Module, images: torch.Tensor, target, methods=None, seed: int = 0):
    """Cascading randomisation, interactively: pick an image, a method and how many layers
    (from the top) are re-initialised; see the original and the randomised model's maps.

    ``images``: ``(B, 3, H, W)``; ``target``: the class indices explained (kept fixed);
    ``methods``: names from :data:`vizlib.attribution.METHODS`.
    """
    import ipywidgets as widgets

    from . import attribution, sanity

    methods = list(methods or ["saliency", "guided_backprop", "grad_cam", "integrated_gradients"])
    layers = sanity.randomizable_layers(model)
    nets: dict = {0: model}
    cache: dict = {}

    def maps(method, k):
        if (method, k) not in cache:
            if k not in nets:
                nets[k] = sanity.randomized_copy(model, layers[:k], seed=seed)
            cache[method, k] = attribution.METHODS[method](nets[k], images, target).cpu()
        return cache[method, k]

    def show(index: int, method: str, randomised: int):
        first, now = maps(method, 0)[index], maps(method, randomised)[index]
        rho = float(sanity.rank_correlation(first[None].abs(), now[None].abs())[0])
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.4))
        axes[0].imshow(to_numpy(images[index]))
        axes[0].set_title(f"image {index}")
        axes[1].imshow(plot.overlay_heatmap(images[index], first.abs(), alpha=0.6))
        axes[1].set_title(f"{method}: trained model", fontsize=9)
        axes[2].imshow(plot.overlay_heatmap(images[index], now.abs(), alpha=0.6))
        which = "none" if randomised == 0 else ", ".join(layers[:randomised])
        axes[2].set_title(f"randomised: {which}\nrank correlation {rho:.2f}", fontsize=9)
        for ax in axes:
            ax.axis("off")
        fig.tight_layout()
        plt.show()

    return widgets.interactive(
        show,
        index=widgets.IntSlider(0, 0, images.shape[0] - 1, 1, description="image"),
        method=widgets.Dropdown(options=methods, value=methods[0], description="method"),
        randomised=widgets.IntSlider(1, 0, len(layers), 1, description="layers"))
