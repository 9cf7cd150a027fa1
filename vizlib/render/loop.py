"""The render loop: optimise an image so an objective is high and the penalties are low.

``render(model, objective, param, *, steps, lr, optimizer, transforms, regularizers, seed,
progress, callback, precision) -> RenderResult(image, history)``: Adam, plain gradient ascent
(``"sgd"``) or L-BFGS; deterministic given ``seed`` (and the parameterisation's own seed); the
model is left exactly as it came (weights, ``.grad``, ``requires_grad``, train/eval mode,
hooks) — it must be in eval mode.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from torch import nn

from ..policy import require_eval
from ..precision import DEFAULT_PRECISION, autocast, resolve_precision
from ..progress import progress_bar
from ..validate import check_number
from .objectives import Objective, layer_outputs
from .param import PixelImage
from .transforms import Compose

__all__ = ["RenderResult", "render"]


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


def _plain_pixels(param) -> bool:
    """Whether ``param``'s tensor is the image's RGB pixels, as between-step operations need."""
    return isinstance(param, PixelImage) and not param.decorrelate


def _check_regularizer(r) -> None:
    if not (hasattr(r, "penalty") or hasattr(r, "after_step")):
        raise TypeError(f"{r!r} is not a regulariser: it needs a penalty(x) or an "
                        f"after_step(pixels, grad, step) method")


def render(model: nn.Module, objective: Objective, param, *, steps: int, lr: float,
           optimizer: str = "adam", transforms: Sequence[Callable] = (),
           regularizers: Sequence = (), seed: int = 0, progress: bool | None = None,
           callback: Callable | None = None, precision: str = DEFAULT_PRECISION) -> RenderResult:
    """Optimise an image so ``objective`` is high and the penalties are low.

    Args:
        model: a network in eval mode taking ``(B, 3, H, W)`` in [0, 1]; it is not changed
            (weights, ``.grad``, ``requires_grad``, mode and hooks are as before, also if
            this raises). Its parameters must be on the image's device.
        objective: an :class:`Objective` (maximised; each image of the batch separately).
        param: a parameterisation (:class:`~vizlib.render.PixelImage`,
            :class:`~vizlib.render.FourierImage`, or any object
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
            parameterisation without ``decorrelate`` only).
        seed: seed of the transforms' random draws (the parameterisation has its own).
        progress: show a tqdm bar with the loss being minimised (``None``: when ``steps >= 100``).
        callback: ``callback(step, image)`` after each step (``image`` detached); returning
            ``True`` stops the loop early.
        precision: one of :data:`vizlib.precision.PRECISIONS`, default
            :data:`~vizlib.precision.DEFAULT_PRECISION` (``"float32"``; the module says why).
            ``"bfloat16"`` runs the network under bfloat16 autocast, with the activations cast
            back to float32 before the objective, so Gram matrices, losses and the image stay
            float32. Losses agree with float32 to about 1 % (tested); on GPUs and CPUs with
            native bf16 a VGG19 step is up to 2x faster (``bench/``). ``"auto"``: bfloat16
            where :func:`~vizlib.precision.bf16_is_fast`, float32 elsewhere.

    Returns:
        :class:`RenderResult` with the final image and the per-step history.
    """
    if not isinstance(objective, Objective):
        raise TypeError(f"objective must be a vizlib.render.Objective, got {type(objective).__name__}")
    if not hasattr(param, "tensors") or not callable(param):
        raise TypeError(f"param must be a parameterisation (PixelImage, FourierImage …), got "
                        f"{type(param).__name__}")
    if not float(check_number(steps, "steps", minimum=0)).is_integer():
        raise ValueError(f"steps must be a whole number >= 0, got {steps!r}")
    steps, lr = int(steps), check_number(lr, "lr", positive=True)
    require_eval(model, "render")
    regularizers = list(regularizers)
    for r in regularizers:
        _check_regularizer(r)
    penalties = [r for r in regularizers if hasattr(r, "penalty")]
    step_ops = [r for r in regularizers if hasattr(r, "after_step")]
    if step_ops and not _plain_pixels(param):
        kind = "a decorrelated PixelImage" if isinstance(param, PixelImage) else type(param).__name__
        raise ValueError(f"{step_ops} change pixels between steps and need a PixelImage "
                         f"(without decorrelate); got {kind}")
    transform = Compose(list(transforms))
    tensors = list(param.tensors)
    layers = objective.layers
    if not layers:
        raise ValueError("the objective reads no layers")

    device = tensors[0].device
    precision = resolve_precision(precision, device)  # once: "auto" asks the hardware only here
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
    bar = progress_bar(int(steps), objective.name[:40], progress, unit="step", threshold=100)

    def evaluate(step_seed: int, record: dict | None):
        image = param()
        seen = transform(image, torch.Generator().manual_seed(step_seed))
        with autocast(precision, device):
            acts = layer_outputs(model, seen, layers)
        if precision == "bfloat16":
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
                for op in step_ops:  # plain pixels only (checked above)
                    op.after_step(param.pixels.data, param.pixels.grad, step)
            for n in names:
                history[n].append(record[n])
            bar.update(1)
            bar.set_postfix(loss=f"{record['loss']:.4g}")  # what is minimised, as every vizlib bar shows
            if callback is not None:
                with torch.no_grad():
                    if callback(step, param().detach()):
                        break
    finally:
        bar.close()
        for t in tensors:
            t.grad = None
    with torch.no_grad():
        image = param().detach().clone()
    return RenderResult(image=image, history=history)
