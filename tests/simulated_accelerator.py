"""A simulated accelerator for a machine without one: device mistakes fail here as on CUDA.

On a GPU runtime the course's models live on ``cuda`` while images made by helpers, read from
files or built by hand live on the CPU; mixing them in one operation raises. This machine has no
GPU, so every tensor is really on the CPU and such a mistake never shows. This module tags
tensors instead: a tensor is *on the accelerator* when it was moved or created there, and a
:class:`~torch.overrides.TorchFunctionMode` checks every torch call the way CUDA does:

- an operation whose tensor arguments (other than 0-dim CPU scalars, which CUDA accepts) are on
  both the CPU and the accelerator raises ``RuntimeError: Expected all tensors to be on the same
  device`` (indexing with CPU index tensors is allowed, as on CUDA; ``copy_`` crosses devices);
- ``.numpy()`` / ``np.asarray`` of an accelerator tensor raises, as for a CUDA tensor;
- the accelerator is ``torch.device("cpu", 0)`` (``VIZLIB_DEVICE=cpu:0``): ``.to("cpu:0")``,
  ``device="cpu:0"`` in a factory, ``module.to("cpu:0")`` put tensors and weights there, and an
  accelerator tensor's ``.device`` says ``cpu:0``; ``.to("cpu")`` / ``.cpu()`` bring them back;
- results of an operation are on the accelerator when one of its inputs is; gradients
  (``.grad``, ``torch.autograd.grad``) are where their tensors are.

A move returns a copy, as a real transfer does, so a caller's CPU tensor stays on the CPU.

The course's notebooks run under it in the test suite (``--nbval-kernel-name
vizlib-accelerator``, the kernel in ``tests/kernels/``): every lecture and solution then runs
with its model "on the GPU" and every helper-made image on the CPU, which is how Colab runs it.
"""
from __future__ import annotations

import contextlib
import functools

import torch
from torch.overrides import TorchFunctionMode

ACCELERATOR = torch.device("cpu", 0)
_TAG = "_vizlib_on_accelerator"
#: Calls that may take tensors on both devices, as on CUDA.
_CROSSING = {"to", "copy_", "__getitem__", "__setitem__", "cpu", "cuda", "__get__", "__set__",
             "__repr__", "__format__", "__str__", "item", "tolist"}
_LEAVING = {"numpy", "__array__"}


def _tensors(args, kwargs) -> list:
    """The tensors among the arguments, also inside lists and tuples (one level)."""
    out = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(t for t in a if isinstance(t, torch.Tensor))
    return out


def _tag_all(result, accelerator: bool):
    if isinstance(result, torch.Tensor):
        return _tag(result, accelerator)
    if isinstance(result, (list, tuple)):
        for r in result:
            if isinstance(r, torch.Tensor):
                _tag(r, accelerator)
    return result


def on_accelerator(t) -> bool:
    return isinstance(t, torch.Tensor) and t.__dict__.get(_TAG, False)


def _tag(t: torch.Tensor, accelerator: bool) -> torch.Tensor:
    t.__dict__[_TAG] = accelerator
    return t


def _is_accelerator(device) -> bool | None:
    """True / False for a device argument, None for no device."""
    if device is None:
        return None
    if isinstance(device, int):  # a CUDA ordinal
        return True
    d = torch.device(device)
    return d.type != "cpu" or d.index is not None


def _to_target(args, kwargs) -> bool | None:
    """Where ``Tensor.to(*args, **kwargs)`` goes: True, False, or None (device unchanged)."""
    if "device" in kwargs:
        return _is_accelerator(kwargs["device"])
    for a in args[1:]:
        if isinstance(a, torch.Tensor):
            return on_accelerator(a)
        if isinstance(a, (str, torch.device)):
            return _is_accelerator(a)
    return None


def _moved(result, source, accelerator: bool):
    """``result`` of a move, tagged; a new tensor if the move returned ``source`` itself."""
    if result is source and on_accelerator(source) != accelerator:
        result = result.clone()
    return _tag(result, accelerator)


class SimulatedAccelerator(TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        owner = getattr(func, "__self__", None)
        if name == "__get__" and isinstance(owner, type(torch.Tensor.device)):
            result = func(*args, **kwargs)
            attr = owner.__name__
            if attr == "device" and on_accelerator(args[0]):
                return ACCELERATOR
            if isinstance(result, torch.Tensor):  # .grad, .data, .T …: where their tensor is
                return _tag(result, on_accelerator(args[0]))
            return result
        tensors = _tensors(args, kwargs)
        if name in _LEAVING and any(map(on_accelerator, tensors)):
            raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to "
                            "copy the tensor to host memory first. (simulated accelerator)")
        if name not in _CROSSING and not (name.startswith("_") and not name.startswith("__")):
            devices = {on_accelerator(t) for t in tensors if t.dim() > 0 or on_accelerator(t)}
            if len(devices) > 1:
                raise RuntimeError(f"Expected all tensors to be on the same device, but found at least "
                                   f"two devices, cuda:0 and cpu! (simulated accelerator, in {name or func})")
        result = func(*args, **kwargs)
        if name == "to" and args and isinstance(args[0], torch.Tensor):
            target = _to_target(args, kwargs)
            source = args[0]
            return _moved(result, source, on_accelerator(source) if target is None else target)
        if name == "cpu":
            return _moved(result, args[0], False)
        if name == "cuda":
            return _moved(result, args[0], True)
        if name == "grad" and owner is None and "inputs" in func.__code__.co_varnames:
            inputs = kwargs.get("inputs", args[1] if len(args) > 1 else None)
            inputs = [inputs] if isinstance(inputs, torch.Tensor) else list(inputs)
            return tuple(g if g is None else _tag(g, on_accelerator(i)) for g, i in zip(result, inputs))
        if name.endswith("_") and args and result is args[0]:
            return result  # in place: the tensor stays where it is
        where = _is_accelerator(kwargs.get("device"))
        if where is None:
            where = any(map(on_accelerator, tensors))
        return _tag_all(result, where)


def _module_mover(original, accelerator_of):
    @functools.wraps(original)
    def move(module, *args, **kwargs):
        out = original(module, *args, **kwargs)
        where = accelerator_of(args, kwargs)
        if where is not None:
            for t in list(module.parameters()) + list(module.buffers()):
                _tag(t, where)
                if t.grad is not None:
                    _tag(t.grad, where)
        return out
    return move


def _module_to_target(args, kwargs):
    device = torch._C._nn._parse_to(*args, **kwargs)[0]
    return _is_accelerator(device)


@contextlib.contextmanager
def active():
    """The simulation on within the block (this thread), off and every patch undone after it."""
    saved = {name: getattr(torch.nn.Module, name) for name in ("to", "cpu", "cuda")}
    torch.nn.Module.to = _module_mover(saved["to"], _module_to_target)
    torch.nn.Module.cpu = _module_mover(saved["cpu"], lambda a, k: False)
    torch.nn.Module.cuda = _module_mover(saved["cuda"], lambda a, k: True)
    parameter_copy = torch.nn.Parameter.__deepcopy__

    def deepcopy_parameter(p, memo):  # a copied network's weights stay where they were
        return _tag(parameter_copy(p, memo), on_accelerator(p))

    torch.nn.Parameter.__deepcopy__ = deepcopy_parameter
    try:
        with SimulatedAccelerator():
            yield
    finally:
        for name, method in saved.items():
            setattr(torch.nn.Module, name, method)
        torch.nn.Parameter.__deepcopy__ = parameter_copy


_installed = []


def install() -> None:
    """Turn the simulation on for good in this thread (a kernel's lifetime)."""
    if not _installed:
        block = active()
        block.__enter__()
        _installed.append(block)
