"""The peers vizlib is timed against, where the peer is a recipe rather than a package.

- :class:`TutorialStyleTransfer`: the PyTorch neural-style-transfer tutorial's *design* — loss
  modules inserted into a copy of the VGG ``features`` sequence (cut after the last loss
  module), a normalisation module in front, losses stored on the modules during the forward
  pass, float32 — computing the same loss terms as :func:`vizlib.style.style_transfer`
  (relative content loss, scale-free weighted Gram loss, TV / (H W)), so the two agree at step 0.
- :func:`examples_stylize` / :func:`examples_train_step`: a transformer network run the way
  pytorch/examples' ``fast_neural_style`` runs it (float32, eager, ``torch.no_grad`` for
  inference; for training a plain Adam step on :class:`ExamplesPerceptualLoss`, which runs
  the cut VGG in full on both the stylised and the content batch).

Every peer takes ``bf16=True`` to run the way a PyTorch user would add mixed precision to it:
its forward pass and loss under ``torch.autocast(dtype=torch.bfloat16)``, the backward pass and
the optimiser step outside (PyTorch's AMP recipe; bf16 needs no gradient scaler). The benchmark's
bf16 rows time vizlib's bf16 against this, so that every ratio compares the same precision.

Written for this project from the designs, not copied.
"""
from __future__ import annotations

import torch
from torch import nn
from collections import OrderedDict
from contextlib import nullcontext


def _autocast(bf16: bool, like: torch.Tensor):
    """bf16 autocast on ``like``'s device when ``bf16``, else nothing."""
    return torch.autocast(like.device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def _gram(f: torch.Tensor) -> torch.Tensor:
    b, c, h, w = f.shape
    flat = f.reshape(b, c, h * w)
    return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)


class _ContentLoss(nn.Module):
    def __init__(self, target: torch.Tensor):
        super().__init__()
        self.target = target.detach()
        self.scale = self.target.pow(2).mean().clamp_min(1e-12)
        self.loss = None

    def forward(self, x):
        self.loss = (x - self.target).pow(2).mean() / self.scale
        return x


class _StyleLoss(nn.Module):
    def __init__(self, target_gram: torch.Tensor, weight: float):
        super().__init__()
        self.target = target_gram.detach()
        self.weight = weight
        self.loss = None

    def forward(self, x):
        self.loss = self.weight * (_gram(x) - self.target).pow(2).mean()
        return x


class TutorialStyleTransfer:
    """Gatys style transfer built the tutorial's way on a :class:`~vizlib.models.CourseModel`
    whose ``net.features`` is a sequence (VGG). ``targets`` come from
    :func:`vizlib.style_losses.style_targets` so both sides optimise the same function."""

    def __init__(self, model, targets, content_weight=1.0, style_weight=100.0, tv_weight=1.0):
        wanted = {model.layer_paths[n]: n for n in targets.layers}
        deepest = max(int(path.rsplit(".", 1)[1]) for path in wanted)
        self.content_weight, self.style_weight, self.tv_weight = content_weight, style_weight, tv_weight
        seq = nn.Sequential(OrderedDict(normalize=model.normalize))
        self.content_losses, self.style_losses = [], []
        for i, layer in enumerate(model.net.features[:deepest + 1]):  # the tutorial cuts after the last loss
            seq.add_module(str(i), layer)
            name = wanted.get(f"net.features.{i}")
            if name == targets["content_layer"]:
                m = _ContentLoss(targets["content"])
                seq.add_module(f"content_{i}", m)
                self.content_losses.append(m)
            if name in targets["style_layers"]:
                m = _StyleLoss(targets["grams"][name], targets["layer_weights"][name])
                seq.add_module(f"style_{i}", m)
                self.style_losses.append(m)
        self.net = seq

    def loss(self, image: torch.Tensor) -> torch.Tensor:
        self.net(image)
        c = sum(m.loss for m in self.content_losses)
        s = sum(m.loss for m in self.style_losses)
        dx = image[:, :, :-1, 1:] - image[:, :, :-1, :-1]
        dy = image[:, :, 1:, :-1] - image[:, :, :-1, :-1]
        tv = (dx * dx + dy * dy).sum() / (image.shape[-1] * image.shape[-2])
        return self.content_weight * c + self.style_weight * s + self.tv_weight * tv

    def run(self, content: torch.Tensor, steps: int, lr: float = 0.02, bf16: bool = False) -> list[float]:
        image = content.clone().requires_grad_(True)
        opt = torch.optim.Adam([image], lr=lr)
        history = []
        for _ in range(steps):
            opt.zero_grad()
            with _autocast(bf16, image):
                loss = self.loss(image)
            loss.backward()
            opt.step()
            with torch.no_grad():
                image.clamp_(0, 1)
            history.append(float(loss.detach()))
        return history


def examples_stylize(transformer: nn.Module, images: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """Inference as pytorch/examples runs it: float32, eager, under ``torch.no_grad`` (``bf16``:
    under autocast, the pixels returned as float32 like vizlib's)."""
    with torch.no_grad(), _autocast(bf16, images):
        return transformer(images).float()


class ExamplesPerceptualLoss:
    """Johnson et al.'s loss built the way pytorch/examples' ``fast_neural_style`` builds it: the
    VGG ``features`` sequence cut after the deepest loss layer, run in full on the stylised
    batch *and* on the content batch (two float32 passes, default memory layout), Gram matrices
    with ``bmm``, mean-squared errors. The loss terms are vizlib's (relative content loss at
    ``targets["content_layer"]``, weighted Gram loss, TV per position) so that both sides agree
    at step 0; they are written out here, not imported."""

    def __init__(self, model, targets, content_weight=1.0, style_weight=1.0, tv_weight=1.0):
        layers = [*targets["style_layers"], targets["content_layer"]]
        self.index = {int(model.layer_paths[n].rsplit(".", 1)[1]): n for n in layers}
        self.features = nn.Sequential(model.normalize, *model.net.features[:max(self.index) + 1])
        self.targets = targets
        self.weights = content_weight, style_weight, tv_weight

    def _outputs(self, x):
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i - 1 in self.index:          # index 0 of self.features is the normalisation
                out[self.index[i - 1]] = x
        return out

    def __call__(self, stylized, content):
        t = self.targets
        fy, fx = self._outputs(stylized), self._outputs(content)
        target = fx[t["content_layer"]]
        c = (fy[t["content_layer"]] - target).pow(2).flatten(1).mean(1) / \
            target.pow(2).flatten(1).mean(1).clamp_min(1e-12)
        s = sum(t["layer_weights"][n] * (_gram(fy[n]) - t["grams"][n]).pow(2).flatten(1).mean(1)
                for n in t["style_layers"])
        dx = stylized[:, :, :-1, 1:] - stylized[:, :, :-1, :-1]
        dy = stylized[:, :, 1:, :-1] - stylized[:, :, :-1, :-1]
        h, w = stylized.shape[-2:]
        tv = (dx * dx + dy * dy).sum((1, 2, 3)) / ((h - 1) * (w - 1))
        cw, sw, tw = self.weights
        return cw * c + sw * s + tw * tv


def examples_train_step(transformer, optimizer, loss_fn: ExamplesPerceptualLoss, content,
                        bf16: bool = False) -> float:
    """One training step of the recipe: zero grads, stylise, perceptual loss, backward, Adam."""
    optimizer.zero_grad()
    with _autocast(bf16, content):
        loss = loss_fn(transformer(content), content).mean()
    loss.backward()
    optimizer.step()
    return float(loss)
