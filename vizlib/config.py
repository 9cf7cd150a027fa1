"""Run-time settings read from the environment: quick mode, offline switch, device.

Notebooks never read environment variables themselves; they ask this module.

- ``VIZLIB_QUICK=1`` shrinks image sizes and iteration counts so every notebook
  executes in CI in seconds (:func:`quick`, :func:`pick`).
- ``VIZLIB_OFFLINE=1`` forbids network access: models fall back to the course's
  own offline model and URLs are refused (:func:`offline`).
"""
from __future__ import annotations

import os

import torch

_TRUE = {"1", "true", "yes", "on"}


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def quick() -> bool:
    """True when ``VIZLIB_QUICK`` is set: small sizes, few iterations."""
    return _flag("VIZLIB_QUICK")


def offline() -> bool:
    """True when ``VIZLIB_OFFLINE`` is set: never touch the network."""
    return _flag("VIZLIB_OFFLINE")


def pick(full, quick_value):
    """Return ``quick_value`` in quick mode, else ``full``.

    Example: ``steps = pick(200, 5)``.
    """
    return quick_value if quick() else full


def device() -> torch.device:
    """The best available device: CUDA, then Apple MPS, then CPU.

    ``VIZLIB_DEVICE`` (e.g. ``cpu``) overrides the choice.
    """
    forced = os.environ.get("VIZLIB_DEVICE", "").strip()
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")
