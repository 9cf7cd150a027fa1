"""Checks that graded cells use to make sure they grade the student's own work.

A student function that only forwards to vizlib's reference implementation must not earn the
points. Rebinding ``vizlib.attribution.saliency`` does not stop that (the student may have imported
the function under another name before the test runs), so the check watches the call itself:

    from vizlib.course.checks import reference_calls
    with reference_calls("vizlib.attribution") as used:
        result = saliency_map(model, x, target)          # the student's function
    assert not used, f"saliency_map must be your own code, but it called {used}"

Every Python function entered while the block runs whose code lives in one of the named modules'
files is recorded (as ``"module.function"``). Helpers that vizlib shares with everyone
(``vizlib.images``, ``vizlib.models`` …) are not watched unless named.
"""
from __future__ import annotations

import importlib
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Iterator


def _module_files(module: str | ModuleType) -> dict[str, str]:
    """``{source file: module name}`` for a module, or for every module of a package (so that
    ``"vizlib.render"`` watches ``vizlib/render/loop.py`` and the rest too)."""
    mod = importlib.import_module(module) if isinstance(module, str) else module
    path = getattr(mod, "__file__", None)
    if path is None:
        raise ValueError(f"reference_calls: {mod.__name__!r} has no source file to watch")
    path = Path(path).resolve()
    if not hasattr(mod, "__path__"):
        return {str(path): mod.__name__}
    files = {}
    for file in sorted(path.parent.rglob("*.py")):
        parts = file.relative_to(path.parent).with_suffix("").parts
        parts = parts[:-1] if parts[-1] == "__init__" else parts
        files[str(file)] = ".".join((mod.__name__, *parts))
    return files


@contextmanager
def reference_calls(*modules: str | ModuleType) -> Iterator[list[str]]:
    """Record calls into ``modules`` made while the block runs (this thread and threads it starts).

    Args:
        modules: module objects or dotted names, e.g. ``"vizlib.attribution"``; a package
            (``"vizlib.render"``) stands for every module inside it.

    Yields:
        a list, filled in as calls happen, of ``"module.function"`` names (each once, in call order).
    """
    if not modules:
        raise ValueError("reference_calls: name at least one module to watch")
    files = {f: name for m in modules for f, name in _module_files(m).items()}
    used: list[str] = []

    def profile(frame, event, arg):
        if event == "call":
            filename = frame.f_code.co_filename
            if filename in files:
                name = f"{files[filename]}.{frame.f_code.co_name}"
                if name not in used:
                    used.append(name)

    previous = sys.getprofile()
    previous_thread = threading.getprofile() if hasattr(threading, "getprofile") else None
    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        yield used
    finally:
        sys.setprofile(previous)
        threading.setprofile(previous_thread)


# ----------------------------------------------------------------------------------------
# "Leave the model and the inputs as you found them"
# ----------------------------------------------------------------------------------------

_HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")


def _same_tensor(a, b) -> bool:
    import torch

    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point() or a.is_complex():
        return bool(torch.equal(a, b) or torch.equal(torch.isnan(a), torch.isnan(b))
                    and torch.equal(a.nan_to_num(0.0), b.nan_to_num(0.0)))
    return bool(torch.equal(a, b))


def _snapshot(value, name: str, out: dict) -> None:
    """Everything about ``value`` a function must leave alone, as ``{description: state}``."""
    import torch
    from torch import nn

    if isinstance(value, torch.Tensor):
        out[f"the values of {name}"] = value.detach().clone()
        out[f"{name}.requires_grad"] = value.requires_grad
        out[f"{name}.grad"] = None if value.grad is None else value.grad.detach().clone()
        out[f"the dtype and shape of {name}"] = (value.dtype, tuple(value.shape))
    elif isinstance(value, nn.Module):
        for p_name, p in value.named_parameters():
            _snapshot(p, f"{name}.{p_name}", out)
        for b_name, b in value.named_buffers():
            out[f"the values of {name}.{b_name}"] = b.detach().clone()
        for m_name, m in value.named_modules():
            where = f"{name}.{m_name}" if m_name else name
            out[f"the train/eval mode of {where}"] = m.training
            out[f"the hooks on {where}"] = tuple(tuple(getattr(m, d, {}).keys()) for d in _HOOK_DICTS)
        glob = nn.modules.module
        out["the global module hooks"] = tuple(len(getattr(glob, d, {})) for d in
                                               ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                "_global_backward_hooks", "_global_backward_pre_hooks"))
    elif isinstance(value, dict):
        out[f"the keys of {name}"] = list(value.keys())
        for k, v in value.items():
            _snapshot(v, f"{name}[{k!r}]", out)
    elif isinstance(value, (list, tuple)):
        out[f"the length of {name}"] = len(value)
        for i, v in enumerate(value):
            _snapshot(v, f"{name}[{i}]", out)
    else:
        out[f"{name}"] = value if isinstance(value, (int, float, str, bool, type(None))) else id(value)


@contextmanager
def untouched(**values) -> Iterator[None]:
    """Assert that the block leaves every named value as it found it.

        with untouched(model=net, x=x):
            out = saliency_map(net, x, target)

    For a tensor: its values, dtype, shape, ``requires_grad`` and ``.grad``; for a module: every
    parameter (values, flags, ``.grad``), buffer, submodule's train/eval mode and hooks (and the
    global module hooks); dicts, lists and tuples item by item. Raises ``AssertionError`` naming
    what changed, e.g. ``"changed model.0.weight.requires_grad (True -> False)"``.
    """
    before: dict = {}
    for name, value in values.items():
        _snapshot(value, name, before)
    yield
    after: dict = {}
    for name, value in values.items():
        _snapshot(value, name, after)
    import torch

    changed = []
    for key in before.keys() | after.keys():
        a, b = before.get(key, "(absent)"), after.get(key, "(absent)")
        if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
            same = _same_tensor(a, b)
        elif isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            same = False
        else:
            same = a == b
        if not same:
            if key.startswith("the hooks on") and a != "(absent)" and b != "(absent)":
                a, b = f"{sum(map(len, a))} hooks", f"{sum(map(len, b))} hooks"
            show = not isinstance(a, torch.Tensor) and not isinstance(b, torch.Tensor) and len(repr(a)) < 60
            changed.append(f"{key}" + (f" ({a} -> {b})" if show else ""))
    if changed:
        raise AssertionError("changed " + "; ".join(sorted(changed)[:4])
                             + (f" and {len(changed) - 4} more" if len(changed) > 4 else "")
                             + ": leave what you are given as you found it")
