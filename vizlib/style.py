"""Gram matrices, the losses of neural style transfer, Gram texture synthesis and style transfer.

- Gatys, Ecker & Bethge, "Texture Synthesis Using Convolutional Neural Networks" (NeurIPS 2015):
  a texture is described by the Gram matrices of a convnet's feature maps at several layers;
  a new texture is made by optimising noise until its Gram matrices match.
- Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks" (CVPR 2016):
  optimise an image so that its deep features match a content image (feature reconstruction
  loss) and its Gram matrices match a style image (style loss), plus a total-variation prior.
- Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer" (CVPR 2017):
  colour preservation (luminance-only transfer) and coarse-to-fine (multi-scale) optimisation.
- Ustyuzhaninov et al., "What does it take to generate natural textures?" (ICLR 2017): even a
  convnet with random weights gives usable Gram texture descriptors — which is what makes the
  offline fallback here meaningful.

Images are ``(B, 3, H, W)`` float in [0, 1]; the model normalises them itself. Losses return
one value per image, ``(B,)``, so a batch of generated images can be optimised at once.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .precision import DEFAULT_PRECISION

# ----------------------------------------------------------------------------------------
# Gram matrix and the three losses
# ----------------------------------------------------------------------------------------


def _check_features(features, name: str = "features") -> torch.Tensor:
    if not isinstance(features, torch.Tensor):
        raise TypeError(f"{name} must be a tensor (B, C, H, W), got {type(features).__name__}")
    if features.ndim != 4:
        raise ValueError(f"{name} must be a feature map (B, C, H, W), got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {features.dtype}")
    return features


def gram_matrix(features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """The Gram matrix of each feature map: channel co-occurrence, with space thrown away.

    With ``F`` the map reshaped to ``(C, N)`` (``N = H * W`` positions), ``G = F F^T / N``:
    the average over positions of the outer product of the ``C``-dimensional feature vector
    with itself. Entry ``(i, j)`` is large when channels ``i`` and ``j`` fire together
    somewhere — whatever the place — which is why it describes texture (Gatys et al. 2015).
    It is symmetric and positive semi-definite. Unlike the covariance it keeps the means
    (``G = cov + mu mu^T``) and needs no centring pass.

    Args:
        features: ``(B, C, H, W)`` float.
        normalize: divide by ``N = H * W`` (default); ``False`` gives the raw ``F F^T``.

    Returns:
        ``(B, C, C)``, same dtype and device.
    """
    features = _check_features(features)
    b, c, h, w = features.shape
    if _channels_last(features):
        # channels-last maps (how vizlib runs its networks) are (B, N, C) in memory: use that
        # view rather than copy them into (B, C, N); the gradient then comes back channels-last
        # too, so autograd adds it to the network's own without a layout change
        flat = features.permute(0, 2, 3, 1).reshape(b, h * w, c).transpose(1, 2)
    else:
        flat = features.reshape(b, c, h * w)
    if _autocasting(flat.device):  # autocast picks the product's precision
        gram = torch.bmm(flat, flat.transpose(1, 2))
    else:
        gram = _SelfProduct.apply(flat)
    return gram / (h * w) if normalize else gram


def _channels_last(t: torch.Tensor) -> bool:
    try:
        return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
    except RuntimeError:  # inside torch.vmap, where memory formats cannot be asked
        return False


def _autocasting(device: torch.device) -> bool:
    try:
        return torch.is_autocast_enabled(device.type)
    except RuntimeError:  # a device type autocast does not know (meta)
        return False


class _SelfProduct(torch.autograd.Function):
    """``F F^T`` for ``F`` of shape ``(B, C, N)``, with the gradient ``(dG + dG^T) F`` in one
    batched product (autograd's ``bmm`` backward would take two products of the size of ``F``
    and add them: a third of a style step's Gram time). The backward is made of
    differentiable operations, so second derivatives (and ``torch.func`` transforms) work."""

    generate_vmap_rule = True

    @staticmethod
    def forward(flat):
        return torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(inputs[0])

    @staticmethod
    def backward(ctx, grad):
        (flat,) = ctx.saved_tensors
        sym = grad + grad.transpose(1, 2)
        if flat.transpose(1, 2).is_contiguous():
            # F is (B, N, C) in memory (channels-last): (sym F)^T = F^T sym, as sym is symmetric,
            # so the gradient is made in that layout too
            return torch.bmm(flat.transpose(1, 2), sym).transpose(1, 2)
        return torch.bmm(sym, flat)


def covariance_matrix(features: torch.Tensor) -> torch.Tensor:
    """The channel covariance of each feature map, ``(B, C, C)``: the Gram matrix of the
    centred features, ``gram - mu mu^T`` (for comparison in lecture 12)."""
    features = _check_features(features)
    mu = features.mean(dim=(2, 3))
    return gram_matrix(features) - mu.unsqueeze(2) * mu.unsqueeze(1)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Feature reconstruction loss: mean squared difference of feature maps, per image.

    Args:
        features: ``(B, C, H, W)`` of the generated images.
        target: ``(B, C, H, W)`` or ``(1, C, H, W)`` (broadcast) of the content image.

    Returns:
        ``(B,)``: ``mean_{c,h,w} (features - target)^2``.
    """
    features = _check_features(features)
    target = _check_features(target, "target")
    if target.shape[1:] != features.shape[1:] or target.shape[0] not in (1, features.shape[0]):
        raise ValueError(f"content target {tuple(target.shape)} does not match features "
                         f"{tuple(features.shape)}: same (C, H, W) and batch 1 or B expected")
    return (features - target).pow(2).flatten(1).mean(1)


def style_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Gram loss at one layer: mean squared difference of Gram matrices, per image.

    Args:
        features: ``(B, C, H, W)`` of the generated images.
        target_gram: ``(B, C, C)`` or ``(1, C, C)`` (broadcast): :func:`gram_matrix` of the
            style image's features (its size need not match the generated image's).

    Returns:
        ``(B,)``: ``mean_{i,j} (G_ij - A_ij)^2`` with ``G = gram_matrix(features)``. (Gatys
        et al. write ``1 / (4 N^2 M^2) sum (F F^T - A)^2`` for unnormalised Grams: the same up
        to a constant factor.)
    """
    gram = gram_matrix(features)
    if target_gram.ndim != 3 or target_gram.shape[1:] != gram.shape[1:] \
            or target_gram.shape[0] not in (1, gram.shape[0]):
        raise ValueError(f"style target {tuple(target_gram.shape)} does not match the Gram "
                         f"matrix {tuple(gram.shape)} of the features: (1 or B, C, C) expected")
    return (gram - target_gram).pow(2).flatten(1).mean(1)


def tv_loss(images: torch.Tensor, beta: float = 2.0) -> torch.Tensor:
    """Total variation, per image: ``mean_{i,j} ((x_{i,j+1} - x_{i,j})^2 + (x_{i+1,j} - x_{i,j})^2)^{beta/2}``.

    Summed over channels, averaged over the ``(H - 1) (W - 1)`` positions that have both a
    right and a lower neighbour (Mahendran & Vedaldi 2015's ``R_{V^beta}``). ``beta = 2``
    penalises squared differences (smooth images); ``beta = 1`` is the classic TV norm,
    which tolerates sharp edges. Computed by :func:`vizlib.render.total_variation` (the
    render loop's TV penalty), normalised per position.

    Args:
        images: ``(B, C, H, W)`` float, ``H, W >= 2``.
        beta: the exponent, ``> 0``.

    Returns:
        ``(B,)``.
    """
    images = _check_features(images, "images")
    if images.shape[2] < 2 or images.shape[3] < 2:
        raise ValueError(f"tv_loss needs H, W >= 2, got {tuple(images.shape)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    from .render import total_variation

    h, w = images.shape[-2:]
    return total_variation(images, beta) / ((h - 1) * (w - 1))


# ----------------------------------------------------------------------------------------
# Layer choices
# ----------------------------------------------------------------------------------------

#: Gatys et al.'s layers for VGG19.
VGG_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VGG_CONTENT_LAYER = "relu4_2"


def _relu_names(model) -> list[str]:
    from .models import layer_names

    names = layer_names(model)
    relus = [n for n in names if n.startswith("relu")]
    # conv-part ReLUs only (not classifier ReLUs such as relu6 / relu7 after fc layers)
    fcs = {n.replace("fc", "relu") for n in names if n.startswith("fc")}
    return [n for n in relus if n not in fcs]


def default_style_layers(model) -> list[str]:
    """Style layers by the model's layer names: Gatys et al.'s ``relu1_1 … relu5_1`` when
    the model has them (VGG), otherwise every convolutional-part ReLU, at most five, spread
    from first to last (ShapesNet: ``relu1 … relu4``). A model that names its own
    (``model.style_layers``, e.g. EfficientNet-Lite0) gets those."""
    if getattr(model, "style_layers", None):
        return list(model.style_layers)
    names = _relu_names(model)
    if all(n in names for n in VGG_STYLE_LAYERS):
        return list(VGG_STYLE_LAYERS)
    if not names:
        valid = list(getattr(model, "layer_paths", None) or (n for n, _ in model.named_modules() if n))
        raise ValueError(f"{getattr(model, 'name', type(model).__name__)} has no layer named relu*; pass "
                         f"style_layers explicitly, from: {', '.join(valid[:12])}{' …' if len(valid) > 12 else ''}")
    if len(names) <= 5:
        return names
    idx = [round(i * (len(names) - 1) / 4) for i in range(5)]
    return [names[i] for i in dict.fromkeys(idx)]


def default_content_layer(model) -> str:
    """Content layer by the model's layer names: ``relu4_2`` for VGG (Gatys et al.),
    otherwise the convolutional-part ReLU two thirds of the way through (ShapesNet:
    ``relu3``); ``model.content_layer`` when the model names one."""
    if getattr(model, "content_layer", None):
        return model.content_layer
    names = _relu_names(model)
    if VGG_CONTENT_LAYER in names:
        return VGG_CONTENT_LAYER
    if not names:
        raise ValueError(f"{getattr(model, 'name', type(model).__name__)} has no layer named "
                         f"relu*; pass content_layer explicitly")
    return names[max(0, round(2 * (len(names) - 1) / 3))]


# ----------------------------------------------------------------------------------------
# Targets: the content and style images' features, computed once
# ----------------------------------------------------------------------------------------

def _layer_outputs(model, images, layers) -> dict:
    from .render import layer_outputs

    return layer_outputs(model, images, layers)


class StyleTargets(dict):
    """What the generated image is compared with, computed once from the content and style
    images: a dict with

    - ``"content"``: ``(1, C, H, W)`` features of the content image at ``content_layer``
      (absent when there is no content image — texture synthesis);
    - ``"grams"``: ``{layer: (1, C, C)}`` Gram matrices of the style image(s), blended;
    - ``"content_layer"``, ``"style_layers"``, ``"layer_weights"`` (``{layer: float}``).
    """

    @property
    def layers(self) -> list[str]:
        """Every layer the losses read."""
        names = list(self["style_layers"])
        if self.get("content") is not None and self["content_layer"] not in names:
            names.append(self["content_layer"])
        return names


def _check_image(x, name) -> torch.Tensor:
    from .images import check_images

    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be an image tensor (1, 3, H, W) in [0, 1], got {type(x).__name__}")
    x = x.unsqueeze(0) if x.ndim == 3 else x
    return check_images(x, name)


@torch.no_grad()
def style_targets(model: nn.Module, content: torch.Tensor | None, styles, *,
                  style_layers: Sequence[str] | None = None, content_layer: str | None = None,
                  layer_weights: Mapping[str, float] | None = None,
                  style_blend: Sequence[float] | None = None) -> StyleTargets:
    """Run the model once on the content and style images and keep what the losses compare with.

    Args:
        model: the loss network (a :class:`~vizlib.models.CourseModel`, e.g. VGG19).
        content: ``(1, 3, H, W)`` in [0, 1], or ``None`` for texture synthesis.
        styles: one style image ``(1, 3, h, w)`` or a list of them (any sizes).
        style_layers: default :func:`default_style_layers`.
        content_layer: default :func:`default_content_layer`.
        layer_weights: the weight of each style layer. Default: ``1 / (L * mean(A_l^2))``
            for target Gram ``A_l`` of ``L`` layers — each layer's loss is measured relative
            to the size of its target, so every layer counts alike and the same
            ``style_weight`` works for any network (Gatys et al.'s ``1 / (4 N^2 M^2)``
            serves the same purpose).
        style_blend: with several style images, the weight of each (default equal); the
            target Gram at each layer is the weighted average of theirs.

    Returns:
        :class:`StyleTargets` (detached tensors on the model's device).
    """
    device = next(model.parameters()).device
    style_layers = list(style_layers) if style_layers is not None else default_style_layers(model)
    content_layer = content_layer or default_content_layer(model)
    if not style_layers:
        raise ValueError("style_layers is empty")
    styles = [styles] if isinstance(styles, torch.Tensor) else list(styles)
    if not styles:
        raise ValueError("give at least one style image")
    blend = [1.0 / len(styles)] * len(styles) if style_blend is None else [float(v) for v in style_blend]
    if len(blend) != len(styles) or sum(blend) <= 0 or min(blend) < 0:
        raise ValueError(f"style_blend needs {len(styles)} non-negative weights with a positive sum, got {style_blend}")
    blend = [v / sum(blend) for v in blend]
    if layer_weights is not None:
        unknown = [n for n in layer_weights if n not in style_layers]
        if unknown:
            raise ValueError(f"layer_weights names layers {unknown} that are not style layers {style_layers}")
    grams: dict = {}
    for weight, img in zip(blend, styles):
        img = _check_image(img, "style image").to(device)
        acts = _layer_outputs(model, img, style_layers)
        for n in style_layers:
            g = gram_matrix(acts[n][:1]) * weight
            grams[n] = grams[n] + g if n in grams else g
    if layer_weights is None:
        layer_weights = {n: 1.0 / (len(style_layers) * float(grams[n].pow(2).mean().clamp_min(1e-12)))
                         for n in style_layers}
    targets = StyleTargets(grams=grams, style_layers=style_layers, content_layer=content_layer,
                           layer_weights={n: float(layer_weights.get(n, 0.0)) for n in style_layers})
    if content is not None:
        content = _check_image(content, "content image").to(device)
        targets["content"] = _layer_outputs(model, content, [content_layer])[content_layer][:1].detach()
    return targets


def relative_content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`content_loss` divided by the target's mean square, ``(B,)``: 1 for an all-zero
    feature map, 0 for a perfect match, whatever the layer's scale."""
    scale = target.detach().pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return content_loss(features, target) / scale


def weighted_style_loss(activations: Mapping[str, torch.Tensor], targets: Mapping) -> torch.Tensor:
    """The style loss over several layers: ``sum_l w_l * style_loss(F_l, A_l)``, ``(B,)``.

    ``activations``: ``{layer: (B, C, H, W)}``; ``targets``: :class:`StyleTargets`.
    """
    total = None
    for n in targets["style_layers"]:
        term = targets["layer_weights"][n] * style_loss(activations[n], targets["grams"][n])
        total = term if total is None else total + term
    return total


# ----------------------------------------------------------------------------------------
# Objectives for the shared render loop (vizlib.render)
# ----------------------------------------------------------------------------------------

def content_term(targets: Mapping):
    """The content loss as a :class:`vizlib.render.Objective` (its value is the loss, ``(B,)``;
    maximise its negative): :func:`relative_content_loss` at ``targets["content_layer"]``."""
    from .render import Objective

    if targets.get("content") is None:
        raise ValueError("these targets have no content image (style_targets(model, None, …))")
    layer, target = targets["content_layer"], targets["content"]
    return Objective(lambda acts: relative_content_loss(acts[layer], target), (layer,), "content")


def style_term(targets: Mapping):
    """The style loss over the style layers as a :class:`vizlib.render.Objective` (its value
    is the loss, ``(B,)``; maximise its negative): :func:`weighted_style_loss`."""
    from .render import Objective

    return Objective(lambda acts: weighted_style_loss(acts, targets), targets["style_layers"], "style")


def _noise_param(shape, seed, device, noise=0.25):
    from .render import PixelImage

    return PixelImage(shape=shape, seed=seed, noise=noise, device=device)


def gram_texture(model: nn.Module, texture: torch.Tensor, size: int | tuple[int, int] = 128, *,
                 style_layers: Sequence[str] | None = None,
                 layer_weights: Mapping[str, float] | None = None, steps: int = 200,
                 optimizer: str = "lbfgs", lr: float | None = None, tv_weight: float = 0.0,
                 batch: int = 1, seed: int = 0, progress: bool | None = None, callback=None):
    """Gram-matrix texture synthesis (Gatys et al. 2015): optimise noise until its Gram
    matrices at ``style_layers`` match those of ``texture``.

    Runs :func:`vizlib.render.render` with the objective ``-style_term`` on a
    :class:`~vizlib.render.PixelImage` started from seeded noise.

    Args:
        model: the descriptor network in eval mode (VGG19, or offline the fallback).
        texture: ``(1, 3, h, w)`` in [0, 1], the example texture.
        size: the output side or ``(H, W)`` (need not match the example's).
        style_layers, layer_weights: see :func:`style_targets`.
        steps, optimizer, lr: the render loop's (``lr`` default 1 for L-BFGS, 0.05 for Adam).
        tv_weight: weight of a :class:`vizlib.render.TV` penalty (0: none).
        batch: how many textures to make at once (different noise each).
        seed: the noise.

    Returns:
        :class:`vizlib.render.RenderResult`: ``image (batch, 3, H, W)`` (on ``texture``'s device) and ``history``.
    """
    from .render import TV, RenderResult, render

    device = next(model.parameters()).device
    targets = style_targets(model, None, texture, style_layers=style_layers, layer_weights=layer_weights)
    h, w = (size, size) if isinstance(size, int) else size
    param = _noise_param((batch, 3, h, w), seed, device)
    lr = lr if lr is not None else (1.0 if optimizer == "lbfgs" else 0.05)
    regs = [TV(tv_weight)] if tv_weight else []
    result = render(model, -style_term(targets), param, steps=steps, lr=lr, optimizer=optimizer,
                    regularizers=regs, seed=seed, progress=progress, callback=callback)
    return RenderResult(image=result.image.to(texture.device), history=result.history)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
    from .images import resize

    return resize(x, size) if size is not None else x


def style_transfer(model: nn.Module, content: torch.Tensor, styles, *, content_weight: float = 1.0,
                   style_weight: float = 100.0, tv_weight: float = 1.0,
                   style_layers: Sequence[str] | None = None, content_layer: str | None = None,
                   layer_weights: Mapping[str, float] | None = None,
                   style_blend: Sequence[float] | None = None, init: str | torch.Tensor = "content",
                   optimizer: str = "lbfgs", steps: int = 200, lr: float | None = None,
                   scales: Sequence[int] | None = None, preserve_colors: bool = False,
                   seed: int = 0, progress: bool | None = None, callback=None,
                   precision: str = DEFAULT_PRECISION):
    """Neural style transfer by optimisation (Gatys, Ecker & Bethge 2016).

    Minimises ``content_weight * content + style_weight * style + tv_weight * TV`` over the
    pixels, i.e. runs :func:`vizlib.render.render` with the objective
    ``-(content_weight * content_term + style_weight * style_term)`` and a
    :class:`~vizlib.render.TV` penalty. The content and style targets are computed once per
    scale; each step runs the model only up to the deepest layer the losses read.

    Args:
        model: the loss network in eval mode (VGG19 online; offline the fallback).
        content: ``(1, 3, H, W)`` in [0, 1].
        styles: a style image ``(1, 3, h, w)`` or a list of them, blended by ``style_blend``.
        content_weight, style_weight, tv_weight: the loss weights (content and style losses
            are scale-free, see :func:`style_targets` and :func:`relative_content_loss`).
        style_layers, content_layer, layer_weights: default Gatys et al.'s layers for VGG19
            and the by-name choice of :func:`default_style_layers` otherwise.
        init: ``"content"`` (start from the content image), ``"noise"``, or an image.
        optimizer: ``"lbfgs"`` (Gatys et al.) or ``"adam"``; ``lr`` default 1 / 0.02.
        steps: optimiser steps per scale.
        scales: coarse-to-fine sizes of the shorter side, e.g. ``(128, 256)``: optimise at
            each in turn, starting each from the previous result enlarged (Gatys et al.
            2017). ``None``: the content image's own size.
        preserve_colors: keep the content image's colours — the result's luminance with the
            content's chrominance (YIQ), Gatys et al. 2017's luminance-only transfer applied
            after the optimisation.
        seed: the noise of ``init="noise"``.
        precision: :data:`vizlib.precision.DEFAULT_PRECISION` (``"float32"``: results that are
            the same on every machine), ``"bfloat16"`` or ``"auto"`` (bfloat16 where
            :func:`vizlib.precision.bf16_is_fast`: Ampere-or-newer GPUs, CPUs with AVX512-BF16
            or AMX; float32 elsewhere). ``"bfloat16"`` runs the network under bf16 autocast with
            the Gram matrices and losses in float32 (see :func:`vizlib.render.render`); targets
            stay float32; the step-0 loss is within 2 % of float32's and a VGG19 step 1.35x
            faster on this project's CPU.

    Returns:
        :class:`vizlib.render.RenderResult` (``history`` concatenated over scales, with
        ``"scale"`` giving each step's size).
    """
    from .render import TV, PixelImage, RenderResult, render

    device = next(model.parameters()).device
    home = content.device if isinstance(content, torch.Tensor) else device  # where the result goes
    content = _check_image(content, "content image").to(device)
    style_list = [styles] if isinstance(styles, torch.Tensor) else list(styles)
    base = style_targets(model, None, style_list, style_layers=style_layers, content_layer=content_layer,
                         layer_weights=layer_weights, style_blend=style_blend)
    lr = lr if lr is not None else (1.0 if optimizer == "lbfgs" else 0.02)
    if scales is not None and len(scales) == 0:
        raise ValueError("scales must name at least one size, or be None")
    sizes = list(scales) if scales is not None else [None]
    image, history = None, {}
    for size in sizes:
        here = _resize(content, size)
        targets = StyleTargets(base)
        targets["content"] = _layer_outputs(model, here, [base["content_layer"]])[base["content_layer"]].detach()
        if image is not None:
            start = _resize(image, tuple(here.shape[-2:]))
            param = PixelImage(start.clamp(0, 1))
        elif isinstance(init, torch.Tensor):
            param = PixelImage(_resize(_check_image(init, "init").to(device), tuple(here.shape[-2:])))
        elif init == "content":
            param = PixelImage(here)
        elif init == "noise":
            param = _noise_param(tuple(here.shape), seed, device)
        else:
            raise ValueError(f"init must be 'content', 'noise' or an image tensor, got {init!r}")
        objective = -(content_weight * content_term(targets) + style_weight * style_term(targets))
        regs = [TV(tv_weight)] if tv_weight else []
        result = render(model, objective, param, steps=steps, lr=lr, optimizer=optimizer,
                        regularizers=regs, seed=seed, progress=progress, callback=callback,
                        precision=precision)
        image = result.image
        for k, v in result.history.items():
            history.setdefault(k, []).extend(v)
        history.setdefault("scale", []).extend([tuple(here.shape[-2:])] * len(result.history["loss"]))
    if preserve_colors:
        image = preserve_colors_of(image, _resize(content, tuple(image.shape[-2:])))
    return RenderResult(image=image.to(home), history=history)


# YIQ (NTSC): Y is luminance, I and Q the chrominance
_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263],
                            [0.211456, -0.522591, 0.311135]])


def preserve_colors_of(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The luminance (Y of YIQ) of ``stylized`` with the chrominance (I, Q) of ``content``.

    Gatys et al. 2017, "Controlling Perceptual Factors in Neural Style Transfer": keeps the
    content's colours while taking the style's brush strokes. Both ``(B, 3, H, W)`` in
    [0, 1], same size; the result is clamped to [0, 1].
    """
    if stylized.shape != content.shape:
        raise ValueError(f"stylized {tuple(stylized.shape)} and content {tuple(content.shape)} must have the same shape")
    m = _RGB_TO_YIQ.to(stylized.device, stylized.dtype)
    to_yiq = lambda x: torch.einsum("ij,bjhw->bihw", m, x)  # noqa: E731
    y = to_yiq(stylized)[:, :1]
    iq = to_yiq(content)[:, 1:]
    rgb = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(m), torch.cat([y, iq], 1))
    return rgb.clamp(0, 1)


# ----------------------------------------------------------------------------------------
# Style images: famous public-domain paintings by URL, bundled textures offline
# ----------------------------------------------------------------------------------------

#: name -> (title, URL of a public-domain reproduction on Wikimedia Commons, bundled sample
#: used when the URL cannot be fetched). The paintings themselves are in the public domain.
PAINTINGS = {
    "starry_night": ("Vincent van Gogh, The Starry Night (1889)",
                     "https://upload.wikimedia.org/wikipedia/commons/thumb/e/ea/"
                     "Van_Gogh_-_Starry_Night_-_Google_Art_Project.jpg/"
                     "1024px-Van_Gogh_-_Starry_Night_-_Google_Art_Project.jpg",
                     "immunohistochemistry"),
    "great_wave": ("Katsushika Hokusai, The Great Wave off Kanagawa (c. 1831)",
                   "https://upload.wikimedia.org/wikipedia/commons/thumb/a/a5/"
                   "Tsunami_by_hokusai_19th_century.jpg/1024px-Tsunami_by_hokusai_19th_century.jpg",
                   "hubble_deep_field"),
    "composition_vii": ("Wassily Kandinsky, Composition VII (1913)",
                        "https://upload.wikimedia.org/wikipedia/commons/thumb/b/b4/"
                        "Vassily_Kandinsky%2C_1913_-_Composition_7.jpg/"
                        "1024px-Vassily_Kandinsky%2C_1913_-_Composition_7.jpg",
                        "coffee"),
}


def painting(name: str, size=None, *, timeout: float = 10.0) -> torch.Tensor:
    """A famous painting as a style image, ``(1, 3, H, W)`` in [0, 1].

    Downloaded from Wikimedia Commons (:data:`PAINTINGS`) through
    :func:`vizlib.images.load_image` when the network is there; otherwise — offline,
    ``VIZLIB_OFFLINE=1``, or any download failure — one line says so and a bundled,
    strongly textured sample image stands in. ``name`` may also be any path or URL, which is
    loaded as is (errors are not hidden). ``size`` as in :func:`vizlib.images.load_image`.
    """
    import sys

    from .images import ImageFetchError, load_image, sample_image

    if name not in PAINTINGS:
        return load_image(name, size=size, downscale=True, timeout=timeout)
    title, url, fallback = PAINTINGS[name]
    try:
        return load_image(url, size=size, downscale=True, timeout=timeout)
    except ImageFetchError as e:
        from . import config

        reason = "VIZLIB_OFFLINE is set" if config.offline() else str(e)
        print(f"vizlib: {title} not available ({reason}); using the bundled "
              f"'{fallback}' image instead", file=sys.stderr, flush=True)
        return sample_image(fallback, size=size)


# ----------------------------------------------------------------------------------------
# Comparing textures without a network
# ----------------------------------------------------------------------------------------

def texture_statistics(images: torch.Tensor, bins: int = 16) -> dict:
    """Two network-free texture statistics per image, to judge synthesised textures by
    something other than the loss they were optimised for.

    Returns ``{"histogram": (B, 3, bins)`` colour histograms (each channel sums to 1),
    ``"spectrum": (B, R)`` log radially-averaged power spectrum of the luminance (which
    scales the texture has)``}``. ``images``: ``(B, 3, H, W)`` in [0, 1].
    """
    images = _check_image(images, "images").double()
    b, _, h, w = images.shape
    idx = (images.clamp(0, 1) * bins).long().clamp(max=bins - 1)
    hist = torch.zeros(b, 3, bins, dtype=torch.float64, device=images.device)
    hist.scatter_add_(2, idx.flatten(2), torch.ones_like(idx.flatten(2), dtype=torch.float64))
    hist /= h * w
    lum = (images * torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64, device=images.device)
           .view(1, 3, 1, 1)).sum(1)
    lum = lum - lum.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(lum).abs().pow(2) / (h * w)
    fy = torch.fft.fftfreq(h, device=images.device).view(-1, 1)
    fx = torch.fft.fftfreq(w, device=images.device).view(1, -1)
    radius = (fy.pow(2) + fx.pow(2)).sqrt()
    nbins = min(h, w) // 2
    ring = (radius * 2 * nbins).long().clamp(max=nbins)  # ring 0 = DC ... nbins = corners
    spec = torch.zeros(b, nbins + 1, dtype=torch.float64, device=images.device)
    spec.scatter_add_(1, ring.flatten().expand(b, -1), power.flatten(1))
    counts = torch.bincount(ring.flatten(), minlength=nbins + 1).clamp(min=1)
    return {"histogram": hist, "spectrum": (spec / counts)[:, 1:nbins].add(1e-12).log10()}


def texture_distance(a: torch.Tensor, b: torch.Tensor) -> dict:
    """How far texture ``a`` is from texture ``b`` by :func:`texture_statistics` (``(1, 3, H, W)``
    each, sizes may differ if the spectra have equal length — resize first otherwise):
    ``{"histogram": total variation distance of the colour histograms, in [0, 1],
    "spectrum": mean absolute difference of the log10 power spectra}`` as floats."""
    sa, sb = texture_statistics(a), texture_statistics(b)
    if sa["spectrum"].shape != sb["spectrum"].shape:
        raise ValueError(f"spectra of different lengths {tuple(sa['spectrum'].shape)} vs "
                         f"{tuple(sb['spectrum'].shape)}: give images of the same size")
    return {"histogram": float(0.5 * (sa["histogram"] - sb["histogram"]).abs().sum(2).mean()),
            "spectrum": float((sa["spectrum"] - sb["spectrum"]).abs().mean())}
