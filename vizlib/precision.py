"""The one precision policy of vizlib: float32 by default; bfloat16 autocast on request.

Every function that takes ``precision=`` (:func:`vizlib.render.render` and everything built
on it, :func:`vizlib.style.style_transfer`, :func:`vizlib.fast_style.stylize`,
``perceptual_loss``, ``train_step``, ``train``, and the CLI's ``--precision``) takes one of
:data:`PRECISIONS` and defaults to :data:`DEFAULT_PRECISION`, ``"float32"``:

- ``"float32"``: everything in float32.
- ``"bfloat16"``: the network runs under bfloat16 autocast; activations are cast back to
  float32 before any loss, Gram matrix or image update, so results stay float32.
- ``"auto"``: bfloat16 where the device multiplies it natively (:func:`bf16_is_fast`), float32
  elsewhere.

Why float32 is the default, not ``"auto"`` (measured on this project's AVX512-BF16 CPU, one
thread, EfficientNet-Lite0, ``ascent`` with its default regularisers and transforms, 30 steps):
bfloat16 harms pixel-space class visualisation — the two classes' float32 scores of the
rendered images were 16.4 and 13.0 against float32's 18.9 and 16.2 at 224 px (13-20 % lower),
and up to 26 % lower at 96 px — and feature inversion ended 3 % further from its target, while
a render step was only 1.0-1.2x faster (slower at 96 px); style transfer and filter
visualisation in the Fourier basis were unharmed. A default must be safe for every caller and
give the same figures on every machine (``"auto"`` would make a lecture's numbers depend on
the student's CPU), so the speed-up is opt-in: pass ``"auto"`` for long style or fast-style
runs (a VGG19 Gatys step 1.35x, fast-style training 1.6x faster where bf16 is native,
``bench/RESULTS.md``).
"""
from __future__ import annotations

import torch

__all__ = ["PRECISIONS", "DEFAULT_PRECISION", "bf16_is_fast", "resolve_precision", "autocast"]

#: The values a ``precision=`` argument takes.
PRECISIONS = ("auto", "float32", "bfloat16")

#: The default of every ``precision=`` argument in vizlib (see the module docstring for why).
DEFAULT_PRECISION = "float32"


def bf16_is_fast(device) -> bool:
    """Whether ``device`` multiplies bfloat16 natively, so that bf16 autocast beats float32.

    True for CUDA GPUs of compute capability 8.0 or more (Ampere, Ada, Hopper, Blackwell) and
    for CPUs with AVX512-BF16 or AMX; elsewhere bf16 is emulated and slower than float32.
    """
    device = torch.device(device)
    try:
        if device.type == "cuda":
            return torch.cuda.is_available() and torch.cuda.get_device_capability(device) >= (8, 0)
        if device.type == "cpu":
            cpu = torch.cpu
            return bool(cpu._is_avx512_bf16_supported() or cpu._is_amx_tile_supported())
    except (AttributeError, RuntimeError):  # a torch without these probes: be conservative
        return False
    return False


def resolve_precision(precision: str, device) -> str:
    """``"float32"`` or ``"bfloat16"``: ``precision`` itself, or for ``"auto"`` bfloat16 where
    :func:`bf16_is_fast` and float32 elsewhere. Anything else is a ``ValueError``."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(map(repr, PRECISIONS))}, got {precision!r}")
    if precision == "auto":
        return "bfloat16" if bf16_is_fast(device) else "float32"
    return precision


def autocast(precision: str, device) -> torch.autocast:
    """The autocast context for ``precision`` on ``device``: bfloat16 autocast when
    :func:`resolve_precision` says ``"bfloat16"``, a disabled one (float32) otherwise."""
    device = torch.device(device)
    low = resolve_precision(precision, device) == "bfloat16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=low)
