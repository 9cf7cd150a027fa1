"""ShapesNet: the course's own small convnet, for when ImageNet weights cannot be had.

Without internet the course cannot download torchvision's ImageNet weights, so
:mod:`vizlib.models` falls back to this network, trained on the generated
:mod:`vizlib.shapes` dataset (whose object masks let later lectures *measure*
whether a heatmap points at the object). Its weights ship with the package as
``vizlib/data/shapesnet.safetensors``, described by ``vizlib/data/shapesnet.json``
(classes, input size, normalisation, seed, every training hyper-parameter, held-out
accuracy, torch version, the file's sha256 and the command that reproduces it).

Reproduce the shipped weights bit for bit (same torch version, same thread count,
same kind of CPU — kernels differ between instruction sets)::

    python -m vizlib.offline train --out vizlib/data/shapesnet.safetensors --seed 0
    python -m vizlib.offline evaluate

(the same commands as ``vizlib shapesnet train`` and ``vizlib shapesnet evaluate``).

Weights are only ever read with :mod:`safetensors` (never pickle), and a missing,
corrupted or tampered file raises :class:`WeightsError` naming the file.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from . import shapes
from .policy import IMAGENET_MEAN, IMAGENET_STD, eval_mode

__all__ = ["ShapesNet", "WeightsError", "train_shapesnet", "evaluate_shapesnet", "save_shapesnet",
           "load_shapesnet", "shapesnet_info", "default_weights_path", "normalize", "MEAN", "STD",
           "DEFAULTS", "QUICK"]

#: The ImageNet normalisation every vizlib model expects at its door (its inputs are
#: ``(x - MEAN) / STD`` with ``x`` in [0, 1]); ShapesNet is trained the same way.
MEAN = IMAGENET_MEAN
STD = IMAGENET_STD

#: Training hyper-parameters of the shipped weights (``train_shapesnet``'s defaults).
DEFAULTS = dict(seed=0, n_train=24000, n_val=2000, epochs=4, size=64, batch_size=64, lr=3e-3,
                weight_decay=0.05, threads=2)
#: A small, fast configuration (``--quick`` / ``VIZLIB_QUICK``): seconds; reaches ~45 % (chance 12.5 %).
QUICK = dict(n_train=4096, n_val=512, epochs=3, size=32, batch_size=32)

EVAL_SEED = 20_240_607  # the default seed of ``evaluate``: neither the training nor the validation set

_DATA = Path(__file__).resolve().parent / "data"


class WeightsError(RuntimeError):
    """A ShapesNet weights file is missing, unreadable, corrupted or does not match its metadata."""


# ----------------------------------------------------------------------------- the network

class ShapesNet(nn.Module):
    """A small fully-convolutional network with global average pooling.

    ``features`` (conv1 5x5/32 → pool → conv2 3x3/64 → pool → conv3 3x3/128 → pool →
    conv4 3x3/128, each conv followed by a non-inplace ReLU) maps ``(N, 3, H, W)`` to
    ``(N, 128, H/8, W/8)``; ``avgpool`` averages each map and ``fc`` gives the logits.
    It takes any input of at least 16 pixels and supports CAM (``fc`` weights times
    ``relu4`` maps).

    Input: ``(N, 3, H, W)`` *already normalised* with :data:`MEAN` / :data:`STD`
    (see :func:`normalize`); output: ``(N, num_classes)`` logits.
    """

    def __init__(self, num_classes: int = len(shapes.CLASSES)):
        super().__init__()
        self.features = nn.Sequential(OrderedDict(
            conv1=nn.Conv2d(3, 32, 5, padding=2), relu1=nn.ReLU(), pool1=nn.MaxPool2d(2),
            conv2=nn.Conv2d(32, 64, 3, padding=1), relu2=nn.ReLU(), pool2=nn.MaxPool2d(2),
            conv3=nn.Conv2d(64, 128, 3, padding=1), relu3=nn.ReLU(), pool3=nn.MaxPool2d(2),
            conv4=nn.Conv2d(128, 128, 3, padding=1), relu4=nn.ReLU(),
        ))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        x = torch.flatten(self.avgpool(x), 1)
        return self.fc(x)


def normalize(images: torch.Tensor) -> torch.Tensor:
    """``(N, 3, H, W)`` in [0, 1] -> ImageNet-normalised, as ShapesNet expects."""
    mean = torch.tensor(MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


# ----------------------------------------------------------------------------- training

def _derive(seed: int, stream: int) -> int:
    """Independent seeds for the streams of one training run (data, validation, shuffling …)."""
    return int(seed) * 1_000_003 + int(stream) * 7919 + 17


@contextlib.contextmanager
def _deterministic(threads: int):
    """Deterministic CPU kernels and a fixed thread count; restores everything (global RNG too)."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


@torch.no_grad()
def _init_for_training(model: ShapesNet, conv1_scale: float = 0.1) -> ShapesNet:
    """He (fan-out) initialisation for conv2-conv4 and zero biases, which trains this
    BatchNorm-free network much faster than PyTorch's default; conv1 keeps its default
    initialisation scaled by ``conv1_scale``, so that its trained filters are mostly
    what training put there (smooth edges and colour blobs) rather than initial noise."""
    for name, module in model.features.named_children():
        if isinstance(module, nn.Conv2d):
            if name == "conv1":
                module.weight.mul_(conv1_scale)
            else:
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return model


@torch.no_grad()
def evaluate_shapesnet(model: nn.Module, n: int = 2000, seed: int = EVAL_SEED, size: int = 64,
                       batch_size: int = 250, data: dict | None = None) -> dict:
    """Accuracy of ``model`` on ``n`` fresh generated images (or on ``data``, a :func:`shapes.make_batch` dict).

    Returns ``{"accuracy": float, "per_class": {name: float}, "n": int, "seed": int, "size": int}``.
    """
    if data is None:
        data = shapes.make_batch(n, size=size, seed=seed)
    images, labels = data["images"], data["labels"]
    device = next(model.parameters()).device
    preds = []
    with eval_mode(model), torch.no_grad():
        for i in range(0, len(labels), batch_size):
            x = normalize(images[i:i + batch_size].to(device))
            preds.append(model(x).argmax(1).cpu())
    pred = torch.cat(preds) if preds else torch.empty(0, dtype=torch.int64)
    correct = pred == labels
    per_class = {name: round(float(correct[labels == c].float().mean()), 4)
                 for c, name in enumerate(shapes.CLASSES) if (labels == c).any()}
    return {"accuracy": float(correct.float().mean()), "per_class": per_class, "n": int(len(labels)),
            "seed": int(seed), "size": int(images.shape[-1])}


def train_shapesnet(seed: int = DEFAULTS["seed"], n_train: int = DEFAULTS["n_train"],
                    n_val: int = DEFAULTS["n_val"], epochs: int = DEFAULTS["epochs"],
                    size: int = DEFAULTS["size"], batch_size: int = DEFAULTS["batch_size"],
                    lr: float = DEFAULTS["lr"], weight_decay: float = DEFAULTS["weight_decay"],
                    threads: int = DEFAULTS["threads"], progress: bool = True) -> tuple[ShapesNet, dict]:
    """Train a ShapesNet on generated shapes, deterministically, on the CPU.

    The training images are ``shapes.make_batch(n_train, size, seed=_derive(seed, 1))``,
    the held-out validation images come from another seed (``_derive(seed, 2)``).
    Initialisation: see :func:`_init_for_training`. Optimiser: AdamW (``lr``,
    decoupled ``weight_decay``) with a one-cycle schedule; the only augmentation is
    random horizontal flips. Inputs are normalised with :data:`MEAN`
    / :data:`STD`. Everything random is drawn from explicit generators, the initial
    weights under a forked global RNG (the caller's RNG state is left untouched), with
    ``torch.use_deterministic_algorithms(True)`` and ``threads`` threads (both restored
    afterwards). The result is bit-for-bit identical across runs for the same torch
    version, thread count and kind of CPU.

    Returns:
        ``(model, metrics)``: the model in eval mode on the CPU, and a dict with
        ``val_accuracy``, ``val_per_class``, ``epoch_losses``, ``step_losses``,
        ``train_seconds`` and the hyper-parameters.
    """
    from tqdm.auto import tqdm

    hparams = dict(seed=int(seed), n_train=int(n_train), n_val=int(n_val), epochs=int(epochs),
                   size=int(size), batch_size=int(batch_size), lr=float(lr),
                   weight_decay=float(weight_decay), threads=int(threads))
    t0 = time.perf_counter()
    with _deterministic(threads):
        torch.manual_seed(_derive(seed, 4))
        model = _init_for_training(ShapesNet(len(shapes.CLASSES)))
        model = model.to(memory_format=torch.channels_last)  # ~1.5x faster convolutions on CPU

        train = shapes.make_batch(n_train, size=size, seed=_derive(seed, 1))
        images = train["images"]
        labels = train["labels"]
        del train
        val = shapes.make_batch(n_val, size=size, seed=_derive(seed, 2))

        g = torch.Generator().manual_seed(_derive(seed, 3))
        steps_per_epoch = math.ceil(n_train / batch_size)
        total = steps_per_epoch * epochs
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1),
                                                    pct_start=0.2)
        step_losses: list[float] = []
        epoch_losses: list[float] = []
        bar = tqdm(total=total, desc="training ShapesNet", disable=not progress, unit="step")
        model.train()
        for epoch in range(epochs):
            perm = torch.randperm(n_train, generator=g)
            flips = torch.rand(n_train, generator=g) < 0.5
            losses = []
            for s in range(steps_per_epoch):
                idx = perm[s * batch_size:(s + 1) * batch_size]
                x = images[idx]
                f = flips[s * batch_size:(s + 1) * batch_size]
                x = torch.where(f[:, None, None, None], x.flip(3), x)
                x = normalize(x).contiguous(memory_format=torch.channels_last)
                loss = nn.functional.cross_entropy(model(x), labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                losses.append(loss.item())
                bar.update(1)
                if s % 20 == 0:
                    bar.set_postfix(epoch=epoch + 1, loss=f"{sum(losses[-20:]) / len(losses[-20:]):.3f}")
            step_losses += losses
            epoch_losses.append(sum(losses) / max(len(losses), 1))
        bar.close()
        model = model.to(memory_format=torch.contiguous_format)
        model.eval()
        result = evaluate_shapesnet(model, data=val)
    seconds = time.perf_counter() - t0
    if progress:
        print(f"ShapesNet: held-out accuracy {result['accuracy']:.4f} on {n_val} images "
              f"after {seconds:.0f} s", file=sys.stderr)
    metrics = dict(hparams, val_accuracy=result["accuracy"], val_per_class=result["per_class"],
                   val_seed=_derive(seed, 2), train_seed=_derive(seed, 1),
                   epoch_losses=[round(v, 5) for v in epoch_losses], step_losses=step_losses,
                   train_seconds=round(seconds, 1))
    return model, metrics


# ----------------------------------------------------------------------------- files

def default_weights_path() -> Path:
    """The packaged weights, ``vizlib/data/shapesnet.safetensors``."""
    return _DATA / "shapesnet.safetensors"


def _sidecar(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_shapesnet(model: nn.Module, path, metadata: dict | None = None) -> dict:
    """Write the weights with safetensors to ``path`` and a JSON file beside it.

    The JSON (``path`` with suffix ``.json``) holds ``metadata`` plus ``classes``,
    ``size``, ``mean``, ``std``, ``file``, ``bytes`` and ``sha256`` of the weights file,
    and ``torch_version``. Returns that dict.
    """
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    # one metadata key only: safetensors writes a metadata dict in hash order, so several
    # keys would make the file's bytes differ from run to run
    save_file(tensors, str(path), metadata={"format": "pt"})
    meta = {"model": "ShapesNet", "classes": list(shapes.CLASSES), "size": 64,
            "mean": list(MEAN), "std": list(STD)}
    meta.update(metadata or {})
    meta.update(file=path.name, bytes=path.stat().st_size, sha256=_sha256(path),
                torch_version=meta.get("torch_version", torch.__version__))
    _sidecar(path).write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def load_shapesnet(path=None, verify: bool = True) -> ShapesNet:
    """Load ShapesNet weights (safetensors only, never pickle) into a model in eval mode.

    Args:
        path: the ``.safetensors`` file; default the packaged one
            (:func:`default_weights_path`).
        verify: when a JSON file with a ``sha256`` lies beside the weights (as
            :func:`save_shapesnet` writes), check the weights against it.

    Raises:
        WeightsError: the file is missing, is not a valid safetensors file, does not
            hold ShapesNet's tensors, or does not match its recorded sha256.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path) if path is not None else default_weights_path()
    if not path.is_file():
        raise WeightsError(f"ShapesNet weights not found: {path} (train them with "
                           f"`python -m vizlib.offline train --out {path}`)")
    sidecar = _sidecar(path)
    if verify and sidecar.is_file():
        try:
            expected = json.loads(sidecar.read_text()).get("sha256")
        except (OSError, ValueError) as e:
            raise WeightsError(f"ShapesNet metadata {sidecar} is unreadable: {e}") from None
        if expected and _sha256(path) != expected:
            raise WeightsError(f"ShapesNet weights {path} do not match the sha256 recorded in "
                               f"{sidecar.name}: the file is corrupted or was modified")
    try:
        tensors = load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise WeightsError(f"ShapesNet weights {path} are corrupted or not a safetensors file: {e}") from None
    if "fc.weight" not in tensors or tensors["fc.weight"].ndim != 2:
        raise WeightsError(f"{path} does not hold ShapesNet weights (no 'fc.weight')")
    model = ShapesNet(num_classes=tensors["fc.weight"].shape[0])
    expected_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got_shapes = {k: tuple(v.shape) for k, v in tensors.items()}
    if got_shapes != expected_shapes:
        missing = sorted(set(expected_shapes) - set(got_shapes))
        extra = sorted(set(got_shapes) - set(expected_shapes))
        wrong = sorted(k for k in set(got_shapes) & set(expected_shapes) if got_shapes[k] != expected_shapes[k])
        raise WeightsError(f"{path} does not hold ShapesNet weights (missing {missing}, "
                           f"unexpected {extra}, wrong shapes {wrong})")
    if not all(torch.isfinite(v).all() for v in tensors.values()):
        raise WeightsError(f"ShapesNet weights {path} hold NaN or infinite values")
    model.load_state_dict(tensors)
    return model.eval()


def shapesnet_info(path=None) -> dict:
    """The metadata JSON beside the weights (default: the packaged ``shapesnet.json``)."""
    path = _sidecar(Path(path)) if path is not None else _DATA / "shapesnet.json"
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise WeightsError(f"ShapesNet metadata not found: {path}") from None
    except ValueError as e:
        raise WeightsError(f"ShapesNet metadata {path} is not valid JSON: {e}") from None


# ----------------------------------------------------------------------------- CLI

def _train_command(args) -> int:
    from . import config

    params = dict(DEFAULTS, seed=args.seed)
    quick = args.quick or config.quick()
    if quick:
        params.update(QUICK)
    for key in ("n_train", "n_val", "epochs", "batch_size", "lr", "threads"):
        value = getattr(args, key)
        if value is not None:
            params[key] = value
    out = Path(args.out)
    command = f"python -m vizlib.offline train --out {args.out} --seed {args.seed}" + (" --quick" if quick else "")
    for key in ("n_train", "n_val", "epochs", "batch_size", "lr", "threads"):
        value = getattr(args, key)
        if value is not None:
            command += f" --{key.replace('_', '-')} {value}"
    model, metrics = train_shapesnet(progress=not args.no_progress, **params)
    metrics.pop("step_losses")
    meta = {
        "model": "ShapesNet",
        "architecture": "conv1 5x5/32, pool, conv2 3x3/64, pool, conv3 3x3/128, pool, conv4 3x3/128, "
                        "global average pool, fc; ReLU after each conv",
        "classes": list(shapes.CLASSES),
        "size": params["size"],
        "mean": list(MEAN), "std": list(STD),
        "input": "RGB in [0, 1] normalised with mean/std before the network",
        "seed": params["seed"],
        "training": {
            **{k: params[k] for k in ("n_train", "n_val", "epochs", "size", "batch_size", "lr",
                                      "weight_decay", "threads")},
            "init": "conv1: PyTorch default x 0.1; conv2-4: kaiming_normal(fan_out, relu); conv biases 0",
            "optimizer": "AdamW", "schedule": "OneCycleLR(pct_start=0.2)",
            "augmentation": "random horizontal flip", "loss": "cross-entropy",
            "train_seed": metrics["train_seed"], "val_seed": metrics["val_seed"],
            "epoch_losses": metrics["epoch_losses"], "train_seconds": metrics["train_seconds"],
        },
        "held_out_accuracy": round(metrics["val_accuracy"], 4),
        "held_out_n": params["n_val"],
        "held_out_per_class": metrics["val_per_class"],
        "torch_version": torch.__version__,
        "reproduce": command,
        "determinism": "bit-for-bit for the same torch version, thread count and kind of CPU",
    }
    saved = save_shapesnet(model, out, meta)
    print(f"wrote {out} ({saved['bytes']} bytes, sha256 {saved['sha256']}) and {_sidecar(out).name}; "
          f"held-out accuracy {saved['held_out_accuracy']:.4f}")
    return 0


def _evaluate_command(args) -> int:
    model = load_shapesnet(args.weights)
    size = args.size or shapesnet_info(args.weights).get("size", 64)
    result = evaluate_shapesnet(model, n=args.n, seed=args.seed, size=size)
    print(f"held-out accuracy {result['accuracy']:.4f} on {result['n']} fresh images "
          f"(seed {result['seed']}, {result['size']} px)")
    for name, acc in result["per_class"].items():
        print(f"  {name:10s} {acc:.4f}")
    return 0


def add_arguments(parser) -> None:
    """``vizlib shapesnet train ...`` and ``vizlib shapesnet evaluate ...``."""
    parser.description = __doc__.splitlines()[0]
    sub = parser.add_subparsers(dest="shapesnet_command", required=True, metavar="{train,evaluate}")
    t = sub.add_parser("train", help="train ShapesNet and write its weights + JSON metadata")
    t.add_argument("--out", default=str(default_weights_path()), help="the .safetensors file to write")
    t.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    t.add_argument("--quick", action="store_true", help="a small fast run (also with VIZLIB_QUICK=1)")
    t.add_argument("--n-train", dest="n_train", type=int)
    t.add_argument("--n-val", dest="n_val", type=int)
    t.add_argument("--epochs", type=int)
    t.add_argument("--batch-size", dest="batch_size", type=int)
    t.add_argument("--lr", type=float)
    t.add_argument("--threads", type=int)
    t.add_argument("--no-progress", action="store_true")
    t.set_defaults(run=_refusing_bad_weights(_train_command))
    e = sub.add_parser("evaluate", help="held-out accuracy on a fresh generated set")
    e.add_argument("--weights", default=None, help="default: the packaged weights")
    e.add_argument("--n", type=int, default=2000)
    e.add_argument("--seed", type=int, default=EVAL_SEED)
    e.add_argument("--size", type=int, default=None)
    e.set_defaults(run=_refusing_bad_weights(_evaluate_command))


def _refusing_bad_weights(command):
    """``command(args)``, with a :class:`WeightsError` printed in one line and exit status 1."""
    def run(args) -> int:
        try:
            return command(args)
        except WeightsError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    return run


def main(argv=None) -> int:
    """``python -m vizlib.offline train|evaluate ...``: ``vizlib shapesnet`` of the one command tree."""
    from .cli import main as cli_main  # the command line sits above the library: models imports this module

    return cli_main(["shapesnet", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
