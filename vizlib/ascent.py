"""Lectures 08-11: images made by gradient ascent on the input, all through :func:`vizlib.render.render`.

With the weights frozen, change the *image* to make something inside the network large:

- :func:`class_visualization` — the image a class's score likes best, ``argmax_I S_c(I) - R(I)``
  (Simonyan, Vedaldi & Zisserman 2014; the regularisers of Yosinski et al. 2015).
- :func:`filter_visualization` — start from a plain grey image and maximise one channel's mean
  response, for many channels at once (Erhan et al. 2009; Chollet, *Deep Learning with Python* 5.4).
- :func:`fooling_image` — push a real image towards any class by tiny steps until the network
  says that class (Szegedy et al. 2014; Nguyen et al. 2015), measuring the change.
- :func:`deepdream` — amplify whatever a layer already sees: ascend that layer's energy, over
  several scales ("octaves") with jitter (Mordvintsev, Olah & Tyka 2015).
- :func:`invert_features` — find an image whose features at a layer match a given image's,
  with a total-variation prior (Mahendran & Vedaldi 2015); :func:`inversion_by_layer` measures
  how much detail each layer keeps (:func:`vizlib.metrics.reconstruction_error`: MSE, PSNR, SSIM).

Every function returns tensors (``(B, 3, H, W)`` float in [0, 1]) and numbers; drawing lives in
:mod:`vizlib.plot`. None changes the model (which must be in eval mode) or the caller's images.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import render as R
from .images import check_images
from .metrics import reconstruction_error
from .policy import model_device, to_model

__all__ = ["class_visualization", "filter_visualization", "fooling_image", "FoolingResult",
           "deepdream", "invert_features", "inversion_by_layer",
           "default_regularizers", "default_transforms"]


def _size(model: nn.Module, size: int | None) -> int:
    return int(size or getattr(model, "input_size", 224))


def default_transforms(size: int) -> list:
    """A shift of up to ``size / 16`` pixels (padded, never wrapped), scale 0.95-1.05, rotation up to 5 degrees."""
    return [R.shift(max(1, size // 16)), R.RandomScale((0.95, 1.05)), R.RandomRotate(5)]


def default_regularizers() -> list:
    """The seed's list, moderately set: L2, blur every 4 steps, clip small values and gradients."""
    return [R.L2(0.5), R.BlurEvery(4, 0.5), R.ClipSmallValues(10), R.ClipSmallGradients(10)]


def class_visualization(model: nn.Module, classes: int | Sequence[int], *, size: int | None = None,
                        steps: int = 200, lr: float = 0.05, param: str = "pixel",
                        regularizers: Sequence | None = None, transforms: Sequence | None = None,
                        optimizer: str = "adam", seed: int = 0, progress: bool | None = None
                        ) -> R.RenderResult:
    """The images that maximise class scores: ``I* = argmax_I S_c(I) - R(I)``.

    Args:
        model: a classifier in eval mode (``(B, 3, H, W)`` in [0, 1] -> logits).
        classes: one class index, or several (one image each, optimised as one batch).
        size: image side (default ``model.input_size``).
        steps, lr, optimizer, seed, progress: as for :func:`vizlib.render.render`.
        param: ``"pixel"`` (start grey plus faint seeded noise) or ``"fourier"``
            (:class:`vizlib.render.FourierImage`).
        regularizers: default :func:`default_regularizers` (``[]`` for none).
        transforms: default :func:`default_transforms` (``[]`` for none).

    Returns:
        :class:`vizlib.render.RenderResult`: ``image`` ``(len(classes), 3, size, size)``.
    """
    index = [classes] if isinstance(classes, int) else list(classes)
    s = _size(model, size)
    shape = (len(index), 3, s, s)
    p = _make_param(param, shape, seed, model_device(model))
    if regularizers is None:  # the defaults' between-step operations need pixels: drop them only
        regs = [r for r in default_regularizers() if param == "pixel" or not hasattr(r, "after_step")]
    else:  # the caller's list as given: render names any that cannot apply
        regs = list(regularizers)
    tfs = default_transforms(s) if transforms is None else list(transforms)
    return R.render(model, R.class_score(index), p, steps=steps, lr=lr, optimizer=optimizer,
                    transforms=tfs, regularizers=regs, seed=seed, progress=progress)


def _make_param(kind: str, shape, seed: int, device):
    if kind == "pixel":
        return R.PixelImage(shape=shape, seed=seed, device=device)
    if kind == "fourier":
        return R.FourierImage(shape, seed=seed, device=device)
    raise ValueError(f"param must be 'pixel' or 'fourier', got {kind!r}")


def filter_visualization(model: nn.Module, layer: str, channels: Sequence[int], *,
                         size: int | None = None, steps: int = 100, lr: float = 0.05,
                         param: str = "fourier", regularizers: Sequence = (),
                         transforms: Sequence | None = None, seed: int = 0,
                         progress: bool | None = None) -> R.RenderResult:
    """For each channel, the image that maximises its mean response at ``layer``.

    "Start from an empty image and maximise one filter's response" — here for many channels
    at once (image ``b`` maximises ``channels[b]``). Deeper layers give larger, more complex
    patterns: edges and colours, then textures, then parts.

    Returns:
        :class:`vizlib.render.RenderResult`: ``image`` ``(len(channels), 3, size, size)``.
    """
    channels = list(channels)
    s = _size(model, size)
    p = _make_param(param, (len(channels), 3, s, s), seed, model_device(model))
    tfs = default_transforms(s) if transforms is None else list(transforms)
    return R.render(model, R.channel(layer, channels), p, steps=steps, lr=lr, transforms=tfs,
                    regularizers=regularizers, seed=seed, progress=progress)


@dataclass
class FoolingResult:
    """What :func:`fooling_image` returns.

    image: the fooling image ``(1, 3, H, W)`` in [0, 1]; fooled: whether the model now
    predicts the target; steps: steps taken; linf / l2: the change ``image - original`` in
    pixel units 0-255 (largest absolute change; Euclidean norm over all values); rms: the
    root-mean-square change per value (0-255); history: the render history.
    """

    image: torch.Tensor
    fooled: bool
    steps: int
    linf: float
    l2: float
    rms: float
    history: dict = field(default_factory=dict)


def fooling_image(model: nn.Module, image: torch.Tensor, target: int, *, max_steps: int = 200,
                  lr: float = 0.5 / 255, margin: float = 0.0, seed: int = 0,
                  progress: bool | None = False) -> FoolingResult:
    """Change ``image`` a little at a time until ``model`` classifies it as ``target``.

    Gradient ascent on the target's score from the image itself, with Adam steps of about
    ``lr`` per value (default half a grey level), no regulariser, stopping as soon as the
    target's score leads every other class by more than ``margin``. Adam's steps are about
    ``lr`` in every value, so the largest change (L-inf) is at most about ``steps * lr``.

    Args:
        image: ``(1, 3, H, W)`` float in [0, 1] (not modified).
        target: the class index to reach.

    Returns:
        :class:`FoolingResult` with the change measured in 0-255 pixel units.
    """
    check_images(image)
    if image.shape[0] != 1:
        raise ValueError(f"fooling_image takes one image (1, 3, H, W); got a batch of {image.shape[0]}")
    x0 = to_model(image.detach(), model)

    def reached(x: torch.Tensor) -> bool:
        with torch.no_grad():
            logits = model(x)[0]
        others = torch.cat([logits[:target], logits[target + 1:]])
        return bool(logits[target] - others.max() > margin)

    if reached(x0):
        return FoolingResult(image.detach().clone(), True, 0, 0.0, 0.0, 0.0, {})
    done = []
    out = R.render(model, R.class_score(target), R.PixelImage(x0), steps=max_steps, lr=lr,
                   seed=seed, progress=progress,
                   callback=lambda step, x: done.append(reached(x)) or done[-1])
    delta = (out.image - x0) * 255
    return FoolingResult(out.image.to(image.device), bool(done and done[-1]), out.steps,
                         float(delta.abs().max()), float(delta.norm()),
                         float(delta.pow(2).mean().sqrt()), out.history)


def deepdream(model: nn.Module, image: torch.Tensor, layer: str | Sequence[str], *,
              octaves: int = 3, octave_scale: float = 1.4, steps: int = 10, lr: float = 0.004,
              jitter: int = 4, seed: int = 0, progress: bool | None = None) -> torch.Tensor:
    """Amplify what ``layer`` sees in ``image`` (Mordvintsev, Olah & Tyka 2015).

    At each scale, from the smallest (``image`` shrunk ``octave_scale ** (octaves - 1)`` times)
    to the full size, ascend the layer's energy :func:`vizlib.render.layer_energy` (whose
    gradient at the layer *is* its activation, up to a factor: the seed's "set the activation
    as the upstream gradient"), with random jitter. The detail added at one scale is enlarged
    and carried to the next, so patterns grow at several sizes.

    Args:
        image: ``(1, 3, H, W)`` float in [0, 1] (not modified).
        layer: one layer name, or several (energies added).
        octaves: number of scales (1 = full size only).
        steps: Adam steps per octave; ``lr`` about the pixel change per step.

    Returns:
        ``(1, 3, H, W)`` float in [0, 1].
    """
    check_images(image)
    layers = [layer] if isinstance(layer, str) else list(layer)
    objective = sum(R.layer_energy(name) for name in layers)
    base = to_model(image.detach(), model)
    h, w = base.shape[-2:]
    sizes = [(max(16, round(h / octave_scale ** k)), max(16, round(w / octave_scale ** k)))
             for k in reversed(range(octaves))]
    detail = torch.zeros_like(base[..., :sizes[0][0], :sizes[0][1]])
    for k, size in enumerate(sizes):
        shrunk = F.interpolate(base, size=size, mode="bilinear", align_corners=False) \
            if size != (h, w) else base
        detail = F.interpolate(detail, size=size, mode="bilinear", align_corners=False)
        start = (shrunk + detail).clamp(0, 1)
        out = R.render(model, objective, R.PixelImage(start), steps=steps, lr=lr,
                       transforms=[R.shift(jitter)] if jitter else [], seed=seed + k,
                       progress=progress)
        detail = out.image - shrunk
    return out.image.to(image.device)


def invert_features(model: nn.Module, image: torch.Tensor, layer: str, *, steps: int = 200,
                    lr: float = 0.05, tv_weight: float = 0.0, beta: float = 2.0,
                    param: str = "pixel", optimizer: str = "adam", seed: int = 0,
                    progress: bool | None = None) -> R.RenderResult:
    """Reconstruct an image from its features at ``layer``:
    ``x* = argmin_x ||phi(x) - phi_0||^2 / ||phi_0||^2 + lambda R_{V^beta}(x)``.

    Mahendran & Vedaldi 2015. The feature loss is normalised by the target's mean square, so
    ``tv_weight`` (lambda; applied to :class:`vizlib.render.TV`, i.e. TV per pixel) means the
    same at every layer. Starts from grey plus faint seeded noise.

    Args:
        image: ``(1, 3, H, W)`` float in [0, 1] whose features are inverted (not modified).

    Returns:
        :class:`vizlib.render.RenderResult` (``history["objective"]`` is minus the relative
        feature error).
    """
    check_images(image)
    x = to_model(image.detach(), model)
    with torch.no_grad():
        target = R.layer_outputs(model, x, layer)[layer]
    norm = float(target.pow(2).mean()) or 1.0
    objective = R.feature_distance(layer, target) / norm
    p = _make_param(param, tuple(x.shape), seed, x.device)
    regs = [R.TV(tv_weight, beta)] if tv_weight > 0 else []
    out = R.render(model, objective, p, steps=steps, lr=lr, optimizer=optimizer,
                   regularizers=regs, seed=seed, progress=progress)
    return dataclasses.replace(out, image=out.image.to(image.device))


def inversion_by_layer(model: nn.Module, image: torch.Tensor, layers: Sequence[str], **kwargs
                       ) -> tuple[torch.Tensor, list[dict]]:
    """Invert ``image``'s features at each of ``layers`` and measure what is lost.

    ``kwargs`` go to :func:`invert_features`. Returns ``(images, rows)``: the reconstructions
    ``(len(layers), 3, H, W)`` and one row per layer ``{"layer", "mse", "psnr", "ssim",
    "feature_error"}`` (the first three from :func:`vizlib.metrics.reconstruction_error`;
    ``feature_error``: the final relative feature distance).
    """
    images, rows = [], []
    for layer in layers:
        out = invert_features(model, image, layer, **kwargs)
        images.append(out.image)
        row = {"layer": layer, **reconstruction_error(out.image, image)}
        row["feature_error"] = -out.history["objective"][-1] if out.history["objective"] else float("nan")
        rows.append(row)
    return torch.cat(images), rows
