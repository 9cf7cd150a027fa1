"""Objectives: what the render loop maximises, read from named layers' activations.

``layer_outputs(model, images, layers) -> {name: tensor}`` runs the model only as far as the
deepest requested layer (:func:`vizlib.hooks.stop_after`); gradients flow. The name
``"logits"`` means the model's output.

``Objective(fn, layers)``: ``fn(acts) -> (B,)``, a value per image to **maximise**, and the
layer names it reads. Objectives combine: ``a + b``, ``a - b``, ``-a``, ``2 * a``, ``a / 4``.
Constructors: :func:`class_score`, :func:`channel`, :func:`neuron`, :func:`layer_energy`,
:func:`feature_distance` (write your own the same way, e.g. Gram-matrix style losses).
"""
from __future__ import annotations

import numbers
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from ..hooks import stop_after
from ..policy import fast_layout
from ..validate import check_shape

__all__ = ["LOGITS", "layer_outputs", "Objective", "class_score", "channel", "neuron",
           "layer_energy", "feature_distance"]

#: The name :func:`layer_outputs` gives the model's final output (pre-softmax scores).
LOGITS = "logits"


def _names(layers) -> list[str]:
    if isinstance(layers, str):
        return [layers]
    names = list(dict.fromkeys(layers))
    if not names:
        raise ValueError("layer_outputs: no layers requested")
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"layers are given by name (str), got {type(n).__name__}")
    return names


def layer_outputs(model: nn.Module, images: torch.Tensor, layers: str | Iterable[str]
                  ) -> dict[str, torch.Tensor]:
    """The outputs of named layers, computing no more of the network than needed.

    Args:
        model: a network taking ``(B, 3, H, W)`` images in [0, 1] (a
            :class:`vizlib.models.CourseModel` normalises them itself).
        images: ``(B, 3, H, W)`` float in [0, 1].
        layers: names for :func:`vizlib.layers.get_layer` (``"relu4_3"``, ``"features.3"``),
            and/or ``"logits"`` for the model's output.

    Returns:
        ``{name: tensor}`` in the order asked, still attached to the autograd graph (so an
        objective on them can be differentiated with respect to ``images``).

    Unless ``"logits"`` is asked for, the forward pass stops as soon as every requested layer
    has produced its output (:func:`vizlib.hooks.stop_after`). Hooks live only inside this call
    (removed in ``finally``). A layer module that runs more than once per forward pass is
    captured at its first run.

    Raises:
        KeyError: an unknown layer name (before any hook is registered).
        ValueError: a layer that does not run in the model's forward pass.
    """
    names = _names(layers)
    wanted = [n for n in names if n != LOGITS]
    x = fast_layout(images)
    if not wanted:
        return {LOGITS: model(x)}
    with stop_after(model, wanted, stop=LOGITS not in names) as outputs:
        logits = model(x)
    if LOGITS in names:
        outputs[LOGITS] = logits
    return {n: outputs[n] for n in names}


class Objective:
    """A value per image to maximise, computed from layer activations.

    Args:
        fn: ``fn(acts) -> (B,)`` where ``acts`` maps layer names (and ``"logits"``) to
            tensors from :func:`layer_outputs`.
        layers: the names ``fn`` reads.
        name: a label for printing.

    Objectives combine with ``+``, ``-``, unary ``-``, and ``*`` / ``/`` by a number; the
    result reads the union of the layers.
    """

    def __init__(self, fn: Callable[[dict], torch.Tensor], layers: Sequence[str], name: str = "objective"):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name

    def __call__(self, acts: dict) -> torch.Tensor:
        value = self.fn(acts)
        if value.dim() != 1:
            raise ValueError(f"objective {self.name!r} must return one value per image (B,), "
                             f"got shape {tuple(value.shape)}")
        return value

    def _combine(self, other, op, symbol):
        if isinstance(other, Objective):
            return Objective(lambda a: op(self(a), other(a)), self.layers + other.layers,
                             f"({self.name} {symbol} {other.name})")
        if isinstance(other, numbers.Number):
            return Objective(lambda a: op(self(a), other), self.layers, f"({self.name} {symbol} {other})")
        return NotImplemented

    def __add__(self, other):
        return self._combine(other, lambda a, b: a + b, "+")

    def __radd__(self, other):  # lets sum([...]) start from 0
        if isinstance(other, numbers.Number) and other == 0:
            return self
        return self._combine(other, lambda a, b: b + a, "+")

    def __sub__(self, other):
        return self._combine(other, lambda a, b: a - b, "-")

    def __neg__(self):
        return Objective(lambda a: -self(a), self.layers, f"-{self.name}")

    def __mul__(self, k):
        if not isinstance(k, numbers.Number):
            return NotImplemented
        return Objective(lambda a: self(a) * k, self.layers, f"{k} * {self.name}")

    __rmul__ = __mul__

    def __truediv__(self, k):
        if not isinstance(k, numbers.Number):
            return NotImplemented
        return Objective(lambda a: self(a) / k, self.layers, f"{self.name} / {k}")

    def __repr__(self) -> str:
        return f"Objective({self.name}, layers={list(self.layers)})"


def _spatial(acts: dict, layer: str) -> torch.Tensor:
    """``acts[layer]``, checked to be ``(B, C, H, W)``."""
    return check_shape(acts[layer], "B C H W", f"layer {layer!r}'s output",
                       hint="; this objective needs a convolutional layer's (B, C, H, W)")


def class_score(index: int | Sequence[int]) -> Objective:
    """The pre-softmax score (logit) of class ``index`` (one int, or one per image).

    Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks": maximise the
    unnormalised score, not the probability (which can also rise by lowering the others).
    """
    def check(indices, k):
        bad = [int(i) for i in indices if not 0 <= int(i) < k]
        if bad:
            raise IndexError(f"class index {bad[0]} is out of range: the model has {k} classes (0..{k - 1})")

    def fn(acts):
        logits = acts[LOGITS]
        if isinstance(index, numbers.Integral):
            check([index], logits.shape[1])
            return logits[:, index]
        idx = torch.as_tensor(list(index), device=logits.device)
        if idx.numel() != logits.shape[0]:
            raise ValueError(f"class_score got {idx.numel()} classes for a batch of {logits.shape[0]}")
        check(idx.tolist(), logits.shape[1])
        return logits.gather(1, idx[:, None])[:, 0]
    return Objective(fn, (LOGITS,), f"class_score({index})")


def channel(layer: str, c: int | Sequence[int]) -> Objective:
    """Mean activation of channel ``c`` of ``layer`` over all positions: filter visualisation.

    ``c``: one channel for every image, or a sequence with one channel per image of the batch.
    """
    def fn(acts):
        a = _spatial(acts, layer)
        if isinstance(c, numbers.Integral):
            return a[:, c].mean(dim=(1, 2))
        idx = torch.as_tensor(list(c), device=a.device)
        if idx.numel() != a.shape[0]:
            raise ValueError(f"channel got {idx.numel()} channels for a batch of {a.shape[0]}")
        return a[torch.arange(a.shape[0], device=a.device), idx].mean(dim=(1, 2))
    return Objective(fn, (layer,), f"channel({layer}, {c})")


def neuron(layer: str, c: int, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of one unit: channel ``c`` of ``layer`` at ``(y, x)`` (default: the centre).

    For a fully-connected layer ``(B, K)`` give ``c`` only.
    """
    def fn(acts):
        a = acts[layer]
        if a.dim() == 2:
            return a[:, c]
        a = _spatial(acts, layer)
        yy = a.shape[2] // 2 if y is None else y
        xx = a.shape[3] // 2 if x is None else x
        return a[:, c, yy, xx]
    return Objective(fn, (layer,), f"neuron({layer}, {c}, {y}, {x})")


def layer_energy(layer: str) -> Objective:
    """Mean squared activation of ``layer``: the DeepDream objective (Mordvintsev et al. 2015).

    Its gradient with respect to the activation is ``2 a / N`` — proportional to the activation
    itself, which is exactly DeepDream's "set the layer's gradient to its activation".
    """
    def fn(acts):
        a = acts[layer]
        return a.pow(2).flatten(1).mean(1)
    return Objective(fn, (layer,), f"layer_energy({layer})")


def feature_distance(layer: str, target: torch.Tensor) -> Objective:
    """Minus the mean squared distance between ``layer``'s activation and ``target``.

    ``target``: the activation to reproduce, shape ``(B, ...)`` or ``(1, ...)`` (broadcast);
    detached. Maximising this is feature inversion (Mahendran & Vedaldi 2015).
    """
    target = target.detach()

    def fn(acts):
        a = acts[layer]
        t = target.to(device=a.device, dtype=a.dtype)
        if t.shape[1:] != a.shape[1:]:
            raise ValueError(f"feature_distance: target has shape {tuple(t.shape)} but {layer!r} "
                             f"gives {tuple(a.shape)} (same image size needed)")
        return -(a - t).pow(2).flatten(1).mean(1)
    return Objective(fn, (layer,), f"feature_distance({layer})")
