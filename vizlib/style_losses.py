"""Gram matrices and the losses of neural style, the layers they read, and the targets they compare with.

The pieces that Gram texture synthesis and style transfer (:mod:`vizlib.style`, lectures
12-13) and fast style transfer (:mod:`vizlib.fast_style`, lecture 14) share:

- :func:`gram_matrix`, :func:`covariance_matrix`: channel co-occurrence of a feature map
  (Gatys, Ecker & Bethge, "Texture Synthesis Using Convolutional Neural Networks", NeurIPS 2015).
- :func:`content_loss`, :func:`style_loss`, :func:`tv_loss` and the scale-free
  :func:`relative_content_loss`, :func:`weighted_style_loss` (Gatys, Ecker & Bethge, "Image
  Style Transfer Using Convolutional Neural Networks", CVPR 2016; Mahendran & Vedaldi 2015's
  total variation).
- :func:`default_style_layers`, :func:`default_content_layer`: which layers, by name.
- :func:`style_targets` / :class:`StyleTargets`: the content and style images' features,
  computed once.

Shape:
    features ``(B, C, H, W)`` float; Gram matrices ``(B, C, C)``; images ``(B, 3, H, W)`` float
    in [0, 1] (the model normalises them itself). Losses return one value per image, ``(B,)``,
    so a batch of generated images can be optimised at once.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .images import check_images
from .layers import layer_names
from .policy import model_device
from .render import layer_outputs, total_variation
from .validate import check_shape

__all__ = ["gram_matrix", "covariance_matrix", "content_loss", "style_loss", "tv_loss",
           "relative_content_loss", "weighted_style_loss", "VGG_STYLE_LAYERS", "VGG_CONTENT_LAYER",
           "default_style_layers", "default_content_layer", "StyleTargets", "style_targets"]

# ----------------------------------------------------------------------------------------
# Gram matrix and the three losses
# ----------------------------------------------------------------------------------------


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
    features = check_shape(features, "B C H W", "features")
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
    features = check_shape(features, "B C H W", "features")
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
    features = check_shape(features, "B C H W", "features")
    target = check_shape(target, "B C H W", "target")
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
    images = check_shape(images, "B C H W", "images")
    if images.shape[2] < 2 or images.shape[3] < 2:
        raise ValueError(f"tv_loss needs H, W >= 2, got {tuple(images.shape)}")
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    h, w = images.shape[-2:]
    return total_variation(images, beta) / ((h - 1) * (w - 1))



# ----------------------------------------------------------------------------------------
# Layer choices
# ----------------------------------------------------------------------------------------

#: Gatys et al.'s layers for VGG19.
VGG_STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
VGG_CONTENT_LAYER = "relu4_2"


def _relu_names(model) -> list[str]:
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
        valid = layer_names(model)
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
    device = model_device(model)
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
        img = check_images(img, "style image").to(device)
        acts = layer_outputs(model, img, style_layers)
        for n in style_layers:
            g = gram_matrix(acts[n][:1]) * weight
            grams[n] = grams[n] + g if n in grams else g
    if layer_weights is None:
        layer_weights = {n: 1.0 / (len(style_layers) * float(grams[n].pow(2).mean().clamp_min(1e-12)))
                         for n in style_layers}
    targets = StyleTargets(grams=grams, style_layers=style_layers, content_layer=content_layer,
                           layer_weights={n: float(layer_weights.get(n, 0.0)) for n in style_layers})
    if content is not None:
        content = check_images(content, "content image").to(device)
        targets["content"] = layer_outputs(model, content, [content_layer])[content_layer][:1].detach()
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

