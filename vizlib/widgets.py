"""ipywidgets explorers for the lectures: sliders and menus over what vizlib computes.

Each function returns a widget (an ``ipywidgets.interactive``, or a ``VBox``) whose display
bundle also carries a PNG of its first view, drawn when the widget is made. A live notebook
renders the widget view, which it ranks above every other type in a bundle (JupyterLab and
Notebook do; ipywidgets 7 and 8 alike), and nothing else; a page that cannot run widgets, as the
HTML book (:mod:`vizlib.course.book`), shows that figure instead, and ``image/png`` outputs
collect it with the other figures.
"""
from __future__ import annotations

import base64
import contextvars
import functools
import io

import matplotlib.pyplot as plt
import torch
from torch import nn

from . import (activations, ascent, attribution, fast_style, filters, metrics, plot, render, sanity, style,
               style_losses)
from .images import to_numpy

#: The explorer whose first view is being drawn: :func:`_show` keeps a PNG of that figure.
_DRAWING: contextvars.ContextVar = contextvars.ContextVar("vizlib_widgets_drawing", default=None)


def _png(fig) -> tuple[str, dict]:
    """``fig`` as the base64 PNG (and its metadata) that displaying it in this kernel would
    send, so the snapshot matches the live figure (size, retina); plain ``savefig`` outside one."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        shell = None
    if shell is not None:
        data, meta = shell.display_formatter.format(fig, include={"image/png"})
        png = data.get("image/png")
        if png:
            png = png if isinstance(png, str) else base64.b64encode(png).decode("ascii")
            return png, meta.get("image/png", {})
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii"), {}


def _show(fig, axes=()) -> None:
    """Hide ``axes``' frames and ticks, lay the figure out and show it (one widget redraw);
    the first view an explorer draws is also kept as its static snapshot."""
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    explorer = _DRAWING.get()
    if explorer is not None and explorer._snapshot is None:
        explorer._snapshot = _png(fig)
    plt.show()


def _with_snapshot(widget, data):
    """The widget's display bundle plus its snapshot as ``image/png`` (ranked below the widget
    view by every live frontend, so only pages that cannot run widgets show it)."""
    if not data or widget._snapshot is None:
        return data
    png, meta = widget._snapshot
    return {**data, "image/png": png}, ({"image/png": meta} if meta else {})


def _bundle(self, **kwargs):
    """ipywidgets 8 displays a widget through ``_repr_mimebundle_``: its bundle plus the PNG."""
    import ipywidgets as widgets

    return _with_snapshot(self, widgets.Widget._repr_mimebundle_(self, **kwargs))


def _display_legacy(self, **kwargs):
    """ipywidgets 7 (Colab's) sends the bundle itself in ``_ipython_display_``: the same bundle
    as 7.x's, plus the PNG."""
    import ipywidgets as widgets
    from IPython.display import display

    if self._view_name is None:
        return widgets.Widget._ipython_display_(self, **kwargs)
    plaintext = repr(self)
    data = {"text/plain": plaintext if len(plaintext) <= 110 else plaintext[:110] + "\u2026",
            "application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                         "model_id": self._model_id}}
    data, meta = _with_snapshot(self, data) if self._snapshot is not None else (data, {})
    display(data, metadata=meta, raw=True)
    self._handle_displayed(**kwargs)


class _Snapshot:
    """Mixin for a widget that keeps a PNG of its first view for its display bundle."""
    _snapshot: tuple[str, dict] | None = None

    def _drawing(self, draw):
        """``draw`` (a redraw callback) wrapped so that the figure it first shows becomes the
        snapshot."""
        @functools.wraps(draw)  # interactive builds its controls from the wrapped signature
        def drawn(*args, **kwargs):
            if self._snapshot is not None:
                return draw(*args, **kwargs)
            token = _DRAWING.set(self)
            try:
                return draw(*args, **kwargs)
            finally:
                _DRAWING.reset(token)
        return drawn


@functools.cache
def _classes():
    """The explorer widget classes, made on first use (ipywidgets is imported only then)."""
    import ipywidgets as widgets

    legacy = not hasattr(widgets.Widget, "_repr_mimebundle_")  # 7.x

    class Explorer(_Snapshot, widgets.interactive):
        """An ``interactive`` that draws its first view when it is made (as ipywidgets 8 does;
        7.x waits until it is displayed, after its bundle has gone out) and keeps it."""

        def __init__(self, draw, **controls):
            super().__init__(self._drawing(draw), **controls)
            if legacy:
                self.on_displayed(self.update, remove=True)
                self.update()

    class ExplorerBox(_Snapshot, widgets.VBox):
        """A ``VBox`` of controls and an ``Output`` that its maker draws into once, through
        :meth:`_drawing`, before it is displayed."""

    for cls in (Explorer, ExplorerBox):
        if legacy:
            cls._ipython_display_ = _display_legacy
        else:
            cls._repr_mimebundle_ = _bundle
    return Explorer, ExplorerBox


def _explorer(draw, **controls):
    """``ipywidgets.interactive(draw, **controls)`` that keeps a snapshot of its first view."""
    return _classes()[0](draw, **controls)


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
        _show(fig, axes)

    return _explorer(show, index=widgets.IntSlider(0, 0, weights.shape[0] - 1, 1, description="filter"))


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
        fig.suptitle(f"max {float(a[index].max()):.3g}; "
                     f"{float((a.flatten(1).amax(1) <= 0).float().mean()):.0%} of {layer}'s channels are silent")
        _show(fig, axes)

    return _explorer(show, layer=layer_menu, index=channel)


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
        _show(fig, axes)

    return _explorer(
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
        _show(fig, axes)

    return _explorer(
        show,
        index=widgets.IntSlider(0, 0, images.shape[0] - 1, 1, description="image"),
        method=widgets.Dropdown(options=methods, value=methods[0], description="method"),
        randomised=widgets.IntSlider(1, 0, len(layers), 1, description="layers"))


# --- gradient ascent (lectures 08-11) ---

def _slider(value, low, high, step, description, log=False):
    import ipywidgets as widgets

    if log:
        return widgets.FloatLogSlider(value=value, base=10, min=low, max=high, step=step,
                                      description=description, continuous_update=False)
    kind = widgets.IntSlider if isinstance(value, int) and isinstance(step, int) else widgets.FloatSlider
    return kind(value=value, min=low, max=high, step=step, description=description,
                continuous_update=False)


def class_visualization_explorer(model: nn.Module, steps: int = 100, size: int | None = None):
    """Pick a class and the regulariser strengths; see the class model gradient ascent makes.

    Each change re-runs :func:`vizlib.ascent.class_visualization` (``steps`` steps).
    """
    import ipywidgets as widgets


    def show(cls, l2, tv, blur_every, clip_values, clip_gradients, jitter):
        regs = [render.L2(l2)] if l2 > 0 else []
        regs += [render.TV(tv)] if tv > 0 else []
        regs += [render.BlurEvery(blur_every, 0.5)] if blur_every > 0 else []
        regs += [render.ClipSmallValues(clip_values)] if clip_values > 0 else []
        regs += [render.ClipSmallGradients(clip_gradients)] if clip_gradients > 0 else []
        out = ascent.class_visualization(model, model.classes.index(cls), steps=steps, size=size,
                                         regularizers=regs, transforms=[render.shift(jitter)] if jitter else [],
                                         progress=False)
        fig, axes = plt.subplots(1, 2, figsize=(8, 3.4), gridspec_kw={"width_ratios": [1, 1.5]})
        axes[0].imshow(to_numpy(out.image[0]))
        axes[0].axis("off")
        with torch.no_grad():
            p = model(out.image).softmax(1)[0]
        axes[0].set_title(f"{cls}: p = {float(p[model.classes.index(cls)]):.2f}")
        plot.plot_history(out.history, ax=axes[1])
        _show(fig)

    return _explorer(
        show, cls=widgets.Dropdown(options=model.classes, value=model.classes[0], description="class"),
        l2=_slider(0.5, 0.0, 5.0, 0.25, "L2"), tv=_slider(0.0, 0.0, 5.0, 0.25, "TV"),
        blur_every=_slider(4, 0, 10, 1, "blur every"), clip_values=_slider(10, 0, 50, 5, "clip values %"),
        clip_gradients=_slider(10, 0, 50, 5, "clip grads %"), jitter=_slider(4, 0, 8, 1, "jitter"))


def fooling_explorer(model: nn.Module, images: torch.Tensor, max_steps: int = 100):
    """Pick an image and a target class; see the fooling image, the change (x20) and its size.

    ``images``: ``(B, 3, H, W)`` float in [0, 1].
    """
    import ipywidgets as widgets


    def show(index, target):
        x = images[index:index + 1]
        t = model.classes.index(target)
        out = ascent.fooling_image(model, x, t, max_steps=max_steps)
        with torch.no_grad():
            before = model.classes[int(model(x).argmax())]
            after = model.classes[int(model(out.image).argmax())]
        delta = ((out.image - x) * 20 + 0.5).clamp(0, 1)
        fig, axes = plt.subplots(1, 3, figsize=(9, 3.3))
        for ax, im, title in zip(axes, (x, out.image, delta),
                                 (f"original: {before}", f"after {out.steps} steps: {after}",
                                  "change x 20")):
            ax.imshow(to_numpy(im[0]))
            ax.set_title(title, fontsize=10)
            ax.axis("off")
        fig.suptitle(f"L-inf {out.linf:.1f}, L2 {out.l2:.0f}, RMS {out.rms:.2f} (pixel units 0-255)")
        _show(fig)

    return _explorer(
        show, index=widgets.IntSlider(0, 0, images.shape[0] - 1, 1, description="image",
                                      continuous_update=False),
        target=widgets.Dropdown(options=model.classes, value=model.classes[1], description="target"))


def deepdream_explorer(model: nn.Module, image: torch.Tensor, layers: list[str], steps: int = 10):
    """Pick a layer, the number of octaves and the step size; see what DeepDream amplifies.

    ``image``: ``(1, 3, H, W)`` float in [0, 1].
    """
    import ipywidgets as widgets


    def show(layer, octaves, lr):
        out = ascent.deepdream(model, image, layer, octaves=octaves, steps=steps, lr=lr, progress=False)
        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
        for ax, im, title in zip(axes, (image, out), ("image", f"dreamed at {layer}")):
            ax.imshow(to_numpy(im[0]))
            ax.set_title(title)
            ax.axis("off")
        _show(fig)

    return _explorer(
        show, layer=widgets.Dropdown(options=layers, value=layers[len(layers) // 2], description="layer"),
        octaves=_slider(3, 1, 5, 1, "octaves"), lr=_slider(0.004, 0.001, 0.02, 0.001, "step"))


def inversion_explorer(model: nn.Module, image: torch.Tensor, layers: list[str], steps: int = 100):
    """Pick a layer, the TV weight and beta; see the image reconstructed from that layer's features.

    ``image``: ``(1, 3, H, W)`` float in [0, 1].
    """
    import ipywidgets as widgets


    def show(layer, tv_weight, beta):
        out = ascent.invert_features(model, image, layer, steps=steps, tv_weight=tv_weight, beta=beta,
                                     progress=False)
        err = metrics.reconstruction_error(out.image, image)
        fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
        for ax, im, title in zip(axes, (image, out.image),
                                 ("original", f"from {layer}: MSE {err['mse']:.4f}, SSIM {err['ssim']:.2f}")):
            ax.imshow(to_numpy(im[0]))
            ax.set_title(title, fontsize=10)
            ax.axis("off")
        _show(fig)

    return _explorer(
        show, layer=widgets.Dropdown(options=layers, value=layers[1], description="layer"),
        tv_weight=_slider(0.5, 0.0, 5.0, 0.25, "TV weight"), beta=_slider(2.0, 1.0, 3.0, 0.5, "beta"))


# --- texture and style (lectures 12-14) ---

def gram_explorer(model: nn.Module, image: torch.Tensor, layers: list[str] | None = None):
    """Pick a layer; see the Gram matrix of ``image``'s features there, and the two channels
    that co-occur most (the largest off-diagonal entry) side by side.

    ``image``: ``(1, 3, H, W)`` float in [0, 1]; ``layers`` default to
    :func:`vizlib.style_losses.default_style_layers`.
    """
    import ipywidgets as widgets


    layers = layers or style_losses.default_style_layers(model)
    with torch.no_grad():
        acts = {k: v[:1].detach().cpu() for k, v in render.layer_outputs(model, image, layers).items()}

    def show(layer: str):
        a = acts[layer]
        g = style_losses.gram_matrix(a)[0]
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
        fig.suptitle(f"channels {i} and {j} fire together most: G[{i},{j}] = {float(g[i, j]):.3g}")
        _show(fig, (axes[0], axes[2], axes[3]))

    return _explorer(show, layer=widgets.Dropdown(options=layers, value=layers[-1], description="layer"))


def style_explorer(model: nn.Module, content: torch.Tensor, style_image: torch.Tensor,
                   steps: int = 20, optimizer: str = "adam"):
    """Style transfer with sliders: the style weight (log scale), the TV weight and which
    style layers count. Each change reruns :func:`vizlib.style.style_transfer` for ``steps``
    steps (keep images small)."""
    import ipywidgets as widgets


    all_layers = style_losses.default_style_layers(model)
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
            _show(plot.show_images([content, style_image, res.image], ["content", "style",
                                   f"style weight {weight.value:.3g}, layers {', '.join(chosen)}"],
                                   ncols=3, size=3))

    box = _classes()[1]([widgets.HBox([weight, tv]), widgets.HBox(boxes), out])
    redraw = box._drawing(redraw)
    for w in [weight, tv, *boxes]:
        w.observe(redraw, names="value")
    redraw()
    return box


def stylize_explorer(transformer: nn.Module, images: torch.Tensor, names: list[str] | None = None):
    """Pick an image and a strength; see the trained network's stylisation blended with the
    original (``strength`` 0 = original, 1 = the network's output). ``images``: ``(B, 3, H, W)``."""
    import ipywidgets as widgets


    outs = fast_style.stylize(transformer, images)
    names = names or [f"image {i}" for i in range(len(images))]

    def show(index: int = 0, strength: float = 1.0):
        mixed = (1 - strength) * images[index] + strength * outs[index]
        _show(plot.show_images([images[index], mixed], ["original", f"strength {strength:.2f}"], ncols=2,
                               size=3.5))

    return _explorer(show, index=widgets.Dropdown(options=list(zip(names, range(len(images)))),
                                                  value=0, description="image"),
                     strength=widgets.FloatSlider(1.0, min=0.0, max=1.0, step=0.05, description="strength"))
