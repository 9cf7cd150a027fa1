"""Hooks, only ever inside context managers: capture what layers compute, then let go.

Every hook registered here is removed in a ``finally`` block, so the model leaves the
``with`` statement exactly as it entered it — also when the body raises.

    with capture_activations(model, ["conv1", "relu3"]) as acts:
        model(x)
    acts["conv1"]          # (B, C, H, W)

    with stop_after(model, ["conv1", "relu3"]) as outs:
        model(x)           # runs only as far as relu3, then stops
    outs["relu3"]          # still attached to the autograd graph
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Iterator

import torch
from torch import nn

from .layers import get_layer


def _as_list(layers) -> list[str]:
    if isinstance(layers, (str, nn.Module)):
        return [layers]
    layers = list(layers)
    if not layers:
        raise ValueError("no layers given")
    return layers


def _first_tensor(output):
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TypeError(f"layer returned {type(output).__name__}, expected a tensor")


@contextmanager
def _on_forward(model: nn.Module, layers, on_tensor, inputs: bool = False) -> Iterator[dict]:
    """Call ``on_tensor(store, key, tensor)`` whenever a named layer runs, with the layer's
    output (or, with ``inputs=True``, its first input).

    Resolves every name before registering anything (a bad name leaves no hook), and
    removes every hook on the way out, whatever happens in the body.
    """
    modules = {name: get_layer(model, name) for name in _as_list(layers)}
    store: dict = {}
    handles = []

    def make_hook(key):
        if inputs:
            def hook(module, args):
                on_tensor(store, key, _first_tensor(args))
        else:
            def hook(module, args, output):
                on_tensor(store, key, _first_tensor(output))
        return hook

    try:
        for key, module in modules.items():
            register = module.register_forward_pre_hook if inputs else module.register_forward_hook
            handles.append(register(make_hook(key)))
        yield store
    finally:
        for handle in handles:
            handle.remove()


def capture_activations(model: nn.Module, layers: str | Iterable[str], *,
                        detach: bool = True):
    """Record the outputs of named layers during the forward passes in the body.

    Args:
        model: any ``nn.Module``; layers are found with :func:`vizlib.layers.get_layer`.
        layers: one name or several (a module itself is accepted too, and is its own key).
        detach: ``True`` stores a detached copy (safe even if a later in-place op would
            overwrite the tensor); ``False`` stores the live tensor, still attached to the
            autograd graph (for gradient-based methods).

    Returns:
        a context manager yielding a dict, filled as the model runs:
        ``name -> output`` of the last forward pass.
    """
    def keep(store, key, out):
        store[key] = out.detach().clone() if detach else out

    return _on_forward(model, layers, keep)


class _StopForward(Exception):
    """Raised by :func:`stop_after`'s hook to end a forward pass; each context has its own."""


def stop_after(model: nn.Module, layers: str | Iterable[str], *, stop: bool = True):
    """Capture the first output of each named layer, and end the forward pass once all have run.

    Put the forward call alone in the body::

        with stop_after(model, ["relu2", "relu4"]) as outputs:
            model(x)        # ends, silently, right after relu4's first output
        outputs["relu2"]    # (B, C, H, W), attached to the autograd graph

    Args:
        model: any ``nn.Module``; layers are found with :func:`vizlib.layers.get_layer`.
        layers: one name or several (a module itself is accepted too, and is its own key).
        stop: ``True`` ends the pass as soon as every layer has produced its output (the rest of
            the network never runs, nor does the rest of the body); ``False`` captures the same
            first outputs and lets the pass run to its end (to get the model's output too).

    Returns:
        a context manager yielding a dict ``name -> output``: each layer's output at its *first*
        run in the body (a module that runs twice, as a reused ReLU, is captured once), live,
        not detached, so gradients flow through it.

    Bad names fail before any hook is registered; every hook is removed in ``finally``; the
    internal stop is swallowed, anything else the body raises propagates.

    Raises:
        ValueError: the body ended normally but a layer never ran (it is not on the forward
            path of what the body called).
    """
    keys = list(dict.fromkeys(_as_list(layers)))
    token = _StopForward()

    def keep_first(store, key, out):
        if key in store:
            return
        store[key] = out
        if stop and len(store) == len(keys):
            raise token

    return _stopping(model, keys, keep_first, token)


@contextmanager
def _stopping(model, keys, on_tensor, token) -> Iterator[dict]:
    with _on_forward(model, keys, on_tensor) as store:
        try:
            yield store
        except _StopForward as e:
            if e is not token:  # an enclosing stop_after's stop: not ours to swallow
                raise
        missing = [k for k in keys if k not in store]
        if missing:
            name = getattr(model, "name", type(model).__name__)
            raise ValueError(f"layer(s) {missing} did not run in {name}'s forward pass")


def capture_inputs(model: nn.Module, layers: str | Iterable[str]):
    """Record the (first) input of named layers, detached, during the forward passes in the body.

    Like :func:`capture_activations`, for what enters a layer rather than what leaves it —
    e.g. the penultimate features entering a classifier's last ``Linear``.
    """
    def keep(store, key, x):
        store[key] = x.detach().clone()

    return _on_forward(model, layers, keep, inputs=True)


def capture_gradients(model: nn.Module, layers: str | Iterable[str]):
    """Record the gradient of the loss with respect to named layers' outputs.

    Run a forward and a ``backward()`` in the body; afterwards ``grads[name]`` holds
    ``d loss / d output`` with the output's shape. The input or the weights must require
    grad for a graph to exist.
    """
    def watch(store, key, out):
        if out.requires_grad:
            def save(grad):
                store[key] = grad.detach().clone()
            out.register_hook(save)  # a tensor hook dies with its tensor

    return _on_forward(model, layers, watch)


def hook_count(model: nn.Module) -> int:
    """How many forward / backward / pre-hooks are attached to ``model``'s modules.

    Tests use it to prove that nothing was left behind.
    """
    total = 0
    for module in model.modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks"):
            total += len(getattr(module, attr, {}) or {})
    return total


# ----------------------------------------------------------------------------------------
# Backward rules for ReLUs: guided backpropagation and the deconvnet (lectures 06-07)
# ----------------------------------------------------------------------------------------

class _GuidedReLU(torch.autograd.Function):
    """Rectifier forward (``clamp(x, 0, upper)``); backward passes a gradient only where the
    rectifier's slope was 1 *and* the gradient is positive (Springenberg et al. 2015, "Striving
    for Simplicity"). ``upper`` is ``inf`` for ``nn.ReLU`` and 6 for ``nn.ReLU6``."""

    @staticmethod
    def forward(ctx, x, upper):
        out = x.clamp(0, upper)
        ctx.save_for_backward(x)
        ctx.upper = upper
        return out

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        passing = (x > 0) & (x < ctx.upper)
        return grad.clamp(min=0) * passing.to(grad.dtype), None


class _DeconvReLU(torch.autograd.Function):
    """Rectifier forward; backward passes the positive part of the gradient, ignoring the
    forward input (Zeiler & Fergus 2014's deconvnet rectifies the signal it sends back)."""

    @staticmethod
    def forward(ctx, x, upper):
        return x.clamp(0, upper)

    @staticmethod
    def backward(ctx, grad):
        return grad.clamp(min=0), None


RELU_RULES = {"guided": _GuidedReLU, "deconvnet": _DeconvReLU}

#: The rectifiers the rules rewrite, with the upper end of their linear part.
RECTIFIERS = {nn.ReLU: float("inf"), nn.ReLU6: 6.0}

#: Activation modules the rules have no rectifier rule for: a model holding any of them is
#: refused, so a guided map never explains half a network (MobileNetV3's Hardswish, SE gates).
OTHER_ACTIVATIONS = (nn.Hardtanh, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.LeakyReLU,
                     nn.ELU, nn.SELU, nn.CELU, nn.PReLU, nn.RReLU, nn.Mish, nn.Softplus, nn.Sigmoid,
                     nn.Tanh, nn.Softsign, nn.Tanhshrink, nn.GLU, nn.Threshold)


def _upper(module: nn.Module) -> float | None:
    """The upper end of a rectifier's linear part; ``None`` for any other module (subclasses too)."""
    return RECTIFIERS.get(type(module))


@contextmanager
def relu_backward_rule(model: nn.Module, rule: str = "guided") -> Iterator[nn.Module]:
    """Change how every rectifier module of ``model`` (``nn.ReLU``, ``nn.ReLU6``) back-propagates,
    inside the block only.

    ``rule``: ``"guided"`` (guided backpropagation: gradient kept where the rectifier passed its
    input, ``0 < x`` and, for ReLU6, ``x < 6``, and where the gradient > 0) or ``"deconvnet"``
    (gradient kept where gradient > 0). The forward values are unchanged. Works by a forward
    hook on each rectifier that re-computes its output through a function with the new
    backward (so a module used twice, as ResNet's ReLU, follows the rule both times). In-place
    rectifiers are switched to out-of-place for the block. Rectifiers called as functions
    (``F.relu``) are not seen: the model must use modules.

    Every hook is removed and every ``inplace`` flag restored in a ``finally`` block.

    Raises:
        ValueError: for an unknown rule; a model without rectifier modules; a model that also
            has other activation modules (``nn.Hardswish``, ``nn.SiLU``, ``nn.Sigmoid`` …), whose
            backward the rule would leave as it is — the message names them.
    """
    if rule not in RELU_RULES:
        raise ValueError(f"unknown ReLU rule {rule!r}; choose one of {', '.join(map(repr, RELU_RULES))}")
    relus = [m for m in model.modules() if _upper(m) is not None]
    name = getattr(model, "name", type(model).__name__)
    others = [(n, type(m).__name__) for n, m in model.named_modules()
              if _upper(m) is None and isinstance(m, OTHER_ACTIVATIONS)]
    if others:
        kinds = ", ".join(sorted({k for _, k in others}))
        where = ", ".join(repr(n) for n, _ in others[:3]) + (" …" if len(others) > 3 else "")
        raise ValueError(f"{name} has {len(others)} {kinds} modules ({where}) besides its rectifiers; "
                         f"the {rule!r} rule is defined for nn.ReLU and nn.ReLU6 only, and applying it "
                         f"to those alone would explain half the network — use saliency or "
                         f"integrated_gradients for this model")
    if not relus:
        raise ValueError(f"{name} has no nn.ReLU or nn.ReLU6 modules, so the {rule!r} rule "
                         "cannot be applied (rectifiers called as F.relu are invisible to hooks)")
    function = RELU_RULES[rule]

    def hook(module, args, output):
        return function.apply(args[0], _upper(module))

    inplace = [m.inplace for m in relus]
    handles = []
    try:
        for m in relus:
            m.inplace = False
            handles.append(m.register_forward_hook(hook))
        yield model
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in zip(relus, inplace):
            m.inplace = flag
