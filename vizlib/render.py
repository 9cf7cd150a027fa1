"""One optimisation loop for every image the course makes by gradient ascent.

Class models, filter visualisation, fooling images, DeepDream, feature inversion (lectures
08-11) and texture / style synthesis (lectures 12-13) all solve the same problem with the
network's weights frozen:

    x* = argmax_x  objective(phi(T(x)))  -  sum_k  w_k R_k(x)

where ``x = param()`` is an image made from learnable tensors (a *parameterisation*),
``T`` is a random *transform* drawn afresh each step (jitter, scale, rotate — robustness,
so the image cannot rely on one exact pixel alignment), ``phi`` the activations of the
layers the objective reads, and ``R_k`` *regularisers*. This module holds the pluggable
parts and the loop; :mod:`vizlib.ascent` builds the lectures' techniques on it.

The parts
---------
``layer_outputs(model, images, layers) -> {name: tensor}``
    runs the model only as far as the deepest requested layer (a forward hook ends the pass
    early); gradients flow. The name ``"logits"`` means the model's output.

``Objective(fn, layers)``
    ``fn(acts) -> (B,)``, a value per image to **maximise**, and the layer names it reads.
    Objectives combine: ``a + b``, ``a - b``, ``-a``, ``2 * a``, ``a / 4``. Constructors:
    :func:`class_score`, :func:`channel`, :func:`neuron`, :func:`layer_energy`,
    :func:`feature_distance` (write your own the same way, e.g. Gram-matrix style losses).

Parameterisations (``param.tensors``: the learnable leaves; ``param()`` -> ``(B, 3, H, W)``
in [0, 1])
    :class:`PixelImage` (the pixels themselves, from an image or from seeded noise; kept in
    [0, 1] by projection after every step) and :class:`FourierImage` (a scaled Fourier
    spectrum in decorrelated colour, squashed by a sigmoid — Olah et al. 2017,
    "Feature Visualization", Distill).

Transforms (``t(images, generator) -> images``)
    :class:`Jitter`, :class:`RandomScale`, :class:`RandomRotate`, :class:`Compose`. Every
    random draw comes from the ``torch.Generator`` the loop passes in.

Regularisers
    *penalties*, added to the loss with a weight (``reg.penalty(x) -> (B,)``):
    :class:`L2` and :class:`TV` (total variation with exponent ``beta``, Mahendran & Vedaldi
    2015); *between-step operations* on a :class:`PixelImage`
    (``reg.after_step(pixels, grad, step)``, in place, Yosinski et al. 2015, "Understanding
    Neural Networks Through Deep Visualization"): :class:`BlurEvery` (Gaussian blur every
    ``k`` steps), :class:`ClipSmallValues`, :class:`ClipSmallGradients`.

``render(model, objective, param, *, steps, lr, optimizer, transforms, regularizers, seed,
progress, callback) -> RenderResult(image, history)``
    the loop: Adam, plain gradient ascent (``"sgd"``) or L-BFGS; deterministic given
    ``seed`` (and the parameterisation's own seed); the model is left exactly as it came
    (weights, ``.grad``, ``requires_grad``, train/eval mode, hooks) — it must be in eval mode.

Example::

    model = load_model("vgg16")
    obj = class_score(model.classes.index("goldfish")) - 0.5 * channel("relu4_3", 7)
    param = FourierImage((1, 3, 224, 224), seed=0)
    result = render(model, obj, param, steps=256, lr=0.05,
                    transforms=[Jitter(8), RandomScale((0.9, 1.1)), RandomRotate(10)],
                    regularizers=[TV(1e-2)])
    result.image            # (1, 3, 224, 224) in [0, 1]
    result.history["objective"][-1]
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .models import fast_layout, get_layer, require_eval

__all__ = [
    "layer_outputs", "Objective", "class_score", "channel", "neuron", "layer_energy",
    "feature_distance", "PixelImage", "FourierImage", "Jitter", "RandomScale", "RandomRotate",
    "Compose", "rotate", "L2", "TV", "BlurEvery", "ClipSmallValues", "ClipSmallGradients",
    "total_variation", "gaussian_kernel", "gaussian_blur", "render", "RenderResult", "LOGITS", "GREY",
    "COLOR_CORRELATION_SQRT", "color_correlation_sqrt", "PRECISIONS", "bf16_is_fast",
    "resolve_precision",
]

#: The name :func:`layer_outputs` gives the model's final output (pre-softmax scores).
LOGITS = "logits"
#: The neutral image value: L2 and the clipping operations pull pixels towards it.
GREY = 0.5


# ----------------------------------------------------------------------------------------
# Precision: float32, or bfloat16 autocast where the hardware is fast at it
# ----------------------------------------------------------------------------------------

#: The values a ``precision=`` argument takes.
PRECISIONS = ("auto", "float32", "bfloat16")


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


# ----------------------------------------------------------------------------------------
# Running the model as far as needed
# ----------------------------------------------------------------------------------------

class _Enough(Exception):
    """Raised inside a forward hook once every requested layer has run."""


def _names(layers) -> list[str]:
    if isinstance(layers, str):
        return [layers]
    names = list(dict.fromkeys(layers))
    if not names:
        raise ValueError("layer_outputs: no layers requested")
    for n in names:
        if not isinstance(n, str):
            raise TypeError(f"layers are given by name (str), got {type(n).__name__}")
    return names


def layer_outputs(model: nn.Module, images: torch.Tensor, layers: str | Iterable[str]
                  ) -> dict[str, torch.Tensor]:
    """The outputs of named layers, computing no more of the network than needed.

    Args:
        model: a network taking ``(B, 3, H, W)`` images in [0, 1] (a
            :class:`vizlib.models.CourseModel` normalises them itself).
        images: ``(B, 3, H, W)`` float in [0, 1].
        layers: names for :func:`vizlib.models.get_layer` (``"relu4_3"``, ``"features.3"``),
            and/or ``"logits"`` for the model's output.

    Returns:
        ``{name: tensor}`` in the order asked, still attached to the autograd graph (so an
        objective on them can be differentiated with respect to ``images``).

    Unless ``"logits"`` is asked for, the forward pass stops as soon as every requested layer
    has produced its output. Hooks live only inside this call (removed in ``finally``). A layer
    module that runs more than once per forward pass is captured at its first run.
    """
    names = _names(layers)
    wanted = [n for n in names if n != LOGITS]
    modules = {n: get_layer(model, n) for n in wanted}  # bad names fail before any hook
    store: dict[str, torch.Tensor] = {}
    stop_early = LOGITS not in names
    handles = []

    def make_hook(name):
        def hook(module, args, output):
            if name in store:
                return
            out = output[0] if isinstance(output, (tuple, list)) else output
            store[name] = out
            if stop_early and len(store) == len(modules):
                raise _Enough
        return hook

    logits = None
    try:
        for n, m in modules.items():
            handles.append(m.register_forward_hook(make_hook(n)))
        try:
            logits = model(fast_layout(images))
        except _Enough:
            pass
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in wanted if n not in store]
    if missing:
        raise ValueError(f"layer(s) {missing} did not run in {type(model).__name__}'s forward pass")
    if LOGITS in names:
        store[LOGITS] = logits
    return {n: store[n] for n in names}


# ----------------------------------------------------------------------------------------
# Objectives
# ----------------------------------------------------------------------------------------

class Objective:
    """A value per image to maximise, computed from layer activations.

    Args:
        fn: ``fn(acts) -> (B,)`` where ``acts`` maps layer names (and ``"logits"``) to
            tensors from :func:`layer_outputs`.
        layers: the names ``fn`` reads.
        name: a label for printing.

    Objectives combine with ``+``, ``-``, unary ``-``, and ``*`` / ``/`` by a number; the
    result reads the union of the layers.
    """

    def __init__(self, fn: Callable[[dict], torch.Tensor], layers: Sequence[str], name: str = "objective"):
        self.fn = fn
        self.layers = tuple(dict.fromkeys(layers))
        self.name = name

    def __call__(self, acts: dict) -> torch.Tensor:
        value = self.fn(acts)
        if value.dim() != 1:
            raise ValueError(f"objective {self.name!r} must return one value per image (B,), "
                             f"got shape {tuple(value.shape)}")
        return value

    def _combine(self, other, op, symbol):
        if isinstance(other, Objective):
            return Objective(lambda a: op(self(a), other(a)), self.layers + other.layers,
                             f"({self.name} {symbol} {other.name})")
        if isinstance(other, numbers.Number):
            return Objective(lambda a: op(self(a), other), self.layers, f"({self.name} {symbol} {other})")
        return NotImplemented

    def __add__(self, other):
        return self._combine(other, lambda a, b: a + b, "+")

    def __radd__(self, other):  # lets sum([...]) start from 0
        if isinstance(other, numbers.Number) and other == 0:
            return self
        return self._combine(other, lambda a, b: b + a, "+")

    def __sub__(self, other):
        return self._combine(other, lambda a, b: a - b, "-")

    def __neg__(self):
        return Objective(lambda a: -self(a), self.layers, f"-{self.name}")

    def __mul__(self, k):
        if not isinstance(k, numbers.Number):
            return NotImplemented
        return Objective(lambda a: self(a) * k, self.layers, f"{k} * {self.name}")

    __rmul__ = __mul__

    def __truediv__(self, k):
        if not isinstance(k, numbers.Number):
            return NotImplemented
        return Objective(lambda a: self(a) / k, self.layers, f"{self.name} / {k}")

    def __repr__(self) -> str:
        return f"Objective({self.name}, layers={list(self.layers)})"


def _check_4d(t: torch.Tensor, layer: str) -> torch.Tensor:
    if t.dim() != 4:
        raise ValueError(f"layer {layer!r} gives shape {tuple(t.shape)}; this objective needs (B, C, H, W)")
    return t


def class_score(index: int | Sequence[int]) -> Objective:
    """The pre-softmax score (logit) of class ``index`` (one int, or one per image).

    Simonyan, Vedaldi & Zisserman 2014, "Deep Inside Convolutional Networks": maximise the
    unnormalised score, not the probability (which can also rise by lowering the others).
    """
    def check(indices, k):
        bad = [int(i) for i in indices if not 0 <= int(i) < k]
        if bad:
            raise IndexError(f"class index {bad[0]} is out of range: the model has {k} classes (0..{k - 1})")

    def fn(acts):
        logits = acts[LOGITS]
        if isinstance(index, numbers.Integral):
            check([index], logits.shape[1])
            return logits[:, index]
        idx = torch.as_tensor(list(index), device=logits.device)
        if idx.numel() != logits.shape[0]:
            raise ValueError(f"class_score got {idx.numel()} classes for a batch of {logits.shape[0]}")
        check(idx.tolist(), logits.shape[1])
        return logits.gather(1, idx[:, None])[:, 0]
    return Objective(fn, (LOGITS,), f"class_score({index})")


def channel(layer: str, c: int | Sequence[int]) -> Objective:
    """Mean activation of channel ``c`` of ``layer`` over all positions: filter visualisation.

    ``c``: one channel for every image, or a sequence with one channel per image of the batch.
    """
    def fn(acts):
        a = _check_4d(acts[layer], layer)
        if isinstance(c, numbers.Integral):
            return a[:, c].mean(dim=(1, 2))
        idx = torch.as_tensor(list(c), device=a.device)
        if idx.numel() != a.shape[0]:
            raise ValueError(f"channel got {idx.numel()} channels for a batch of {a.shape[0]}")
        return a[torch.arange(a.shape[0], device=a.device), idx].mean(dim=(1, 2))
    return Objective(fn, (layer,), f"channel({layer}, {c})")


def neuron(layer: str, c: int, y: int | None = None, x: int | None = None) -> Objective:
    """Activation of one unit: channel ``c`` of ``layer`` at ``(y, x)`` (default: the centre).

    For a fully-connected layer ``(B, K)`` give ``c`` only.
    """
    def fn(acts):
        a = acts[layer]
        if a.dim() == 2:
            return a[:, c]
        a = _check_4d(a, layer)
        yy = a.shape[2] // 2 if y is None else y
        xx = a.shape[3] // 2 if x is None else x
        return a[:, c, yy, xx]
    return Objective(fn, (layer,), f"neuron({layer}, {c}, {y}, {x})")


def layer_energy(layer: str) -> Objective:
    """Mean squared activation of ``layer``: the DeepDream objective (Mordvintsev et al. 2015).

    Its gradient with respect to the activation is ``2 a / N`` — proportional to the activation
    itself, which is exactly DeepDream's "set the layer's gradient to its activation".
    """
    def fn(acts):
        a = acts[layer]
        return a.pow(2).flatten(1).mean(1)
    return Objective(fn, (layer,), f"layer_energy({layer})")


def feature_distance(layer: str, target: torch.Tensor) -> Objective:
    """Minus the mean squared distance between ``layer``'s activation and ``target``.

    ``target``: the activation to reproduce, shape ``(B, ...)`` or ``(1, ...)`` (broadcast);
    detached. Maximising this is feature inversion (Mahendran & Vedaldi 2015).
    """
    target = target.detach()

    def fn(acts):
        a = acts[layer]
        t = target.to(device=a.device, dtype=a.dtype)
        if t.shape[1:] != a.shape[1:]:
            raise ValueError(f"feature_distance: target has shape {tuple(t.shape)} but {layer!r} "
                             f"gives {tuple(a.shape)} (same image size needed)")
        return -(a - t).pow(2).flatten(1).mean(1)
    return Objective(fn, (layer,), f"feature_distance({layer})")


# ----------------------------------------------------------------------------------------
# Image parameterisations
# ----------------------------------------------------------------------------------------

def _shape4(shape) -> tuple[int, int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        shape = (1, 3) + shape
    if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
        raise ValueError(f"image shape must be (B, 3, H, W) or (H, W); got {shape}")
    return shape


class PixelImage:
    """The image's pixels are the parameters.

    Args:
        init: ``(B, 3, H, W)`` float in [0, 1] to start from (copied; never modified), or
            ``None`` for grey plus seeded Gaussian noise of std ``noise``.
        shape: ``(B, 3, H, W)`` or ``(H, W)`` when ``init`` is ``None``.
        seed: seed of the noise.
        noise: noise std (in [0, 1] pixel units).
        device, dtype: of the parameters (default: those of ``init``, else CPU float32).

    ``param()`` returns the pixels (the leaf tensor itself); the loop keeps them in [0, 1]
    by clamping after each step (projected gradient ascent).
    """

    def __init__(self, init: torch.Tensor | None = None, *, shape=None, seed: int = 0,
                 noise: float = 0.01, device=None, dtype=None):
        if init is not None:
            if not isinstance(init, torch.Tensor) or init.dim() != 4 or init.shape[1] != 3:
                raise ValueError(f"init must be (B, 3, H, W) in [0, 1]; got "
                                 f"{tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__}")
            x = init.detach().clone().to(device=device or init.device, dtype=dtype or init.dtype)
        else:
            if shape is None:
                raise ValueError("PixelImage needs an init image or a shape")
            g = torch.Generator().manual_seed(seed)
            x = GREY + noise * torch.randn(_shape4(shape), generator=g, dtype=torch.float64)
            x = x.to(device=device or "cpu", dtype=dtype or torch.float32)
        self.pixels = x.clamp(0, 1).requires_grad_(True)

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.pixels]

    @property
    def shape(self) -> tuple:
        return tuple(self.pixels.shape)

    def __call__(self) -> torch.Tensor:
        return self.pixels

    @torch.no_grad()
    def project(self) -> None:
        """Put the pixels back into [0, 1] (called by the loop after each step)."""
        self.pixels.clamp_(0, 1)


def color_correlation_sqrt(images: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The square root of the RGB covariance of ``images``, scaled so its largest column has norm 1.

    ``images``: ``(B, 3, H, W)`` or a list of such (sizes may differ). Returns ``(3, 3)``
    symmetric ``S`` with ``S @ S`` proportional to the colour covariance: multiplying
    independent (decorrelated) channels by ``S`` gives colours correlated as in real photos.
    """
    items = [images] if isinstance(images, torch.Tensor) else list(images)
    pixels = torch.cat([x.detach().double().permute(1, 0, 2, 3).reshape(3, -1) for x in items], dim=1)
    cov = torch.cov(pixels)
    vals, vecs = torch.linalg.eigh(cov)
    sqrt = vecs @ torch.diag(vals.clamp(min=0).sqrt()) @ vecs.T
    return (sqrt / sqrt.norm(dim=0).max()).float()


#: ``color_correlation_sqrt`` of the bundled sample images (each loaded at ``size=128``);
#: ``tests/test_render.py`` recomputes it.
COLOR_CORRELATION_SQRT = torch.tensor([[0.8532, 0.4287, 0.2971],
                                       [0.4287, 0.5994, 0.4995],
                                       [0.2971, 0.4995, 0.7039]])


class FourierImage:
    """An image made from a learnable Fourier spectrum in decorrelated colour.

    ``image = sigmoid(S @ irfft2(spectrum * scale))``: each frequency ``f`` of the spectrum is
    scaled by ``1 / f**decay`` (natural images have about this falloff), so plain gradient
    steps on the spectrum change low frequencies as readily as high ones, and ``S``
    (:data:`COLOR_CORRELATION_SQRT`) mixes decorrelated channels into natural colour
    correlations. Optimising here instead of in pixels avoids the high-frequency noise pixel
    ascent is prone to (Olah, Mordvintsev & Schubert 2017, "Feature Visualization", Distill).

    Args:
        shape: ``(B, 3, H, W)`` or ``(H, W)``.
        seed: seed of the initial spectrum (std ``std``).
        decay: the frequency falloff exponent.
        color: ``(3, 3)`` colour mixing matrix (default :data:`COLOR_CORRELATION_SQRT`).
    """

    def __init__(self, shape, *, seed: int = 0, std: float = 0.01, decay: float = 1.0,
                 color: torch.Tensor | None = None, device=None, dtype=torch.float32):
        b, c, h, w = _shape4(shape)
        self.size = (h, w)
        fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
        fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
        freq = (fx ** 2 + fy ** 2).sqrt().clamp(min=1.0 / max(h, w))
        scale = freq ** (-decay)
        scale = scale / scale.pow(2).mean().sqrt()  # unit-std spectrum noise -> about unit-std pixels
        self.scale = scale.to(device=device, dtype=dtype)
        self.color = (COLOR_CORRELATION_SQRT if color is None else color).to(device=device, dtype=dtype)
        g = torch.Generator().manual_seed(seed)
        spec = std * torch.randn((b, c, h, w // 2 + 1, 2), generator=g, dtype=torch.float64)
        self.spectrum = spec.to(device=device, dtype=dtype).requires_grad_(True)

    @property
    def tensors(self) -> list[torch.Tensor]:
        return [self.spectrum]

    @property
    def shape(self) -> tuple:
        return (self.spectrum.shape[0], 3, *self.size)

    def __call__(self) -> torch.Tensor:
        spec = torch.view_as_complex(self.spectrum) * self.scale
        x = torch.fft.irfft2(spec, s=self.size, norm="ortho")
        x = torch.einsum("ij,bjhw->bihw", self.color, x)
        return torch.sigmoid(x)


# ----------------------------------------------------------------------------------------
# Transforms
# ----------------------------------------------------------------------------------------

def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=g, dtype=torch.float64))


class Jitter:
    """Shift the image by up to ``pixels`` in x and y (wrapping around), a fresh draw per call."""

    def __init__(self, pixels: int):
        if pixels < 0:
            raise ValueError(f"Jitter needs pixels >= 0, got {pixels}")
        self.pixels = int(pixels)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if self.pixels == 0:
            return x
        dy, dx = torch.randint(-self.pixels, self.pixels + 1, (2,), generator=g).tolist()
        return torch.roll(x, shifts=(dy, dx), dims=(2, 3))

    def __repr__(self):
        return f"Jitter({self.pixels})"


class RandomScale:
    """Resize by a factor drawn uniformly from ``scales = (low, high)`` (bilinear)."""

    def __init__(self, scales=(0.9, 1.1)):
        self.scales = (float(scales[0]), float(scales[1]))

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        s = _uniform(g, *self.scales)
        h, w = x.shape[-2:]
        size = (max(1, round(h * s)), max(1, round(w * s)))
        if size == (h, w):
            return x
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)

    def __repr__(self):
        return f"RandomScale({self.scales})"


def rotate(x: torch.Tensor, degrees: float) -> torch.Tensor:
    """Rotate ``x`` ``(B, C, H, W)`` about its centre by ``degrees`` (bilinear, border pixels repeated)."""
    angle = math.radians(degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    theta = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=x.dtype, device=x.device)
    grid = F.affine_grid(theta.expand(x.shape[0], 2, 3), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class RandomRotate:
    """Rotate by an angle drawn uniformly from ``[-degrees, degrees]`` (border pixels repeated)."""

    def __init__(self, degrees: float = 10.0):
        self.degrees = float(degrees)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return rotate(x, _uniform(g, -self.degrees, self.degrees))

    def __repr__(self):
        return f"RandomRotate({self.degrees})"


class Compose:
    """Apply transforms in order, all drawing from the same generator."""

    def __init__(self, *transforms):
        self.transforms = list(transforms[0]) if len(transforms) == 1 and \
            isinstance(transforms[0], (list, tuple)) else list(transforms)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        for t in self.transforms:
            x = t(x, g)
        return x

    def __repr__(self):
        return f"Compose({self.transforms})"


# ----------------------------------------------------------------------------------------
# Regularisers
# ----------------------------------------------------------------------------------------

def total_variation(x: torch.Tensor, beta: float = 2.0, eps: float = 1e-8) -> torch.Tensor:
    """Total variation ``R_{V^beta}(x) = sum_{c,i,j} ((x[i,j+1]-x[i,j])^2 + (x[i+1,j]-x[i,j])^2)^(beta/2)``.

    Mahendran & Vedaldi 2015, "Understanding Deep Image Representations by Inverting Them".
    ``x``: ``(B, C, H, W)``; the sum runs over channels and over the ``(H-1) x (W-1)`` positions
    that have both a right and a lower neighbour. Returns ``(B,)``. ``beta = 2`` is the plain
    sum of squared differences; ``beta < 2`` favours sharp edges over gentle ramps. For
    ``beta != 2`` each term is ``(d^2 + eps)^(beta/2) - eps^(beta/2)``: zero on flat regions, as
    it should be, with a finite gradient there.
    """
    if x.dim() != 4:
        raise ValueError(f"total_variation expects (B, C, H, W); got {tuple(x.shape)}")
    dx = x[:, :, :-1, 1:] - x[:, :, :-1, :-1]
    dy = x[:, :, 1:, :-1] - x[:, :, :-1, :-1]
    d2 = dx * dx + dy * dy
    v = d2 if beta == 2 else (d2 + eps).pow(beta / 2) - eps ** (beta / 2)
    return v.flatten(1).sum(1)


class L2:
    """Penalty ``weight * mean((x - center)^2)`` per image: keeps pixels near grey.

    The seed's basic regulariser ``R(I) = lambda ||I||^2`` (Simonyan et al. 2014), with the
    image measured from ``center`` (grey, as a zero-centred image is measured from the mean)
    and averaged over pixels so ``weight`` does not depend on the image size.
    """

    name = "l2"

    def __init__(self, weight: float, center: float = GREY):
        self.weight, self.center = float(weight), float(center)

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x - self.center).pow(2).flatten(1).mean(1)

    def __repr__(self):
        return f"L2({self.weight})"


class TV:
    """Penalty ``weight * total_variation(x, beta) / (H * W)`` per image (see :func:`total_variation`)."""

    name = "tv"

    def __init__(self, weight: float, beta: float = 2.0):
        self.weight, self.beta = float(weight), float(beta)

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * total_variation(x, self.beta) / (x.shape[-1] * x.shape[-2])

    def __repr__(self):
        return f"TV({self.weight}, beta={self.beta})"


def gaussian_kernel(size: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """The normalised 1-D Gaussian of std ``sigma`` sampled at ``size`` points centred on the
    middle (the one kernel of vizlib: blur, RISE's canvas, SSIM's window). Shape: ``(size,)``."""
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return (k / k.sum()).to(dtype=dtype, device=device)


def gaussian_blur(x: torch.Tensor, sigma: float, size: int | None = None) -> torch.Tensor:
    """Blur each channel with a Gaussian of std ``sigma`` pixels (separable, reflected borders).

    ``size``: the kernel's width (default ``2 * ceil(3 sigma) + 1``, scipy's ``truncate=3``).
    Borders are reflected as far as the image allows and replicated beyond (tiny images).
    Shape: ``(B, C, H, W) -> (B, C, H, W)``. Keeps a constant image constant.
    """
    if sigma <= 0:
        return x
    size = int(size) if size is not None else 2 * max(1, int(math.ceil(3 * sigma))) + 1
    k = gaussian_kernel(size, sigma, x.dtype, x.device)
    half, c = size // 2, x.shape[1]
    pad = min(half, x.shape[-1] - 1, x.shape[-2] - 1)
    y = F.pad(x, (pad,) * 4, mode="reflect") if pad > 0 else x
    if pad < half:
        y = F.pad(y, (half - pad,) * 4, mode="replicate")
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, size), groups=c)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, size, 1), groups=c)


class BlurEvery:
    """Every ``every`` steps, blur the pixels with a Gaussian of std ``sigma`` (Yosinski et al. 2015).

    Removes the high-frequency patterns gradient ascent otherwise piles up.
    """

    name = "blur"

    def __init__(self, every: int = 4, sigma: float = 0.5):
        if every < 1:
            raise ValueError(f"BlurEvery needs every >= 1, got {every}")
        self.every, self.sigma = int(every), float(sigma)

    @torch.no_grad()
    def after_step(self, pixels: torch.Tensor, grad: torch.Tensor | None, step: int) -> None:
        if (step + 1) % self.every == 0:
            pixels.copy_(gaussian_blur(pixels, self.sigma))

    def __repr__(self):
        return f"BlurEvery({self.every}, sigma={self.sigma})"


def _small_mask(score: torch.Tensor, percentile: float) -> torch.Tensor:
    """``score``: (B, H, W); True where a pixel is below the image's ``percentile``-th percentile."""
    q = torch.quantile(score.flatten(1).double(), percentile / 100.0, dim=1).to(score.dtype)
    return score < q.view(-1, 1, 1)


class _PercentileClip:
    """Shared settings of the two clipping operations: a percentile in [0, 100] and the grey
    value clipped pixels are set to."""

    def __init__(self, percentile: float = 20.0, center: float = GREY):
        if not 0 <= percentile <= 100:
            raise ValueError(f"percentile must be in [0, 100], got {percentile}")
        self.percentile, self.center = float(percentile), float(center)

    def __repr__(self):
        return f"{type(self).__name__}({self.percentile})"


class ClipSmallValues(_PercentileClip):
    """After each step, set pixels whose colour is close to grey to grey (Yosinski et al. 2015).

    A pixel's size is ``||x[:, i, j] - center||`` over its three channels; pixels below the
    image's ``percentile``-th percentile of that size are set to ``center``. Only the strong
    evidence survives; the rest of the image stays neutral.
    """

    name = "clip_values"

    @torch.no_grad()
    def after_step(self, pixels: torch.Tensor, grad: torch.Tensor | None, step: int) -> None:
        size = (pixels - self.center).norm(dim=1)
        pixels.masked_fill_(_small_mask(size, self.percentile)[:, None].expand_as(pixels), self.center)


class ClipSmallGradients(_PercentileClip):
    """After each step, set pixels with a small gradient to grey (Yosinski et al. 2015).

    A pixel whose gradient norm over its channels is below the image's ``percentile``-th
    percentile barely affects the objective; it is set to ``center`` so the image keeps only
    what the unit responds to.
    """

    name = "clip_gradients"

    @torch.no_grad()
    def after_step(self, pixels: torch.Tensor, grad: torch.Tensor | None, step: int) -> None:
        if grad is None:
            return
        size = grad.norm(dim=1)
        pixels.masked_fill_(_small_mask(size, self.percentile)[:, None].expand_as(pixels), self.center)


# ----------------------------------------------------------------------------------------
# The loop
# ----------------------------------------------------------------------------------------

@dataclass
class RenderResult:
    """What :func:`render` returns.

    image: ``(B, 3, H, W)`` float in [0, 1], detached.
    history: ``name -> [value per step]``: ``"objective"`` (mean over the batch of the value
    maximised), one entry per penalty (by its ``name``, weighted), and ``"loss"`` (what was
    minimised: penalties minus objective).
    """

    image: torch.Tensor
    history: dict = field(default_factory=dict)

    @property
    def steps(self) -> int:
        return len(self.history.get("loss", []))


def _check_regularizer(r) -> None:
    if not (hasattr(r, "penalty") or hasattr(r, "after_step")):
        raise TypeError(f"{r!r} is not a regulariser: it needs a penalty(x) or an "
                        f"after_step(pixels, grad, step) method")


def render(model: nn.Module, objective: Objective, param, *, steps: int, lr: float,
           optimizer: str = "adam", transforms: Sequence[Callable] = (),
           regularizers: Sequence = (), seed: int = 0, progress: bool | None = None,
           callback: Callable | None = None, precision: str = "float32") -> RenderResult:
    """Optimise an image so ``objective`` is high and the penalties are low.

    Args:
        model: a network in eval mode taking ``(B, 3, H, W)`` in [0, 1]; it is not changed
            (weights, ``.grad``, ``requires_grad``, mode and hooks are as before, also if
            this raises). Its parameters must be on the image's device.
        objective: an :class:`Objective` (maximised; each image of the batch separately).
        param: a parameterisation (:class:`PixelImage`, :class:`FourierImage`, or any object
            with ``.tensors`` and ``__call__() -> (B, 3, H, W)``); optimised in place.
        steps: number of optimiser steps.
        lr: learning rate (Adam: about the pixel change per step; ``"sgd"``: the factor on the
            raw gradient; ``"lbfgs"``: the step size, 1 is usual).
        optimizer: ``"adam"``, ``"sgd"`` (plain gradient ascent ``x += lr * grad``, the seed's
            update) or ``"lbfgs"`` (with strong-Wolfe line search; one iteration per step).
        transforms: applied, in order, to the image before the model sees it; random draws
            come from a generator seeded by ``seed`` (the same draws within an L-BFGS step).
        regularizers: penalties (``.penalty(x) -> (B,)``, on the untransformed image) and
            between-step operations (``.after_step(pixels, grad, step)``, pixel
            parameterisation only).
        seed: seed of the transforms' random draws (the parameterisation has its own).
        progress: show a tqdm bar with the loss being minimised (``None``: when ``steps >= 100``).
        callback: ``callback(step, image)`` after each step (``image`` detached); returning
            ``True`` stops the loop early.
        precision: ``"float32"`` (default), ``"bfloat16"`` or ``"auto"``: ``"bfloat16"`` runs
            the network under bfloat16 autocast, with the activations cast back to float32
            before the objective, so Gram matrices, losses and the image stay float32. Losses
            agree with float32 to about 1 % (tested); on GPUs and CPUs with native bf16 a VGG19
            step is up to 2x faster (``bench/``). ``"auto"``: bfloat16 where
            :func:`bf16_is_fast`, float32 elsewhere.

    Returns:
        :class:`RenderResult` with the final image and the per-step history.
    """
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a vizlib.render.Objective, got {type(objective).__name__}")
    if not hasattr(param, "tensors") or not callable(param):
        raise TypeError(f"param must be a parameterisation (PixelImage, FourierImage …), got "
                        f"{type(param).__name__}")
    if int(steps) < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    require_eval(model, "render")
    regularizers = list(regularizers)
    for r in regularizers:
        _check_regularizer(r)
    penalties = [r for r in regularizers if hasattr(r, "penalty")]
    step_ops = [r for r in regularizers if hasattr(r, "after_step")]
    if step_ops and not isinstance(param, PixelImage):
        raise ValueError(f"{step_ops} change pixels between steps and need a PixelImage; "
                         f"got {type(param).__name__}")
    transform = Compose(list(transforms))
    tensors = list(param.tensors)
    layers = objective.layers
    if not layers:
        raise ValueError("the objective reads no layers")

    low_precision = resolve_precision(precision, tensors[0].device) == "bfloat16"
    kind = optimizer.lower()
    if kind == "adam":
        opt = torch.optim.Adam(tensors, lr=lr)
    elif kind == "sgd":
        opt = torch.optim.SGD(tensors, lr=lr)
    elif kind == "lbfgs":
        opt = torch.optim.LBFGS(tensors, lr=lr, max_iter=1, max_eval=25, history_size=20,
                                line_search_fn="strong_wolfe")
    else:
        raise ValueError(f"optimizer must be 'adam', 'sgd' or 'lbfgs', got {optimizer!r}")

    names = ["objective"] + [getattr(p, "name", type(p).__name__.lower()) for p in penalties] + ["loss"]
    history: dict[str, list[float]] = {n: [] for n in names}
    g = torch.Generator().manual_seed(seed)
    show = steps >= 100 if progress is None else bool(progress)
    bar = None
    if show:
        from tqdm.auto import tqdm
        bar = tqdm(total=steps, desc=objective.name[:40], leave=False)

    def evaluate(step_seed: int, record: dict | None):
        image = param()
        seen = transform(image, torch.Generator().manual_seed(step_seed))
        with torch.autocast(seen.device.type, dtype=torch.bfloat16, enabled=low_precision):
            acts = layer_outputs(model, seen, layers)
        if low_precision:
            acts = {k: v.float() for k, v in acts.items()}
        obj = objective(acts)
        loss = -obj.sum()
        pens = []
        for p in penalties:
            value = p.penalty(image)
            pens.append(value)
            loss = loss + value.sum()
        grads = torch.autograd.grad(loss, tensors)  # only the image's tensors: no .grad on weights
        for t, gr in zip(tensors, grads):
            t.grad = gr.contiguous()  # channels-last gradients back in the tensor's layout (L-BFGS views them flat)
        if record is not None:
            record["objective"] = float(obj.detach().mean())
            for n, v in zip(names[1:-1], pens):
                record[n] = float(v.detach().mean())
            record["loss"] = float(loss.detach()) / image.shape[0]
        return loss.detach()

    try:
        for step in range(int(steps)):
            step_seed = int(torch.randint(0, 2 ** 62, (), generator=g))
            record: dict = {}
            opt.zero_grad(set_to_none=True)
            if kind == "lbfgs":
                first = [True]

                def closure():
                    rec = record if first[0] else None
                    first[0] = False
                    with torch.enable_grad():
                        return evaluate(step_seed, rec)
                opt.step(closure)
            else:
                with torch.enable_grad():
                    evaluate(step_seed, record)
                opt.step()
            if isinstance(param, PixelImage):
                param.project()
                for op in step_ops:
                    op.after_step(param.pixels.data, param.pixels.grad, step)
            for n in names:
                history[n].append(record[n])
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.4g}")  # what is minimised, as every vizlib bar shows
            if callback is not None:
                with torch.no_grad():
                    if callback(step, param().detach()):
                        break
    finally:
        if bar is not None:
            bar.close()
        for t in tensors:
            t.grad = None
    with torch.no_grad():
        image = param().detach().clone()
    return RenderResult(image=image, history=history)
