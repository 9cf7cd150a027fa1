"""The one policy of vizlib for pixels, devices, modes and dtypes, stated once and applied everywhere.

Pixels: images are ``(B, 3, H, W)`` float in [0, 1] everywhere in vizlib; a network is
normalised at its door (:class:`vizlib.models.CourseModel`), by default with the ImageNet
statistics :data:`IMAGENET_MEAN` / :data:`IMAGENET_STD`.

Device: every entry point accepts images on any device, computes on the model's device
and returns its maps and images on the images' device (summaries such as curves, scores and
feature tables are float CPU tensors, as their docstrings say). A CourseModel's door does the same for a
plain ``model(x)``: it moves ``x`` to the weights and the logits back to ``x``'s device.
Helpers that make images (``example_batch``, ``sample_image``, ``make_batch``) return them
on the CPU unless given ``device=``. Dtypes are never converted silently.

Mode: vizlib computes with a model in eval mode. It refuses a model that is in training
mode itself or that has a dropout or batch-norm layer in training mode (their outputs are
random or depend on the batch), with one message (:func:`require_eval`). vizlib never calls
``.eval()`` or ``.train()`` on a caller's model; it switches only networks it trains itself
(the fast-style transformer, ShapesNet), and restores them (:func:`eval_mode`).
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import nn

from .images import check_images

#: The ImageNet channel means and standard deviations that course networks normalise with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (or buffer); the CPU for a stateless module."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def to_model(images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """``images`` on ``model``'s device (the same tensor when it is already there)."""
    device = model_device(model)
    if images.device.type == "meta" and device.type != "meta":
        raise ValueError(f"the images are on the meta device and hold no data; the model is on {device} — "
                         f"make real images (e.g. torch.rand(..., device={str(device)!r}))")
    return images.to(device)


_RANDOM_IN_TRAINING = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout,
                       nn.modules.batchnorm._BatchNorm)


def require_eval(model: nn.Module, fn: str = "vizlib") -> None:
    """Refuse a model in training mode (the one mode check of vizlib; see the policy above).

    Raises ``ValueError`` when ``model`` itself is in training mode, or when any of its dropout
    or batch-norm layers is; the message names those layers and says to call ``model.eval()``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"{fn}: model must be a torch.nn.Module, got {type(model).__name__}")
    random_layers = [(n or type(model).__name__, type(m).__name__) for n, m in model.named_modules()
                     if m.training and isinstance(m, _RANDOM_IN_TRAINING)]
    if not model.training and not random_layers:
        return
    kinds = ", ".join(sorted({k for _, k in random_layers}))
    names = ", ".join(repr(n) for n, _ in random_layers[:3]) + (" …" if len(random_layers) > 3 else "")
    if model.training:
        detail = f"it is in training mode and has {kinds} layers ({names})" if random_layers else \
            "it is in training mode"
    else:
        detail = f"its {kinds} layers {names} are in training mode"
    raise ValueError(f"{fn} needs the model in eval mode, but {detail} — call model.eval() first "
                     f"(dropout and batch norm in training mode make results random or batch-dependent; "
                     f"vizlib never changes your model's mode)")


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Eval mode for the body, for networks vizlib trains itself; every flag restored after."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


def check_dtype(model: nn.Module, x: torch.Tensor) -> None:
    """Name a dtype mismatch between ``x`` and ``model`` before PyTorch does, cryptically."""
    if isinstance(x, torch.Tensor) and not x.is_floating_point():
        raise TypeError(f"the images are {x.dtype}, the model takes floats in [0, 1]: convert with "
                        "x.float() / 255 (8-bit pixels)")
    p = next(model.parameters(), None)
    if p is None or not isinstance(x, torch.Tensor):
        return
    if x.is_floating_point() and x.dtype != p.dtype and not torch.is_autocast_enabled(p.device.type):
        raise ValueError(f"the images are {x.dtype} but the model's weights are {p.dtype} — "
                         f"convert with x.to({p.dtype}) (or the model with model.to({x.dtype}))")


def fast_layout(images: torch.Tensor) -> torch.Tensor:
    """The same values in channels-last memory order when ``images`` is ``(B, C, H, W)``.

    Channels-last is the layout oneDNN (CPU) and cuDNN (GPU) convolve fastest: a ResNet-18
    forward + backward runs 1.1-1.3x faster, a VGG19 one about 2x, on this project's CPU. A
    network's outputs agree with the default layout's to float rounding. A *gradient* may not,
    at a few pixels: where a value lies within rounding of a ReLU's zero or of a max-pool
    window's runner-up, the two layouts can route that pixel's gradient differently (both are
    valid float32 answers). vizlib therefore uses it for forward passes (occlusion, rendering)
    and for gradients averaged over many passes (Integrated Gradients, SmoothGrad, style
    losses), not for one-pass saliency maps. The model itself is never converted; tensors that
    are not ``(B, C, H, W)`` come back unchanged.
    """
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return images.contiguous(memory_format=torch.channels_last)
    return images


def check_model_input(model: nn.Module, images: torch.Tensor, name: str = "images",
                      fn: str = "vizlib") -> torch.Tensor:
    """Validate ``images`` for ``model`` and return them on the model's device.

    ``images``: ``(B, 3, H, W)`` float in [0, 1] (see :func:`vizlib.images.check_images`) in the
    model's dtype, on any device. The model must be in eval mode (:func:`require_eval`, whose
    message names ``fn``).
    """
    check_images(images, name)
    require_eval(model, fn)
    check_dtype(model, images)
    return to_model(images, model)
