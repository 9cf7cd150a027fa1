"""Gram texture synthesis and neural style transfer by optimisation: the Gatys loop.

- Gatys, Ecker & Bethge, "Texture Synthesis Using Convolutional Neural Networks" (NeurIPS 2015):
  a texture is described by the Gram matrices of a convnet's feature maps at several layers;
  a new texture is made by optimising noise until its Gram matrices match (:func:`gram_texture`).
- Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural Networks" (CVPR 2016):
  optimise an image so that its deep features match a content image (feature reconstruction
  loss) and its Gram matrices match a style image (style loss), plus a total-variation prior
  (:func:`style_transfer`).
- Gatys et al., "Controlling Perceptual Factors in Neural Style Transfer" (CVPR 2017):
  colour preservation (luminance-only transfer, :func:`vizlib.color.preserve_colors_of`) and
  coarse-to-fine (multi-scale) optimisation.
- Ustyuzhaninov et al., "What does it take to generate natural textures?" (ICLR 2017): even a
  convnet with random weights gives usable Gram texture descriptors — which is what makes the
  offline fallback here meaningful.

Where the rest lives: the Gram matrix, the losses, the layer choices and the targets in
:mod:`vizlib.style_losses`; colour preservation in :mod:`vizlib.color`; the paintings in
:mod:`vizlib.samples`; network-free texture statistics in :mod:`vizlib.metrics`.

Images are ``(B, 3, H, W)`` float in [0, 1]; the model normalises them itself. Both loops run
the shared render loop (:func:`vizlib.render.render`) with the objectives
:func:`content_term` and :func:`style_term`.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import nn

from .color import preserve_colors_of
from .images import check_images, resize
from .policy import model_device
from .precision import DEFAULT_PRECISION
from . import render
from .render import TV, Objective, PixelImage, RenderResult, layer_outputs
from .style_losses import StyleTargets, relative_content_loss, style_targets, weighted_style_loss
from .validate import check_number

__all__ = ["content_term", "style_term", "gram_texture", "style_transfer"]

# ----------------------------------------------------------------------------------------
# Objectives for the shared render loop (vizlib.render)
# ----------------------------------------------------------------------------------------

def content_term(targets: Mapping):
    """The content loss as a :class:`vizlib.render.Objective` (its value is the loss, ``(B,)``;
    maximise its negative): :func:`~vizlib.style_losses.relative_content_loss` at ``targets["content_layer"]``."""
    if targets.get("content") is None:
        raise ValueError("these targets have no content image (style_targets(model, None, …))")
    layer, target = targets["content_layer"], targets["content"]
    return Objective(lambda acts: relative_content_loss(acts[layer], target), (layer,), "content")


def style_term(targets: Mapping):
    """The style loss over the style layers as a :class:`vizlib.render.Objective` (its value
    is the loss, ``(B,)``; maximise its negative): :func:`~vizlib.style_losses.weighted_style_loss`."""
    return Objective(lambda acts: weighted_style_loss(acts, targets), targets["style_layers"], "style")


def _noise_param(shape, seed, device, noise=0.25):
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
        style_layers, layer_weights: see :func:`~vizlib.style_losses.style_targets`.
        steps, optimizer, lr: the render loop's (``lr`` default 1 for L-BFGS, 0.05 for Adam).
        tv_weight: weight of a :class:`vizlib.render.TV` penalty (0: none).
        batch: how many textures to make at once (different noise each).
        seed: the noise.

    Returns:
        :class:`vizlib.render.RenderResult`: ``image (batch, 3, H, W)`` (on ``texture``'s device) and ``history``.
    """
    device = model_device(model)
    targets = style_targets(model, None, texture, style_layers=style_layers, layer_weights=layer_weights)
    h, w = (size, size) if isinstance(size, int) else size
    param = _noise_param((batch, 3, h, w), seed, device)
    lr = lr if lr is not None else (1.0 if optimizer == "lbfgs" else 0.05)
    regs = [TV(tv_weight)] if tv_weight else []
    result = render.render(model, -style_term(targets), param, steps=steps, lr=lr, optimizer=optimizer,
                    regularizers=regs, seed=seed, progress=progress, callback=callback)
    return RenderResult(image=result.image.to(texture.device), history=result.history)


def _resize(x: torch.Tensor, size) -> torch.Tensor:
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
            are scale-free, see :func:`~vizlib.style_losses.style_targets` and
            :func:`~vizlib.style_losses.relative_content_loss`).
        style_layers, content_layer, layer_weights: default Gatys et al.'s layers for VGG19
            and the by-name choice of :func:`~vizlib.style_losses.default_style_layers` otherwise.
        init: ``"content"`` (start from the content image), ``"noise"``, or an image.
        optimizer: ``"lbfgs"`` (Gatys et al.) or ``"adam"``; ``lr`` default 1 / 0.02.
        steps: optimiser steps per scale.
        scales: coarse-to-fine sizes of the shorter side, e.g. ``(128, 256)``: optimise at
            each in turn, starting each from the previous result enlarged (Gatys et al.
            2017). ``None``: the content image's own size.
        preserve_colors: keep the content image's colours — the result's luminance with the
            content's chrominance (YIQ), Gatys et al. 2017's luminance-only transfer applied
            after the optimisation (:func:`vizlib.color.preserve_colors_of`).
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
    content_weight, style_weight, tv_weight = (check_number(v, k, minimum=0.0) for k, v in (
        ("content_weight", content_weight), ("style_weight", style_weight), ("tv_weight", tv_weight)))
    lr = None if lr is None else check_number(lr, "lr", positive=True)
    device = model_device(model)
    home = content.device if isinstance(content, torch.Tensor) else device  # where the result goes
    content = check_images(content, "content image").to(device)
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
        targets["content"] = layer_outputs(model, here, [base["content_layer"]])[base["content_layer"]].detach()
        if image is not None:
            start = _resize(image, tuple(here.shape[-2:]))
            param = PixelImage(start.clamp(0, 1))
        elif isinstance(init, torch.Tensor):
            param = PixelImage(_resize(check_images(init, "init").to(device), tuple(here.shape[-2:])))
        elif init == "content":
            param = PixelImage(here)
        elif init == "noise":
            param = _noise_param(tuple(here.shape), seed, device)
        else:
            raise ValueError(f"init must be 'content', 'noise' or an image tensor, got {init!r}")
        objective = -(content_weight * content_term(targets) + style_weight * style_term(targets))
        regs = [TV(tv_weight)] if tv_weight else []
        result = render.render(model, objective, param, steps=steps, lr=lr, optimizer=optimizer,
                        regularizers=regs, seed=seed, progress=progress, callback=callback,
                        precision=precision)
        image = result.image
        for k, v in result.history.items():
            history.setdefault(k, []).extend(v)
        history.setdefault("scale", []).extend([tuple(here.shape[-2:])] * len(result.history["loss"]))
    if preserve_colors:
        image = preserve_colors_of(image, _resize(content, tuple(image.shape[-2:])))
    return RenderResult(image=image.to(home), history=history)
