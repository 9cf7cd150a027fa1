"""Run-time settings read from the environment: quick mode, offline switch, device.

Notebooks never read environment variables themselves; they ask this module.

- ``VIZLIB_QUICK=1`` shrinks image sizes and iteration counts so every notebook
  executes in CI in seconds (:func:`quick`, :func:`pick`).
- ``VIZLIB_OFFLINE=1`` forbids network access: models fall back to the course's
  own offline model and URLs are refused (:func:`offline`).

What vizlib does instead of what was asked (a fallback model, a stand-in painting) it says
with a :class:`VizlibWarning` (:func:`warn`), which ``warnings.filterwarnings`` can silence
or turn into an error: ``warnings.simplefilter("ignore", vizlib.config.VizlibWarning)``.
"""
from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

_PACKAGE_DIR = str(Path(__file__).resolve().parent) + os.sep

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
    # imported here, not at the top: the settings and warnings are read by processes that never
    # touch a tensor (each submission's grader, the CLI's argument checks), and torch takes 1.3 s
    import torch

    forced = os.environ.get("VIZLIB_DEVICE", "").strip()
    if forced:
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class VizlibWarning(UserWarning):
    """vizlib used a stand-in for what was asked (an offline model, a bundled painting).

    Filter it like any warning: ``warnings.simplefilter("ignore", VizlibWarning)`` hides the
    notices, ``"error"`` makes a fallback fail.
    """


def _outside_vizlib() -> int:
    """The ``stacklevel`` of the first frame outside the vizlib package, counted from the
    caller of this function (1 = that caller)."""
    level, frame = 0, inspect.currentframe().f_back
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(_PACKAGE_DIR):
        level, frame = level + 1, frame.f_back
    return max(level, 1)


def warn(message: str) -> None:
    """Issue ``message`` as a :class:`VizlibWarning` attributed to the line of the caller's
    own code that led here (a notebook cell, a script), not to vizlib's internals: Python
    shows a warning once per location, so each cell that falls back says so."""
    warnings.warn(message, VizlibWarning, stacklevel=_outside_vizlib() + 1)
