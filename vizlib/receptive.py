"""Receptive fields: which input pixels can a unit of a layer see?

A unit of a conv layer looks at a ``k x k`` window of the layer below; that layer's units
look at windows of the layer below them, and so on down to the image. Stacking makes the
field grow: three 3x3 convs with stride 1 see ``3 -> 5 -> 7`` pixels, a ``7 x 7`` field
(each extra 3x3 conv adds ``(3 - 1) * 1 = 2``). Strides make later layers grow faster:
after a stride-2 layer, neighbouring units sit 2 input pixels apart (the *jump*), and each
extra kernel tap of a later layer adds a whole jump to the field.

The recurrence, walking the layers in forward order, for a layer with kernel ``k``,
stride ``s``, padding ``p`` and dilation ``d`` (effective kernel ``k' = d (k - 1) + 1``)::

    size  += (k' - 1) * jump      # the new taps, each one jump apart in the input
    start -= p * jump             # padding shifts the window of unit 0 up / left
    jump  *= s                    # neighbouring output units now sit further apart

starting from the image itself: ``size = 1, jump = 1, start = 0``.

Convention (one axis; the same holds for rows and columns, kernels must be square):
    the unit at output index ``i`` sees the input pixels ``[start(i), start(i) + size)``
    with ``start(i) = offset + i * stride``. ``offset`` is the top-left of unit 0's
    field; with padding it is negative (the field hangs over the border, into the
    zero padding). :meth:`ReceptiveField.box` gives the box of unit ``(y, x)`` as
    ``(top, left, bottom, right)`` with exclusive ``bottom`` / ``right``, in input
    pixel coordinates (which may lie outside the image).

:func:`receptive_fields` computes this analytically for every spatial layer of a model;
:func:`empirical_receptive_field` measures it by back-propagation, as an independent check.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from .hooks import stop_after
from .layers import get_layer, layer_names

__all__ = ["ReceptiveField", "receptive_fields", "empirical_receptive_field"]


@dataclass(frozen=True)
class ReceptiveField:
    """The receptive field of a layer's units along one axis (square layers: both axes).

    Attributes:
        size: side length of the field in input pixels.
        stride: distance in input pixels between neighbouring units (the *jump*).
        offset: top-left input coordinate of unit 0's field (negative with padding).
            Unit ``i`` sees pixels ``[offset + i * stride, offset + i * stride + size)``.
    """

    size: int
    stride: int
    offset: float

    def start(self, i: int) -> float:
        """First input pixel seen by the unit at output index ``i``."""
        return self.offset + i * self.stride

    def center(self, i: int) -> float:
        """Centre of the field of unit ``i`` in input pixels (pixel ``p`` spans [p, p+1))."""
        return self.start(i) + self.size / 2

    def box(self, y: int, x: int) -> tuple[int, int, int, int]:
        """The field of unit ``(y, x)`` as ``(top, left, bottom, right)``, bottom/right exclusive.

        In input pixel coordinates; may extend beyond the image (padding).
        """
        top, left = int(self.start(int(y))), int(self.start(int(x)))
        return top, left, top + self.size, left + self.size


# ----------------------------------------------------------------------------------------
# Analytic
# ----------------------------------------------------------------------------------------

_IDENTITY = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.GELU, nn.SiLU, nn.Sigmoid, nn.Tanh,
             nn.BatchNorm2d, nn.Dropout, nn.Dropout2d, nn.Identity, nn.LocalResponseNorm)
_NOT_SPATIAL = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Linear, nn.Flatten)


def _square(value, what: str, module: nn.Module) -> int:
    """``value`` as one int; raise if it differs between the two axes."""
    if isinstance(value, (tuple, list)):
        if len(set(value)) != 1:
            raise ValueError(f"{type(module).__name__} has non-square {what} {tuple(value)}; "
                             "receptive fields here assume square kernels, strides and padding")
        value = value[0]
    return int(value)


def _geometry(module: nn.Module) -> tuple[int, int, int, int]:
    """``(kernel, stride, padding, dilation)`` of a conv or pooling layer, checked square."""
    k = _square(module.kernel_size, "kernel_size", module)
    s = _square(module.stride if module.stride is not None else k, "stride", module)
    d = _square(getattr(module, "dilation", 1), "dilation", module)
    pad = module.padding
    if isinstance(pad, str):
        if pad == "valid":
            pad = 0
        elif pad == "same" and (d * (k - 1)) % 2 == 0:
            pad = d * (k - 1) // 2
        else:
            raise ValueError(f"{module}: padding={pad!r} is not symmetric; cannot place its field")
    p = _square(pad, "padding", module)
    return k, s, p, d


@dataclass
class _State:
    size: int = 1
    jump: int = 1
    start: int = 0
    spatial: bool = True

    def apply(self, k: int, s: int, p: int, d: int = 1) -> None:
        self.size += d * (k - 1) * self.jump
        self.start -= p * self.jump
        self.jump *= s

    def field(self) -> ReceptiveField:
        return ReceptiveField(self.size, self.jump, self.start)


def _walk(module: nn.Module, state: _State, names: dict, out: dict) -> None:
    """Advance ``state`` through ``module`` (in forward order), recording named layers."""
    if not state.spatial:
        return
    kind = type(module).__name__
    if isinstance(module, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
        state.apply(*_geometry(module))
    elif isinstance(module, _IDENTITY):
        pass
    elif isinstance(module, _NOT_SPATIAL):
        state.spatial = False  # adaptive pooling / fc: no fixed field from here on
        return
    elif kind == "Fire":  # SqueezeNet: squeeze 1x1, then the larger of expand 1x1 / 3x3
        _walk(module.squeeze, state, names, out)
        branches = []
        for branch in (module.expand1x1, module.expand3x3):
            trial = copy.copy(state)
            _walk(branch, trial, {}, {})
            branches.append(trial)
        widest = max(branches, key=lambda b: b.size)
        state.size, state.jump, state.start = widest.size, widest.jump, widest.start
    elif kind == "BasicBlock":  # ResNet: conv1 (block stride), conv2; the skip lies inside
        _walk(module.conv1, state, names, out)
        _walk(module.conv2, state, names, out)
    elif kind == "Bottleneck":
        for conv in (module.conv1, module.conv2, module.conv3):
            _walk(conv, state, names, out)
    elif len(list(module.children())) > 0:
        # Sequential, or a container whose children are registered in forward order
        # (torchvision's ResNet / AlexNet / VGG / SqueezeNet, the course's ShapesNet).
        for child in module.children():
            _walk(child, state, names, out)
    else:
        raise TypeError(f"cannot compute a receptive field through {kind} ({module}); "
                        "supported: Conv2d, MaxPool2d, AvgPool2d, element-wise layers, "
                        "SqueezeNet Fire, ResNet blocks")
    if state.spatial and id(module) in names:
        out[names[id(module)]] = state.field()


def receptive_fields(model: nn.Module) -> dict[str, ReceptiveField]:
    """Analytic receptive field of every spatial named layer of ``model``.

    Args:
        model: a :class:`~vizlib.models.CourseModel` (layers by course name) or any
            ``nn.Module`` (layers by dotted ``named_modules()`` path). Its children must be
            registered in forward order, as in every course network.

    Returns:
        ``name -> ReceptiveField`` in forward order, for every layer whose output still has
        a fixed spatial field (up to the first adaptive pool / flatten / fc). Example: three
        stacked 3x3 convs (stride 1) give sizes 3, 5, 7.

    Raises:
        TypeError for a layer type it cannot reason about; ValueError for non-square kernels.
    """
    names = {}
    for name in layer_names(model):
        names.setdefault(id(get_layer(model, name)), name)
    root = getattr(model, "net", model) if hasattr(model, "layer_paths") else model
    found: dict = {}
    _walk(root, _State(), names, found)
    order = [n for n in layer_names(model) if n in found]
    return OrderedDict((n, found[n]) for n in order)


# ----------------------------------------------------------------------------------------
# Empirical
# ----------------------------------------------------------------------------------------

def _positive_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in which every window sees all its inputs with weight > 0.

    Convs get weights ``1 / fan_in`` (float64) and zero bias; element-wise layers become
    ``Identity``; max pools become average pools of the same geometry. The original
    parameters are never copied (they are replaced anyway), which keeps VGG cheap. The copy is
    on the CPU, wherever ``model`` is.
    """
    memo = {id(p): nn.Parameter(torch.empty(0), requires_grad=False) for p in model.parameters()}
    net = copy.deepcopy(model, memo)
    replacements = {}
    for name, module in net.named_modules():
        if isinstance(module, nn.Conv2d):
            shape = (module.out_channels, module.in_channels // module.groups, *module.kernel_size)
            fan_in = shape[1] * shape[2] * shape[3]
            module.weight = nn.Parameter(torch.full(shape, 1.0 / fan_in, dtype=torch.float64),
                                         requires_grad=False)
            if module.bias is not None:
                module.bias = nn.Parameter(torch.zeros(shape[0], dtype=torch.float64),
                                           requires_grad=False)
        elif isinstance(module, nn.MaxPool2d):
            if _square(module.dilation, "dilation", module) != 1:
                raise ValueError(f"{name}: a dilated max pool has no average-pool twin")
            replacements[name] = nn.AvgPool2d(module.kernel_size, module.stride, module.padding,
                                              ceil_mode=module.ceil_mode)
        elif isinstance(module, _IDENTITY):
            replacements[name] = nn.Identity()
    for name, new in replacements.items():
        parent_name, _, child = name.rpartition(".")
        setattr(net.get_submodule(parent_name) if parent_name else net, child, new)
    return net.to(device="cpu", dtype=torch.float64).eval()  # its own float64 copy, on the CPU with x


def empirical_receptive_field(model: nn.Module, layer: str, input_size) -> tuple[int, int, int, int]:
    """Measure the receptive field of the centre unit of ``layer`` by back-propagation.

    Works on a positive copy of ``model`` (see :func:`_positive_copy`; ``model`` itself is
    not touched): feeds a float64 image of ones ``(1, 3, H, W)``, back-propagates from the
    unit at the centre ``(H_out // 2, W_out // 2)`` of ``layer``'s output (summed over
    channels) and returns the bounding box of the input pixels with nonzero gradient.

    Args:
        model: any module; ``layer`` a name :func:`~vizlib.layers.get_layer` accepts.
        input_size: ``H`` or ``(H, W)``; large enough that the centre unit's field lies
            inside the image.

    Returns:
        ``(size_h, size_w, top, left)`` in input pixels; compare with
        ``receptive_fields(model)[layer].box(H_out // 2, W_out // 2)``.

    Raises:
        ValueError when the field touches the image border (it may be clipped: use a
        larger ``input_size``) or the layer's output has no spatial extent.
    """
    h, w = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    net = _positive_copy(model)
    x = torch.ones(1, 3, h, w, dtype=torch.float64, requires_grad=True)
    with stop_after(net, layer) as outputs:
        net(x)
    out = outputs[layer]
    if out.dim() != 4 or out.shape[-1] < 1 or out.shape[-2] < 1:
        raise ValueError(f"layer {layer!r} has no spatial output (shape {tuple(out.shape)})")
    cy, cx = out.shape[-2] // 2, out.shape[-1] // 2
    (grad,) = torch.autograd.grad(out[0, :, cy, cx].sum(), x)
    seen = grad[0].abs().sum(0) > 0
    rows = seen.any(1).nonzero().flatten()
    cols = seen.any(0).nonzero().flatten()
    if rows.numel() == 0:
        raise ValueError(f"no input pixel reaches the centre unit of {layer!r}")
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    if top == 0 or left == 0 or bottom == h or right == w:
        raise ValueError(f"the receptive field of {layer!r}'s centre unit touches the border of "
                         f"a {h}x{w} input and may be clipped; use a larger input_size")
    return bottom - top, right - left, top, left
