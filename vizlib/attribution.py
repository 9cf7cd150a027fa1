"""Lectures 05-07 — attribution: which pixels mattered for the network's answer?

Every method here has one calling convention::

    heatmap = method(model, images, target=None, **settings)      # (B, H, W)

- ``model``: a classifier in **eval mode** taking ``(B, 3, H, W)`` images in [0, 1] (a
  :class:`~vizlib.models.CourseModel` normalises at its door) and returning logits ``(B, K)``.
- ``images``: ``(B, 3, H, W)`` float in [0, 1]; moved to the model's device for the work,
  the map comes back on the images' device in the images' dtype.
- ``target``: what is explained. ``None`` = each image's top class; an ``int`` = that class
  for every image; a sequence / 1-D tensor of ``B`` class indices; or a callable
  ``score(logits) -> (B,)`` (e.g. ``lambda z: z.softmax(1)[:, 3]``). Class scores are the
  raw logits, as in the lectures.
- layers are given by name (``"relu4"``, ``"layer4"``, ``"conv5_3"``; see
  :func:`vizlib.layers.get_layer`).

Methods, with their papers:

==========================  ==============================================================
:func:`occlusion`           Zeiler & Fergus 2014, "Visualizing and Understanding ConvNets"
:func:`saliency`            Simonyan et al. 2014, "Deep Inside Convolutional Networks"
:func:`guided_backprop`     Springenberg et al. 2015, "Striving for Simplicity"
:func:`deconvnet`           Zeiler & Fergus 2014 (the deconvnet's ReLU rule)
:func:`cam`                 Zhou et al. 2016, "Learning Deep Features for Discriminative Localization"
:func:`grad_cam`            Selvaraju et al. 2017, "Grad-CAM"
:func:`guided_grad_cam`     Selvaraju et al. 2017
:func:`smoothgrad`          Smilkov et al. 2017, "SmoothGrad"
:func:`integrated_gradients` Sundararajan et al. 2017, "Axiomatic Attribution for Deep Networks"
:func:`grad_cam_pp`         Chattopadhyay et al. 2018, "Grad-CAM++"
:func:`xgrad_cam`           Fu et al. 2020, "Axiom-based Grad-CAM"
:func:`layer_cam`           Jiang et al. 2021, "LayerCAM"
==========================  ==============================================================

The four gradient-weighted CAMs share one frame, :func:`gradient_cam`; each is a weights
function ``weights(A, dA)`` of the layer's activations and their gradients
(:func:`grad_cam_weights` …), so another variant is one small function.

No side effects: the model's weights, train/eval mode, ``requires_grad`` flags and ``.grad``
and the caller's tensors are untouched (gradients are taken with ``torch.autograd.grad`` on
a copy of the images, never with ``backward()``); hooks live only inside context managers
from :mod:`vizlib.hooks` and are gone when a call returns or raises.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from .hooks import capture_activations, capture_inputs, relu_backward_rule
from .layers import get_layer
from .models import CourseModel
from .policy import check_model_input, fast_layout
from .progress import PROGRESS_PASSES, progress_bar
from .validate import check_positive_int

__all__ = ["METHODS", "occlusion", "occlusion_scores", "input_gradients", "saliency",
           "guided_backprop", "deconvnet", "cam", "gradient_cam", "grad_cam", "guided_grad_cam", "grad_cam_pp",
           "xgrad_cam", "layer_cam", "grad_cam_weights", "grad_cam_pp_weights", "xgrad_cam_weights",
           "layer_cam_weights",
           "smoothgrad", "integrated_gradients", "class_scores", "default_cam_layer"]



# ----------------------------------------------------------------------------------------
# Shared plumbing
# ----------------------------------------------------------------------------------------

def _prepare(model: nn.Module, images: torch.Tensor, fn: str) -> torch.Tensor:
    """Validate; return a detached copy of ``images`` on the model's device (the device policy
    of :mod:`vizlib.policy`: results go back to the images' device in :func:`_finish`)."""
    return check_model_input(model, images.detach(), f"{fn}: images", fn).clone()


def _finish(result: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    return result.detach().to(device=images.device, dtype=images.dtype,
                              memory_format=torch.contiguous_format)


def class_indices(target, n: int, logits: torch.Tensor) -> torch.Tensor:
    """Turn ``None`` / int / sequence targets into ``(n,)`` class indices, checked."""
    k = logits.shape[1]
    if target is None:
        idx = logits.detach().argmax(1)
    elif isinstance(target, (bool, float)):
        raise TypeError(f"target must be a class index, a sequence of them or a callable, got {target!r}")
    elif isinstance(target, (int, np.integer)):
        idx = torch.full((n,), int(target), dtype=torch.long, device=logits.device)
    else:
        try:
            idx = torch.as_tensor(target, device=logits.device)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"target must be None, a class index, a sequence of B class indices or "
                            f"a callable score(logits) -> (B,); got {type(target).__name__}") from None
        if idx.dtype.is_floating_point or idx.dtype == torch.bool or idx.is_complex():
            raise TypeError(f"target class indices must be integers, got dtype {idx.dtype}")
        idx = idx.long().reshape(-1)
        if idx.numel() == 1:
            idx = idx.expand(n)
        if idx.numel() != n:
            raise ValueError(f"target gives {idx.numel()} class indices for a batch of {n} images")
    if bool(((idx < 0) | (idx >= k)).any()):
        bad = int(idx[(idx < 0) | (idx >= k)][0])
        raise ValueError(f"target class {bad} is out of range for a model with {k} classes (0..{k - 1})")
    return idx


def class_scores(logits: torch.Tensor, target) -> torch.Tensor:
    """The score each map explains: ``(B, K)`` logits and a target -> ``(B,)``.

    ``target`` as in the module docstring; a callable gets the logits and must return ``(B,)``.
    """
    if logits.ndim != 2:
        raise ValueError(f"the model must return logits of shape (B, K); got {tuple(logits.shape)}")
    if callable(target):
        score = target(logits)
        if not isinstance(score, torch.Tensor) or score.shape != (logits.shape[0],):
            got = tuple(score.shape) if isinstance(score, torch.Tensor) else type(score).__name__
            raise ValueError(f"a target callable must return one score per image, shape "
                             f"({logits.shape[0]},); got {got}")
        return score
    idx = class_indices(target, logits.shape[0], logits)
    return logits.gather(1, idx[:, None])[:, 0]


def _fixed_target(model: nn.Module, x: torch.Tensor, target, logits: torch.Tensor | None = None):
    """Resolve a target once on the clean images, so that perturbed copies (noise, paths,
    occluders) explain the same class: a callable passes through, anything else becomes
    ``(B,)`` class indices (``None`` = the clean images' top classes). ``logits``: the clean
    images' logits when the caller has them already (else one pass of ``model``)."""
    if callable(target):
        return target
    if logits is None:
        with torch.no_grad():
            logits = model(x)
    if logits.ndim != 2:
        raise ValueError(f"the model must return logits of shape (B, K); got {tuple(logits.shape)}")
    return class_indices(target, x.shape[0], logits)


def _repeat_target(target, times: int):
    """The target for ``times`` consecutive copies of each image."""
    return target if callable(target) else target.repeat_interleave(times)


def _rows(target, start: int, stop: int):
    return target if callable(target) else target[start:stop]


def _upsample(maps: torch.Tensor, size) -> torch.Tensor:
    """``(B, h, w)`` -> ``(B, H, W)``, bilinear with half-pixel centres (``align_corners=False``)."""
    return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]


# ----------------------------------------------------------------------------------------
# Occlusion (lecture 05)
# ----------------------------------------------------------------------------------------

def _fill_value(x: torch.Tensor, fill) -> torch.Tensor:
    """``(B, 3, 1, 1)`` fill colours: ``"mean"`` = each image's mean colour, a number, or 3 numbers."""
    if isinstance(fill, str):
        if fill != "mean":
            raise ValueError(f"fill must be 'mean', a number in [0, 1] or an RGB triple; got {fill!r}")
        return x.mean(dim=(2, 3), keepdim=True)
    value = torch.as_tensor(fill, dtype=x.dtype, device=x.device).reshape(-1)
    if value.numel() not in (1, 3) or bool(((value < 0) | (value > 1)).any()):
        raise ValueError(f"fill must be 'mean', a number in [0, 1] or an RGB triple in [0, 1]; got {fill!r}")
    return value.reshape(1, -1, 1, 1).expand(x.shape[0], 3, 1, 1)


def _windows(h: int, w: int, patch: int, stride: int, device) -> tuple[torch.Tensor, int, int]:
    """Boolean masks ``(P, H, W)`` of every patch position, row-major, and the grid ``(nH, nW)``.

    Positions start at 0 and step by ``stride`` until the patch reaches the far edge (the
    last patch may hang over the edge and is clipped), so every pixel is covered.
    """
    if patch > min(h, w):
        raise ValueError(f"patch {patch} is larger than the {h}x{w} image")
    ys = list(range(0, max(h - patch, 0) + stride, stride))
    xs = list(range(0, max(w - patch, 0) + stride, stride))
    ys = [y for y in ys if y < h]
    xs = [x for x in xs if x < w]
    rows = torch.arange(h, device=device)
    cols = torch.arange(w, device=device)
    in_y = torch.stack([(rows >= y) & (rows < y + patch) for y in ys])  # (nH, H)
    in_x = torch.stack([(cols >= x) & (cols < x + patch) for x in xs])  # (nW, W)
    masks = (in_y[:, None, :, None] & in_x[None, :, None, :]).reshape(-1, h, w)
    return masks, len(ys), len(xs)


def _progress(passes: int, desc: str, progress: bool | None):
    """A bar over ``passes`` forward/backward passes (:func:`vizlib.progress.progress_bar`;
    ``progress=None``: shown when there are at least :data:`PROGRESS_PASSES`, imported from
    :mod:`vizlib.progress`)."""
    return progress_bar(passes, desc, progress, unit="pass", threshold=PROGRESS_PASSES)


@torch.no_grad()
def _occlusion_sweep(model, images, target, patch, stride, fill, batch_size, fn, progress=None):
    x = _prepare(model, images, fn)
    patch = check_positive_int(patch, "patch")
    stride = check_positive_int(patch if stride is None else stride, "stride")
    if stride > patch:
        raise ValueError(f"stride {stride} is larger than patch {patch}: some pixels would never be occluded")
    batch_size = check_positive_int(batch_size, "batch_size")
    b, _, h, w = x.shape
    forward, pixels, colours = _occlusion_forward(model, x, _fill_value(x, fill))
    # the one clean pass, through the same forward as the occluded copies (BatchNorm folded, as
    # theirs; model(x) differed by up to 3e-5): the target's classes and the base scores
    logits = forward(pixels)
    target = _fixed_target(model, x, target, logits)
    base = class_scores(logits, target)
    masks, nh, nw = _windows(h, w, patch, stride, x.device)
    # every batch of copies is written into one channels-last buffer (no allocation, no layout copy)
    buffer = torch.empty((min(batch_size, masks.shape[0]), *x.shape[1:]), dtype=pixels.dtype,
                         device=x.device, memory_format=torch.channels_last)
    scores = torch.empty(b, masks.shape[0], dtype=base.dtype, device=x.device)
    with _progress(b * -(-masks.shape[0] // batch_size), fn, progress) as bar:
        for i in range(b):
            t_i = target if callable(target) else int(target[i])
            for start in range(0, masks.shape[0], batch_size):
                m = masks[start:start + batch_size, None]                     # (p, 1, H, W)
                copies = torch.where(m, colours[i:i + 1], pixels[i:i + 1], out=buffer[:m.shape[0]])
                scores[i, start:start + m.shape[0]] = class_scores(forward(copies), t_i)
                bar.update(1)
    return x, base, scores, masks, nh, nw


def _occlusion_forward(model: nn.Module, x: torch.Tensor, colours: torch.Tensor):
    """``(forward, pixels, colours)`` for the occluded copies: ``forward(copies)`` equals
    ``model(copies)`` for copies made of ``pixels`` and ``colours``, with the work that is the same
    for every batch done once here: the model's convolution weights in channels-last order (as
    oneDNN / cuDNN convolve channels-last images; the model itself is not changed) and, for a
    :class:`~vizlib.models.CourseModel` without hooks of its own, the normalisation at its door
    (normalising the fill colour and the image once gives the same numbers as normalising each
    copy, pixel by pixel)."""
    door = type(model).forward is CourseModel.forward and not (model._forward_hooks or model._forward_pre_hooks)
    net = _fold_batch_norms(model.net if door else model)
    weights = {name: p.contiguous(memory_format=torch.channels_last)
               for name, p in net.named_parameters() if p.dim() == 4}

    def forward(copies):
        return torch.func.functional_call(net, weights, (copies,), strict=False)

    if door:
        return forward, model.normalize(x), model.normalize(colours)
    return forward, x, colours


def _fold_batch_norms(net: nn.Module) -> nn.Module:
    """``net`` with each eval-mode ``BatchNorm2d`` that directly follows a ``Conv2d`` folded into
    that convolution (one pass over the features instead of two; scores agree with the unfolded
    network's to float rounding). The result is a ``torch.fx`` graph of ``net`` that shares every
    other module, with the folded weights made channels-last; ``net`` is not changed. ``net``
    itself comes back where nothing folds, where any module has a forward hook (the graph would
    skip it) and where it cannot be traced."""
    if not any(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
        return net
    hooks = [torch.nn.modules.module._global_forward_hooks, torch.nn.modules.module._global_forward_pre_hooks]
    if any(hooks) or any(m._forward_hooks or m._forward_pre_hooks for m in net.modules()):
        return net
    try:
        graph = fx.symbolic_trace(net)
    except Exception:  # control flow on tensors, untraceable calls: run it as it is
        return net
    modules = dict(graph.named_modules())
    folded = 0
    for node in list(graph.graph.nodes):
        bn = modules.get(node.target) if node.op == "call_module" else None
        if type(bn) is not nn.BatchNorm2d or bn.training or bn.running_mean is None or len(node.args) != 1:
            continue
        conv_node = node.args[0]
        conv = modules.get(conv_node.target) if isinstance(conv_node, fx.Node) \
            and conv_node.op == "call_module" else None
        if type(conv) is not nn.Conv2d or conv.padding_mode != "zeros" or len(conv_node.users) != 1 \
                or conv_node.kwargs or len(conv_node.args) != 1:
            continue
        weight, bias = fuse_conv_bn_weights(conv.weight.contiguous(memory_format=torch.channels_last), conv.bias,
                                            bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
        name = f"_folded_conv_bn_{folded}"
        graph.register_parameter(name + "_weight", weight)
        graph.register_parameter(name + "_bias", bias)
        with graph.graph.inserting_after(conv_node):
            w_node = graph.graph.get_attr(name + "_weight")
            with graph.graph.inserting_after(w_node):
                b_node = graph.graph.get_attr(name + "_bias")
                with graph.graph.inserting_after(b_node):
                    replacement = graph.graph.call_function(F.conv2d, (conv_node.args[0], w_node, b_node, conv.stride,
                                                                       conv.padding, conv.dilation, conv.groups))
        node.replace_all_uses_with(replacement)
        graph.graph.erase_node(node)
        graph.graph.erase_node(conv_node)
        folded += 1
    if not folded:
        return net
    graph.delete_all_unused_submodules()  # the folded convolutions and norms: their weights stay out
    graph.recompile()
    return graph


def occlusion_scores(model: nn.Module, images: torch.Tensor, target=None, *, patch: int = 8,
                     stride: int | None = None, fill="mean", batch_size: int = 64,
                     progress: bool | None = None) -> torch.Tensor:
    """The target's score with a grey patch slid over the image (Zeiler & Fergus 2014).

    Args:
        model, images, target: as in the module docstring.
        patch: side of the square occluder in pixels.
        stride: step between patch positions (default ``patch``); at most ``patch``.
        fill: the occluder's colour: ``"mean"`` (each image's mean colour, as in the lecture),
            a number in [0, 1] or an RGB triple.
        batch_size: occluded copies per forward pass.
        progress: a progress bar over the forward passes (``None``: when there are at least
            :data:`PROGRESS_PASSES`).

    Returns:
        ``(B, nH, nW)``: the score with the patch at each position (row-major, top-left
        corners ``0, stride, 2*stride, …``). A callable target must score each row of a batch
        of copies on its own.
    """
    _, _, scores, _, nh, nw = _occlusion_sweep(model, images, target, patch, stride, fill,
                                               batch_size, "occlusion_scores", progress)
    return _finish(scores.reshape(-1, nh, nw), images)


def occlusion(model: nn.Module, images: torch.Tensor, target=None, *, patch: int = 8,
              stride: int | None = None, fill="mean", batch_size: int = 64,
              progress: bool | None = None) -> torch.Tensor:
    """Occlusion sensitivity map (Zeiler & Fergus 2014): how much the score drops when a
    patch covering each pixel is greyed out.

    For each patch position ``p`` the drop is ``score(x) - score(x with patch p filled)``;
    a pixel's value is the mean drop over the patch positions that cover it. The occluded
    copies run ``batch_size`` at a time. Settings as in :func:`occlusion_scores`.

    Returns:
        ``(B, H, W)``, signed: positive where hiding the pixel lowers the score.
        Equals Captum's ``Occlusion`` with ``sliding_window_shapes=(3, patch, patch)``,
        ``strides=(3, stride, stride)`` and a scalar baseline, on any channel.
    """
    x, base, scores, masks, _, _ = _occlusion_sweep(model, images, target, patch, stride, fill,
                                                    batch_size, "occlusion", progress)
    drops = base[:, None] - scores                                    # (B, P)
    m = masks.to(drops.dtype)
    total = torch.einsum("bp,phw->bhw", drops, m)
    count = m.sum(0).clamp(min=1)
    return _finish(total / count, images)


# ----------------------------------------------------------------------------------------
# Gradients with respect to the pixels (lecture 06)
# ----------------------------------------------------------------------------------------

def _grad_wrt_input(model, x, target, rule=None) -> torch.Tensor:
    """``d score / d x`` for a prepared copy ``x`` (``rule``: None, "guided", "deconvnet")."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        if rule is None:
            score = class_scores(model(x), target)
            (grad,) = torch.autograd.grad(score.sum(), x)
        else:
            with relu_backward_rule(model, rule):
                score = class_scores(model(x), target)
                (grad,) = torch.autograd.grad(score.sum(), x)
    return grad


def input_gradients(model: nn.Module, images: torch.Tensor, target=None, *,
                    rule: str | None = None) -> torch.Tensor:
    """The gradient of the target's score with respect to every input value.

    ``rule``: ``None`` (the plain gradient, Simonyan et al. 2014), ``"guided"`` (guided
    backpropagation, Springenberg et al. 2015) or ``"deconvnet"`` (Zeiler & Fergus 2014):
    how the gradient passes the ``nn.ReLU`` modules (see :func:`vizlib.hooks.relu_backward_rule`).

    Returns:
        ``(B, 3, H, W)`` signed, in the pixel space of ``images`` (the model's normalisation
        is part of the differentiated function). Show it with colour to see guided
        backprop's "pictures".
    """
    x = _prepare(model, images, "input_gradients")
    return _finish(_grad_wrt_input(model, x, target, rule), images)


def saliency(model: nn.Module, images: torch.Tensor, target=None) -> torch.Tensor:
    """Vanilla saliency map (Simonyan et al. 2014): ``max_c |d score / d x_c|`` per pixel.

    Returns ``(B, H, W)`` >= 0. Captum's ``Saliency(abs=True)`` gives the per-channel
    ``|grad|``; its maximum over channels is this map.
    """
    x = _prepare(model, images, "saliency")
    return _finish(_grad_wrt_input(model, x, target).abs().amax(1), images)


def guided_backprop(model: nn.Module, images: torch.Tensor, target=None) -> torch.Tensor:
    """Guided backpropagation (Springenberg et al. 2015): the gradient with every ReLU passing
    only positive gradient where its input was positive; ``max_c |.|`` per pixel.

    Returns ``(B, H, W)`` >= 0 (Captum's ``GuidedBackprop``, ``abs().amax(1)``). The model
    must use ``nn.ReLU`` modules. For the signed colour image use
    ``input_gradients(..., rule="guided")``.
    """
    x = _prepare(model, images, "guided_backprop")
    return _finish(_grad_wrt_input(model, x, target, "guided").abs().amax(1), images)


def deconvnet(model: nn.Module, images: torch.Tensor, target=None) -> torch.Tensor:
    """The deconvnet's backward pass (Zeiler & Fergus 2014): every ReLU passes the positive
    part of the gradient, wherever its input was; ``max_c |.|`` per pixel.

    Returns ``(B, H, W)`` >= 0 (Captum's ``Deconvolution``, ``abs().amax(1)``).
    """
    x = _prepare(model, images, "deconvnet")
    return _finish(_grad_wrt_input(model, x, target, "deconvnet").abs().amax(1), images)


def smoothgrad(model: nn.Module, images: torch.Tensor, target=None, *, samples: int = 16,
               noise: float = 0.15, seed: int = 0, batch_size: int = 64,
               progress: bool | None = None) -> torch.Tensor:
    """SmoothGrad (Smilkov et al. 2017): the saliency map averaged over noisy copies.

    Each copy is ``x + N(0, sigma^2)`` with ``sigma = noise * (max(x) - min(x))`` per image
    (not clipped: the noise is part of the method). Noise comes from a ``torch.Generator``
    seeded with ``seed``; the clean image's top class is explained when ``target`` is None.

    Returns ``(B, H, W)`` >= 0: the mean over ``samples`` copies of ``max_c |grad|``.
    ``progress``: a bar over the backward passes (``None``: when there are at least
    :data:`PROGRESS_PASSES`).
    """
    x = _prepare(model, images, "smoothgrad")
    samples = check_positive_int(samples, "samples")
    batch_size = check_positive_int(batch_size, "batch_size")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0 (a fraction of the image's value range), got {noise!r}")
    target = _fixed_target(model, x, target)
    b = x.shape[0]
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    eps = torch.randn((b * samples,) + tuple(x.shape[1:]), generator=g, dtype=torch.float64)
    span = (x.flatten(1).amax(1) - x.flatten(1).amin(1)).double().cpu()
    eps = (eps * (noise * span).repeat_interleave(samples)[:, None, None, None]).to(x.device, x.dtype)
    noisy = x.repeat_interleave(samples, dim=0) + eps
    rep = _repeat_target(target, samples)
    maps = []
    with _progress(-(-noisy.shape[0] // batch_size), "smoothgrad", progress) as bar:
        for start in range(0, noisy.shape[0], batch_size):
            t = _rows(rep, start, start + batch_size)
            maps.append(_grad_wrt_input(model, fast_layout(noisy[start:start + batch_size]), t).abs().amax(1))
            bar.update(1)
    out = torch.cat(maps).reshape(b, samples, *x.shape[2:]).mean(1)
    return _finish(out, images)


def _path_nodes(steps: int, method: str) -> tuple[np.ndarray, np.ndarray]:
    if method == "gausslegendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return 0.5 * (nodes + 1), 0.5 * weights
    if method == "riemann_middle":
        return (np.arange(steps) + 0.5) / steps, np.full(steps, 1.0 / steps)
    if method == "riemann_trapezoid":
        if steps < 2:
            raise ValueError("riemann_trapezoid needs steps >= 2")
        w = np.full(steps, 1.0 / (steps - 1))
        w[[0, -1]] *= 0.5
        return np.linspace(0, 1, steps), w
    raise ValueError(f"unknown integration method {method!r}; "
                     "choose 'gausslegendre', 'riemann_middle' or 'riemann_trapezoid'")


def integrated_gradients(model: nn.Module, images: torch.Tensor, target=None, *, baseline=0.0,
                         steps: int = 32, method: str = "gausslegendre",
                         batch_size: int = 64, progress: bool | None = None) -> torch.Tensor:
    """Integrated Gradients (Sundararajan et al. 2017), summed over colour channels.

    ``IG_i = (x_i - x'_i) * integral_0^1 d score(x' + a (x - x')) / d x_i da``, the integral
    by ``steps`` nodes of ``method`` (Gauss-Legendre by default, as Captum). ``baseline``
    ``x'``: a number, an RGB triple or a tensor broadcastable to ``images`` (default black).
    Completeness: ``map.sum() ~= score(x) - score(x')``.

    Returns ``(B, H, W)``, signed (Captum's ``IntegratedGradients`` summed over dim 1).
    ``progress``: a bar over the backward passes (``None``: when there are at least
    :data:`PROGRESS_PASSES`).

    The path images run in channels-last memory order (:func:`vizlib.policy.fast_layout`),
    1.1-1.3x faster on CPU; over the averaged path the map is as close to a float64 computation
    as the default layout's (checked in ``bench/``). The one-pass methods (:func:`saliency`,
    :func:`guided_backprop`) keep the default layout, where they agree with Captum bit for bit.
    """
    x = _prepare(model, images, "integrated_gradients")
    steps = check_positive_int(steps, "steps")
    batch_size = check_positive_int(batch_size, "batch_size")
    base = torch.as_tensor(baseline, dtype=x.dtype, device=x.device)
    if base.ndim == 1 and base.numel() == 3:
        base = base.reshape(1, 3, 1, 1)
    try:
        base = torch.broadcast_to(base, x.shape)
    except RuntimeError:
        raise ValueError(f"baseline of shape {tuple(base.shape)} does not broadcast to images "
                         f"{tuple(x.shape)}") from None
    target = _fixed_target(model, x, target)
    alphas, weights = _path_nodes(steps, method)
    b = x.shape[0]
    a = torch.as_tensor(alphas, dtype=x.dtype, device=x.device)
    wts = torch.as_tensor(weights, dtype=torch.float64, device=x.device)
    # rows ordered image-major: image i's path is rows i*steps .. i*steps + steps - 1
    path = base.repeat_interleave(steps, 0) + a.repeat(b)[:, None, None, None] * \
        (x - base).repeat_interleave(steps, 0)
    rep = _repeat_target(target, steps)
    grads = []
    with _progress(-(-path.shape[0] // batch_size), "integrated_gradients", progress) as bar:
        for start in range(0, path.shape[0], batch_size):
            t = _rows(rep, start, start + batch_size)
            grads.append(_grad_wrt_input(model, fast_layout(path[start:start + batch_size]), t))
            bar.update(1)
    grads = torch.cat(grads).reshape(b, steps, *x.shape[1:])
    avg = (grads.double() * wts[None, :, None, None, None]).sum(1)
    return _finish(((x - base).double() * avg).sum(1), images)


# ----------------------------------------------------------------------------------------
# Class activation maps (lecture 07)
# ----------------------------------------------------------------------------------------

def default_cam_layer(model: nn.Module) -> str:
    """The layer a CAM-style map is read from by default: the one just before ``avgpool`` in a
    :class:`~vizlib.models.CourseModel` (``relu4`` in ShapesNet, ``layer4`` in ResNet,
    ``pool5`` in VGG). In any other network: the top-level module just before its global average
    pool (a plain torchvision ResNet: ``layer4``, whose output is ``layer4[-1]``'s, the layer
    pytorch-grad-cam recommends; VGG: ``features``, i.e. ``features[-1]``), else the last
    ``nn.Conv2d`` module."""
    names = list(getattr(model, "layer_paths", {}) or {})
    if "avgpool" in names and names.index("avgpool") > 0:
        return names[names.index("avgpool") - 1]
    children = list(model.named_children())
    pools = [i for i, (_, m) in enumerate(children) if isinstance(m, (nn.AdaptiveAvgPool2d, nn.AvgPool2d))]
    if not names and pools and pools[-1] > 0:
        return children[pools[-1] - 1][0]
    convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no Conv2d layer; name the layer explicitly")
    return convs[-1]


def _activations_and_grads(model, x, target, layer):
    """The layer's output ``A`` and ``d score / d A`` (both ``(B, C, h, w)``, detached)."""
    key = layer
    get_layer(model, layer)  # a clear KeyError before anything runs
    with torch.enable_grad(), capture_activations(model, layer, detach=False) as acts:
        x = x.detach().requires_grad_(True)
        score = class_scores(model(x), target)
        if key not in acts:
            raise ValueError(f"layer {layer!r} did not run in the forward pass")
        a = acts[key]
        if a.ndim != 4:
            raise ValueError(f"layer {layer!r} gives shape {tuple(a.shape)}; a class activation map "
                             "needs a (B, C, h, w) feature map")
        (grad,) = torch.autograd.grad(score.sum(), a)
    return a.detach(), grad.detach()


def _finish_cam(maps, relu, upsample, x, images):
    maps = maps.to(x.dtype) if maps.dtype != x.dtype else maps
    if relu:
        maps = maps.clamp(min=0)
    if upsample:
        maps = _upsample(maps, x.shape[-2:])
    return _finish(maps, images)


#: A CAM variant's one idea: ``weights(A, dA) -> w`` from a layer's activations ``A`` and the
#: gradient ``dA = d score / d A`` (both ``(B, C, h, w)``); ``w`` is ``(B, C)``, ``(B, C, 1, 1)``
#: (one weight per channel) or ``(B, C, h, w)`` (one per position, as LayerCAM).
CamWeights = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def gradient_cam(model: nn.Module, images: torch.Tensor, target=None, *, weights: CamWeights,
                 layer: str | None = None, relu: bool = True, upsample: bool = True,
                 fn: str = "gradient_cam") -> torch.Tensor:
    """The frame every gradient-weighted class activation map shares: ``ReLU(sum_k w_k A_k)``.

    One forward pass records the layer's output ``A`` (through :func:`vizlib.hooks.capture_activations`)
    and one ``torch.autograd.grad`` gives ``dA = d score / d A``; ``weights(A, dA)`` (the
    variant: :func:`grad_cam_weights`, :func:`grad_cam_pp_weights`, :func:`xgrad_cam_weights`,
    :func:`layer_cam_weights`) gives ``w``; the map is ``sum_k w_k * A_k``, ReLU'd and resized
    to the image. As pytorch-grad-cam's ``BaseCAM`` with ``get_cam_weights``, as a function.

    Args:
        model, images, target: as in the module docstring (moved to the model's device; the map
            comes back on the images' device and dtype).
        weights: ``weights(A, dA) -> (B, C)``, ``(B, C, 1, 1)`` or ``(B, C, h, w)``.
        layer: a layer name (default :func:`default_cam_layer`).
        relu: apply the ReLU to the map.
        upsample: resize to the image size (bilinear, ``align_corners=False``); ``False``
            returns the layer's resolution ``(B, h, w)``.
        fn: the name the errors give.

    Returns:
        ``(B, H, W)`` (or ``(B, h, w)``), not normalised.
    """
    x = _prepare(model, images, fn)
    layer = default_cam_layer(model) if layer is None else layer
    a, g = _activations_and_grads(model, x, target, layer)
    w = weights(a, g)
    if w.ndim == 2:
        w = w[:, :, None, None]
    return _finish_cam((w * a).sum(1), relu, upsample, x, images)


def grad_cam_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM's channel weights (Selvaraju et al. 2017): ``alpha_k = mean_{y,x} dA_k[y, x]``.
    ``(B, C, h, w)`` twice -> ``(B, C, 1, 1)``."""
    return gradients.mean(dim=(2, 3), keepdim=True)


def grad_cam_pp_weights(activations: torch.Tensor, gradients: torch.Tensor,
                        eps: float = 0.0) -> torch.Tensor:
    """Grad-CAM++'s channel weights (Chattopadhyay et al. 2018, eq. 19, for an exponentiated
    score): with ``g = dA``, ``a_k[y,x] = g^2 / (2 g^2 + sum_{y',x'} A_k[y',x'] * g^3 + eps)``
    (0 where ``g = 0``) and ``alpha_k = sum_{y,x} a_k[y,x] * ReLU(g[y,x])``.
    ``(B, C, h, w)`` twice -> ``(B, C, 1, 1)``."""
    a, g = activations, gradients
    g2 = g * g
    denom = 2 * g2 + a.sum(dim=(2, 3), keepdim=True) * g2 * g + eps
    safe = torch.where(denom == 0, torch.ones_like(denom), denom)
    coeff = torch.where(g != 0, g2 / safe, torch.zeros_like(g))
    return (coeff * g.clamp(min=0)).sum(dim=(2, 3), keepdim=True)


def xgrad_cam_weights(activations: torch.Tensor, gradients: torch.Tensor,
                      eps: float = 0.0) -> torch.Tensor:
    """XGrad-CAM's channel weights (Fu et al. 2020, "Axiom-based Grad-CAM"):
    ``alpha_k = sum_{y,x} A_k[y,x] * dA_k[y,x] / (sum_{y,x} A_k[y,x] + eps)`` (0 for a channel
    whose denominator is 0). ``(B, C, h, w)`` twice -> ``(B, C, 1, 1)``."""
    total = activations.sum(dim=(2, 3), keepdim=True) + eps
    num = (activations * gradients).sum(dim=(2, 3), keepdim=True)
    safe = torch.where(total == 0, torch.ones_like(total), total)
    return torch.where(total == 0, torch.zeros_like(num), num / safe)


def layer_cam_weights(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """LayerCAM's weights (Jiang et al. 2021, "LayerCAM"): one per position,
    ``w_k[y,x] = ReLU(dA_k[y,x])``. ``(B, C, h, w)`` twice -> ``(B, C, h, w)``."""
    return gradients.clamp(min=0)


def grad_cam(model: nn.Module, images: torch.Tensor, target=None, *, layer: str | None = None,
             relu: bool = True, upsample: bool = True) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al. 2017) at any named layer.

    Each channel ``k`` of the layer's output ``A`` gets the weight
    ``alpha_k = mean_{y,x} d score / d A_k[y, x]`` (:func:`grad_cam_weights`); the map is
    ``ReLU(sum_k alpha_k A_k)`` (:func:`gradient_cam`).

    Args:
        layer: a layer name (default :func:`default_cam_layer`).
        relu: apply the ReLU (``False`` gives Captum's ``LayerGradCam`` with
            ``relu_attributions=False``).
        upsample: resize to the image size (bilinear, ``align_corners=False``); ``False``
            returns the layer's resolution ``(B, h, w)``.

    Returns:
        ``(B, H, W)`` (or ``(B, h, w)``), not normalised.
    """
    return gradient_cam(model, images, target, weights=grad_cam_weights, layer=layer, relu=relu,
                        upsample=upsample, fn="grad_cam")


def grad_cam_pp(model: nn.Module, images: torch.Tensor, target=None, *, layer: str | None = None,
                relu: bool = True, upsample: bool = True, eps: float = 0.0) -> torch.Tensor:
    """Grad-CAM++ (Chattopadhyay et al. 2018), with the paper's closed form for an
    exponentiated score (eq. 19): with ``g = d score / d A``,
    ``a_k[y,x] = g^2 / (2 g^2 + sum_{y',x'} A_k[y',x'] * g^3)`` (0 where ``g = 0``) and
    ``alpha_k = sum_{y,x} a_k[y,x] * ReLU(g[y,x])`` (:func:`grad_cam_pp_weights`); the map is
    ``ReLU(sum_k alpha_k A_k)``.

    ``eps`` is added to the denominator (pytorch-grad-cam uses ``1e-6``); default exact.
    Other settings as in :func:`grad_cam`.
    """
    return gradient_cam(model, images, target, weights=lambda a, g: grad_cam_pp_weights(a, g, eps),
                        layer=layer, relu=relu, upsample=upsample, fn="grad_cam_pp")


def xgrad_cam(model: nn.Module, images: torch.Tensor, target=None, *, layer: str | None = None,
              relu: bool = True, upsample: bool = True, eps: float = 0.0) -> torch.Tensor:
    """XGrad-CAM (Fu et al. 2020): Grad-CAM with each channel's gradient averaged with the
    channel's own activations as weights, ``alpha_k = sum A_k dA_k / sum A_k``
    (:func:`xgrad_cam_weights`); the map is ``ReLU(sum_k alpha_k A_k)``.

    ``eps`` is added to the denominator (pytorch-grad-cam uses ``1e-7``); default exact. Read it
    at a layer whose activations are >= 0 (after a ReLU), as the paper does. Other settings
    as in :func:`grad_cam`.
    """
    return gradient_cam(model, images, target, weights=lambda a, g: xgrad_cam_weights(a, g, eps),
                        layer=layer, relu=relu, upsample=upsample, fn="xgrad_cam")


def layer_cam(model: nn.Module, images: torch.Tensor, target=None, *, layer: str | None = None,
              relu: bool = True, upsample: bool = True) -> torch.Tensor:
    """LayerCAM (Jiang et al. 2021): every position weighted by its own positive gradient,
    ``ReLU(sum_k ReLU(dA_k) * A_k)`` (:func:`layer_cam_weights`), so shallow layers give fine
    maps. Settings as in :func:`grad_cam`.
    """
    return gradient_cam(model, images, target, weights=layer_cam_weights, layer=layer, relu=relu,
                        upsample=upsample, fn="layer_cam")


def _global_pool(model: nn.Module, pool: str | None) -> str:
    if pool is not None:
        return pool
    names = list(getattr(model, "layer_paths", {}) or {})
    if "avgpool" in names:
        return "avgpool"
    pools = [n for n, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)]
    if not pools:
        raise ValueError(f"{type(model).__name__} has no global average pooling layer, so CAM does not "
                         "apply (use grad_cam); or name the pooling layer with pool=")
    return pools[-1]


def cam(model: nn.Module, images: torch.Tensor, target=None, *, pool: str | None = None,
        relu: bool = True, upsample: bool = True) -> torch.Tensor:
    """Class activation map (Zhou et al. 2016) of a global-average-pool network.

    For ``logits = W · GAP(A) + b`` the map of class ``c`` is ``sum_k W[c, k] A_k``: the
    classifier's weights applied at every position of the feature map ``A`` that enters the
    global average pool ``pool`` (default ``"avgpool"`` or the last ``AdaptiveAvgPool2d``).
    The weights are read as ``d score / d GAP(A)`` — exactly ``W[c]`` for a logit target,
    its linearisation for a callable target. On such a network ``cam = h * w * grad_cam``
    at the layer feeding the pool (Selvaraju et al. 2017, section 3.1).

    Returns:
        ``(B, H, W)`` (``(B, h, w)`` with ``upsample=False``); ReLU applied unless ``relu=False``.

    Raises:
        ValueError: when ``pool`` does not average its input down to one value per channel.
    """
    x = _prepare(model, images, "cam")
    pool = _global_pool(model, pool)
    get_layer(model, pool)
    with torch.enable_grad(), capture_inputs(model, pool) as feats, \
            capture_activations(model, pool, detach=False) as pooled:
        x = x.detach().requires_grad_(True)
        score = class_scores(model(x), target)
        if pool not in pooled:
            raise ValueError(f"pooling layer {pool!r} did not run in the forward pass")
        a, p = feats[pool], pooled[pool]
        if a.ndim != 4 or p.shape[:2] != a.shape[:2] or p[0, 0].numel() != 1:
            raise ValueError(f"CAM needs a global average pool; {pool!r} maps {tuple(a.shape)} to "
                             f"{tuple(p.shape)} (use grad_cam for this network)")
        (w,) = torch.autograd.grad(score.sum(), p)
    weights = w.detach().reshape(a.shape[0], a.shape[1], 1, 1)
    return _finish_cam((weights * a).sum(1), relu, upsample, x, images)


def guided_grad_cam(model: nn.Module, images: torch.Tensor, target=None, *,
                    layer: str | None = None) -> torch.Tensor:
    """Guided Grad-CAM (Selvaraju et al. 2017): the guided-backprop map times the upsampled
    Grad-CAM map — sharp like guided backprop, class-discriminative like Grad-CAM.

    Returns ``(B, H, W)`` >= 0 (``max_c |guided grad_c| * grad_cam``).
    """
    x = _prepare(model, images, "guided_grad_cam")
    target = _fixed_target(model, x, target)
    gb = _grad_wrt_input(model, x, target, "guided").abs().amax(1)
    return _finish(gb * grad_cam(model, x, target, layer=layer).to(gb), images)


#: The lectures' methods by name, in their order; each is ``f(model, images, target, **kw)``. The
#: explorers of lectures 06-07 offer all of them; ``xgrad_cam`` and ``layer_cam`` are left out so the
#: lectures' tables stay as they are (they are one weights function each on :func:`gradient_cam`).
METHODS: dict[str, Callable] = {
    "occlusion": occlusion,
    "saliency": saliency,
    "deconvnet": deconvnet,
    "guided_backprop": guided_backprop,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "cam": cam,
    "grad_cam": grad_cam,
    "guided_grad_cam": guided_grad_cam,
    "grad_cam_pp": grad_cam_pp,
}
