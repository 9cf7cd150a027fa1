"""Layers by name: a network's idea names (``relu4_1``) or its dotted module paths (``features.3``).

Nothing here knows the model zoo: any ``nn.Module`` works, and a module with a ``layer_paths``
mapping (a :class:`vizlib.models.CourseModel`) answers with its idea names too.
"""
from __future__ import annotations

import difflib

from torch import nn


def layer_names(model: nn.Module) -> list[str]:
    """The names :func:`get_layer` accepts for ``model``.

    A :class:`CourseModel` answers with its idea names (``conv1_1``, ``relu5_3``); any
    other module with its dotted ``named_modules()`` paths.
    """
    paths = getattr(model, "layer_paths", None)
    if paths:
        return list(paths)
    return [n for n, _ in model.named_modules() if n]


def get_layer(model: nn.Module, name: str) -> nn.Module:
    """Find a layer by name: a course name (``relu4_1``) or a dotted path (``features.3``).

    Raises ``KeyError`` naming the closest valid names when ``name`` does not exist.
    """
    if isinstance(name, nn.Module):
        return name
    if not isinstance(name, str):
        raise TypeError(f"layer must be given by name (a str), got {type(name).__name__}")
    paths = getattr(model, "layer_paths", None) or {}
    path = paths.get(name, name)
    modules = dict(model.named_modules())
    if path in modules and path != "":
        return modules[path]
    candidates = list(paths) + [n for n in modules if n and n not in paths.values()]
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.5)
    hint = f"did you mean {', '.join(repr(c) for c in close)}?" if close else \
        f"valid names include {', '.join(repr(c) for c in candidates[:12])}…"
    model_name = getattr(model, "name", type(model).__name__)
    raise KeyError(f"no layer {name!r} in {model_name}; {hint}")
