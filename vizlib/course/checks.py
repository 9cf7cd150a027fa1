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
