"""How close a benchmark row comes to this machine's own limit on the same work.

For one call of a row's function (vizlib's or the peer's):

- :func:`capture` counts its FLOPs the way ``torch.utils.flop_counter.FlopCounterMode`` does
  (matrix products and convolutions, forward and backward, as the call runs them; its formulas,
  see :class:`_WorkLog` for why not the mode itself) and records every
  convolution it runs — ``aten.convolution`` forward and ``aten.convolution_backward`` with the
  gradients autograd asked for — with the shapes, strides (memory format) and dtypes it ran at.
  The recording sits below autocast, so a bf16-autocast row records bf16 convolutions.
- :func:`time_kernels` runs those convolutions alone, on random tensors of the same shapes,
  strides and dtypes, in the same process: the rate (FLOP-weighted over the row's convolutions:
  their FLOPs over their summed times) is what this machine reaches on the row's dominant
  kernels with nothing else in the way — no Python, no elementwise ops, no layout changes.
- :func:`roofline` puts both together: achieved GFLOP/s of each side and the fraction of that
  limit (achieved / limit) it reaches.

Timings here are the *best* of a few runs of each kernel (a limit, not a typical time), so on
a busy machine the fractions come out low rather than high.
"""
from __future__ import annotations

import platform
import time
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode, flop_registry

aten = torch.ops.aten

#: The kernels timed alone: the convolutions, forward and backward.
CONV_OPS = (aten.convolution.default, aten.convolution_backward.default)


# ----------------------------------------------------------------------------------------
# The machine
# ----------------------------------------------------------------------------------------

def cpu_name() -> str:
    """The CPU model (``model name`` in /proc/cpuinfo, else :func:`platform.processor`), with
    the bf16 instructions it has (AVX512-BF16, AMX) and the threads torch uses."""
    name, flags = "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not name:
                name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    isa = [label for flag, label in (("avx512_bf16", "AVX512-BF16"), ("amx_tile", "AMX")) if flag in flags]
    return f"{name}{', ' + ', '.join(isa) if isa else ''}, {torch.get_num_threads()} threads"


def gpu_name(device: torch.device | None = None) -> str:
    """The CUDA GPU's name, or ``"none"`` when there is none."""
    if not torch.cuda.is_available():
        return "none"
    return torch.cuda.get_device_name(device if device is not None and device.type == "cuda" else 0)


def machine(device: torch.device) -> str:
    """One line for a table header: the CPU model, the GPU, and which of them ran the rows."""
    return f"CPU {cpu_name()}; GPU {gpu_name(device)}; rows run on the {device.type.upper()}"


# ----------------------------------------------------------------------------------------
# Recording one call
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TensorSpec:
    """A tensor's shape, strides (so its memory format), dtype and device, without its data."""
    shape: tuple
    stride: tuple
    dtype: torch.dtype
    device: str

    @classmethod
    def of(cls, t: torch.Tensor) -> "TensorSpec":
        return cls(tuple(t.shape), tuple(t.stride()), t.dtype, str(t.device))

    def make(self, device=None) -> torch.Tensor:
        """Random values in this layout (``device``: e.g. ``"meta"`` to count without data)."""
        size = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride) if n > 0)
        flat = torch.randn(size if all(self.shape) else 0, dtype=self.dtype, device=device or self.device)
        return flat.as_strided(self.shape, self.stride)


def _freeze(a):
    """Hashable form of an op argument: tensors -> :class:`TensorSpec`, lists -> tuples."""
    if isinstance(a, torch.Tensor):
        return TensorSpec.of(a)
    if isinstance(a, (list, tuple)):
        return tuple(_freeze(b) for b in a)
    return a


def _thaw(a, device=None):
    if isinstance(a, TensorSpec):
        return a.make(device)
    if isinstance(a, tuple):
        return [_thaw(b, device) for b in a]
    return a


@dataclass(frozen=True)
class Kernel:
    """One convolution call as it ran: the aten op and its arguments (tensors as specs)."""
    op: object
    args: tuple

    def inputs(self, device=None) -> list:
        """Fresh arguments: random tensors in the recorded layouts, other arguments as recorded."""
        return [_thaw(a, device) for a in self.args]

    @cached_property
    def flops(self) -> int:
        """Its FLOPs as ``FlopCounterMode`` counts them (on meta tensors: no data, no time)."""
        with FlopCounterMode(display=False) as counter:
            self.op(*self.inputs("meta"))
        return counter.get_total_flops()


def op_flops(func, args, kwargs, out) -> int:
    """FLOPs of one aten call, by ``torch.utils.flop_counter``'s own formulas (the table
    ``FlopCounterMode`` counts with); 0 for ops it does not count (elementwise, copies)."""
    count = flop_registry.get(func.overloadpacket)
    return int(count(*args, **kwargs, out_val=out)) if count is not None else 0


class _WorkLog(TorchDispatchMode):
    """Counts FLOPs as ``FlopCounterMode`` does and records every call of :data:`CONV_OPS`
    (below autograd and autocast: the dtypes and layouts the kernels really ran at).

    ``FlopCounterMode`` itself is not used for whole calls: its module tracker puts hooks on
    every module's inputs, and ``torch.autograd.grad`` with respect to a leaf (how vizlib and
    Captum take gradients of the pixels) then fails with "A leaf node was passed to
    _will_engine_execute_node ...". Its formulas are used as they are (:func:`op_flops`).
    """

    def __init__(self):
        super().__init__()
        self.flops = 0
        self.kernels: Counter = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func.overloadpacket not in flop_registry and \
                torch._C._dispatch_has_kernel_for_dispatch_key(func.name(), "CompositeImplicitAutograd"):
            # under inference_mode a mode sees ops such as aten.conv2d before they decompose:
            # decompose them here (through this mode) so their aten.convolution is seen
            with self:
                out = func.decompose(*args, **kwargs)
            if out is not NotImplemented:
                return out
        out = func(*args, **kwargs)
        self.flops += op_flops(func, args, kwargs, out)
        if func in CONV_OPS and not kwargs:
            self.kernels[Kernel(func, _freeze(tuple(args)))] += 1
        return out


@dataclass
class Work:
    """What one call did: all its counted FLOPs, and the convolutions it ran (with counts)."""
    flops: int
    kernels: Counter

    @property
    def conv_flops(self) -> int:
        return sum(k.flops * n for k, n in self.kernels.items())


def capture(fn: Callable[[], object]) -> Work:
    """Run ``fn()`` once, counting its FLOPs and recording its convolutions (see the module
    docstring). The call is slower than usual (every op passes through Python): never time it."""
    with _WorkLog() as log:
        fn()
    return Work(log.flops, log.kernels)


# ----------------------------------------------------------------------------------------
# Timing the kernels alone
# ----------------------------------------------------------------------------------------

def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def best_time(kernel: Kernel, reps: int = 3, warmup: int = 1) -> float:
    """The best wall time in seconds of ``kernel`` alone over ``reps`` runs after ``warmup``
    (CUDA-synchronised), on random inputs in its recorded layouts."""
    args = kernel.inputs()
    device = next(a.device for a in kernel.args if isinstance(a, TensorSpec))
    with torch.no_grad():
        for _ in range(warmup):
            kernel.op(*args)
        best = float("inf")
        for _ in range(reps):
            _sync(device)
            t = time.perf_counter()
            kernel.op(*args)
            _sync(device)
            best = min(best, time.perf_counter() - t)
    return best


def time_kernels(kernels: Counter, reps: int = 3, warmup: int = 1) -> tuple[int, float]:
    """FLOPs and seconds of ``kernels`` run alone: each distinct call timed once
    (:func:`best_time`), weighted by how often the work ran it."""
    flops = seconds = 0
    for kernel, count in kernels.items():
        flops += kernel.flops * count
        seconds += best_time(kernel, reps, warmup) * count
    return flops, seconds


def kernel_rate(kernels: Counter, reps: int = 3, warmup: int = 1) -> float:
    """FLOP/s this machine reaches on ``kernels`` alone (total FLOPs / total time; 0 if none)."""
    flops, seconds = time_kernels(kernels, reps, warmup)
    return flops / seconds if seconds > 0 else 0.0


# ----------------------------------------------------------------------------------------
# A row's roofline
# ----------------------------------------------------------------------------------------

@dataclass
class Roofline:
    """A row's FLOPs per call for each side and the machine's limit on its convolutions.

    ``limit``: FLOP/s of the row's convolutions run alone — the faster of vizlib's and the
    peer's convolutions (when they differ in batch or layout), at the precision they ran at;
    ``limit_from`` says whose. ``conv_share``: the convolutions' share of vizlib's FLOPs.
    """
    flops_vizlib: int
    flops_peer: int
    limit: float
    limit_from: str
    conv_share: float

    def rate(self, flops: float, seconds: float) -> float:
        """Achieved FLOP/s."""
        return flops / seconds if seconds > 0 else 0.0

    def fraction(self, flops: float, seconds: float) -> float:
        """Achieved rate over the limit (0 when there is no limit to compare with)."""
        return self.rate(flops, seconds) / self.limit if self.limit > 0 else 0.0


def roofline(ours: Callable[[], object], theirs: Callable[[], object], reps: int = 3,
             warmup: int = 1) -> Roofline:
    """Capture one call of each side and time the convolutions of both alone (see module)."""
    a, b = capture(ours), capture(theirs)
    rate_a = kernel_rate(a.kernels, reps, warmup)
    same = set(a.kernels) == set(b.kernels)
    rate_b = rate_a if same else kernel_rate(b.kernels, reps, warmup)
    share = a.conv_flops / a.flops if a.flops else 0.0
    if rate_b > rate_a:
        return Roofline(a.flops, b.flops, rate_b, "peer's", share)
    return Roofline(a.flops, b.flops, rate_a, "vizlib's" if not same else "both", share)
