"""Argument checks that every module shares: one declarative shape check, one integer check.

A shape is written as it reads in a docstring, one token per dimension::

    check_shape(features, "B C H W", "features")           # any sizes, 4 dimensions
    check_shape(sample, "1 C h w", "sample")                # the first dimension must be 1
    check_shape(maps, "B H W", "maps", sizes={"B": 2, "H": 224, "W": 224})

A token that is a whole number must match exactly; a name matches any size, and the same name
must have the same size everywhere it appears (``"B C C"`` is a batch of square matrices).
``sizes`` fixes names from outside (another tensor's shape). Each failure is one line that
names the argument, the shape wanted and the shape given: a ``TypeError`` for the wrong type
or dtype, a ``ValueError`` for the wrong shape, with ``hint`` appended where the caller knows
the likely fix.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch


def _tokens(shape: str) -> list[str]:
    tokens = shape.replace(",", " ").replace("(", " ").replace(")", " ").split()
    if not tokens:
        raise ValueError(f"empty shape specification {shape!r}")
    return tokens


def _spelled(tokens: list[str], sizes: Mapping[str, int]) -> str:
    """``(B, 3, H, W)``, or with the sizes fixed from outside: ``(B, H, W) = (2, 224, 224)``."""
    spec = f"({', '.join(tokens)})"
    if sizes and any(t in sizes for t in tokens):
        values = ", ".join(str(sizes.get(t, t)) for t in tokens)
        return f"{spec} = ({values})"
    return spec


def check_shape(x, shape: str, name: str = "tensor", *, floating: bool = True,
                sizes: Mapping[str, int] | None = None, hint: str = "") -> torch.Tensor:
    """Check that ``x`` is a tensor of the given shape (and floating point) and return it unchanged.

    Args:
        x: the value to check.
        shape: one token per dimension, e.g. ``"B C H W"``, ``"1 3 H W"``, ``"B H W"``.
            Whole numbers match exactly; names match any size, consistently.
        name: the argument's name, for the message.
        floating: also require a floating-point dtype (default).
        sizes: sizes that names must have (``{"B": 2}``).
        hint: appended to every error (``" — add a batch dimension with x[None]"``).

    Returns:
        ``x`` itself (never copied).

    Raises:
        TypeError: ``x`` is not a tensor, or not floating point when ``floating``.
        ValueError: the number of dimensions or a size is wrong.
    """
    tokens = _tokens(shape)
    bound: dict[str, int] = dict(sizes or {})
    if not isinstance(x, torch.Tensor):
        kind = "a NumPy array" if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"{name} must be a tensor {_spelled(tokens, bound)}, got {kind}{hint}")
    given = tuple(x.shape)
    wanted = _spelled(tokens, bound)
    ok = x.ndim == len(tokens)
    if ok:
        for token, size in zip(tokens, given):
            if token.isdigit():
                ok = size == int(token)
            elif token in bound:
                ok = size == bound[token]
            else:
                bound[token] = size
            if not ok:
                break
    if not ok:
        raise ValueError(f"{name} must have shape {wanted}, got {given}{hint}")
    if floating and not x.is_floating_point():
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}{hint}")
    return x


def check_positive_int(value, name: str) -> int:
    """``value`` as an ``int`` if it is a whole number of at least 1 (not a bool); else a
    ``ValueError`` naming ``name``: ``batch_size must be a positive integer, got 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_number(value, name: str, *, positive: bool = False, minimum: float | None = None) -> float:
    """``value`` as a ``float`` if it is a finite real number (not a bool), above 0 with
    ``positive``, at least ``minimum`` if given; else a ``ValueError`` naming ``name``:
    ``style_weight must be a finite number >= 0, got nan``."""
    want = "> 0" if positive else (f">= {minimum:g}" if minimum is not None else "")
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    number = float(value) if ok else float("nan")
    if not ok or not np.isfinite(number) or (positive and number <= 0) or \
            (minimum is not None and number < minimum):
        raise ValueError(f"{name} must be a finite number{' ' + want if want else ''}, got {value!r}")
    return number
