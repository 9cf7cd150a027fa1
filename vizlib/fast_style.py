"""Fast style transfer: train a feed-forward network to stylise in one pass.

Johnson, Alahi & Fei-Fei, "Perceptual Losses for Real-Time Style Transfer and
Super-Resolution" (ECCV 2016), with instance normalisation (Ulyanov, Vedaldi & Lempitsky,
"Instance Normalization: The Missing Ingredient for Fast Stylization", 2016) and
resize-convolutions instead of transposed convolutions (Odena et al., "Deconvolution and
Checkerboard Artifacts", Distill 2016).

Gatys et al.'s style transfer (:mod:`vizlib.style`) optimises every image from scratch: a few
hundred forward and backward passes through VGG per picture. Here a small
:class:`TransformerNet` is trained once, for one style, to minimise the *same* perceptual loss
(content + style + TV) over many content images; afterwards stylising is one forward pass.

- :class:`TransformerNet`, :func:`stylize` (inference on images of any size);
- :func:`perceptual_loss`, :func:`train_step` (one optimisation step);
- :func:`train` (image folder, progress bar, periodic samples, checkpoint save / resume,
  multi-GPU through ``torchrun`` and ``DistributedDataParallel``);
- :func:`save_checkpoint` / :func:`load_checkpoint` (safetensors; no pickle is ever executed).
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import os
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from . import config
from . import style_losses as st
from .images import center_crop, check_images, load_image, save_image
from .models import load_model
from .policy import eval_mode, model_device
from .precision import DEFAULT_PRECISION, autocast, resolve_precision
from .render import layer_outputs
from .validate import check_number, check_positive_int

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


# ----------------------------------------------------------------------------------------
# The transformer network
# ----------------------------------------------------------------------------------------

class _ConvIN(nn.Sequential):
    """Reflection pad, conv, instance norm (affine), optional ReLU; ``upsample`` first
    enlarges by nearest-neighbour interpolation (a resize-convolution)."""

    def __init__(self, cin, cout, kernel, stride=1, upsample=1, relu=True, norm=True):
        layers = []
        if upsample > 1:
            layers.append(nn.Upsample(scale_factor=upsample, mode="nearest"))
        layers += [nn.ReflectionPad2d(kernel // 2), nn.Conv2d(cin, cout, kernel, stride)]
        if norm:
            layers.append(nn.InstanceNorm2d(cout, affine=True))
        if relu:
            layers.append(nn.ReLU())
        super().__init__(*layers)


class _Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(_ConvIN(channels, channels, 3), _ConvIN(channels, channels, 3, relu=False))

    def forward(self, x):
        return x + self.body(x)


class TransformerNet(nn.Module):
    """Johnson et al.'s image transformation network with instance normalisation.

    ``9x9 conv (w) -> 3x3 stride-2 conv (2w) -> 3x3 stride-2 conv (4w) -> residual blocks (4w)
    -> 2x upsample + 3x3 conv (2w) -> 2x upsample + 3x3 conv (w) -> 9x9 conv (3) -> sigmoid``;
    every conv but the last is followed by instance norm and ReLU. ``width=32,
    residual_blocks=5`` is the paper's network (1.7 M parameters); smaller settings train in
    seconds on a CPU.

    Shape: ``(B, 3, H, W)`` float in [0, 1] ``-> (B, 3, H, W)`` float in [0, 1], any ``H, W``
    (the input is reflection-padded to a multiple of 4 and the output cropped back).
    """

    def __init__(self, width: int = 32, residual_blocks: int = 5):
        super().__init__()
        if width < 1 or residual_blocks < 0:
            raise ValueError(f"width must be >= 1 and residual_blocks >= 0, got {width}, {residual_blocks}")
        self.width, self.residual_blocks = int(width), int(residual_blocks)
        w = self.width
        self.down = nn.Sequential(_ConvIN(3, w, 9), _ConvIN(w, 2 * w, 3, stride=2),
                                  _ConvIN(2 * w, 4 * w, 3, stride=2))
        self.res = nn.Sequential(*[_Residual(4 * w) for _ in range(self.residual_blocks)])
        self.up = nn.Sequential(_ConvIN(4 * w, 2 * w, 3, upsample=2), _ConvIN(2 * w, w, 3, upsample=2),
                                _ConvIN(w, 3, 9, relu=False, norm=False))

    def config(self) -> dict:
        """The constructor's arguments (stored in checkpoints)."""
        return {"width": self.width, "residual_blocks": self.residual_blocks}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"TransformerNet takes images (B, 3, H, W), got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = (-h) % 4, (-w) % 4
        if ph or pw:
            mode = "reflect" if h > ph and w > pw else "replicate"
            x = F.pad(x, (0, pw, 0, ph), mode=mode)
        y = torch.sigmoid(self.up(self.res(self.down(x))))
        return y[..., :h, :w]


def stylize(transformer: nn.Module, images: torch.Tensor, batch_size: int = 4,
            precision: str = DEFAULT_PRECISION) -> torch.Tensor:
    """Stylise ``images`` with a trained :class:`TransformerNet`: one forward pass each.

    Args:
        transformer: the trained network (its train/eval mode is left as it was; inference
            runs in eval mode, which for instance norm changes nothing).
        images: ``(B, 3, H, W)`` float in [0, 1], any size.
        batch_size: images per forward pass.
        precision: :data:`vizlib.precision.DEFAULT_PRECISION` (``"float32"``, the same pixels on
            every machine), ``"bfloat16"`` (autocast; about 1.6x faster on a CPU with
            AVX512-BF16, pixels within about 3/255 of float32's, tested) or ``"auto"``
            (bfloat16 where :func:`vizlib.precision.bf16_is_fast`, else float32).

    Returns:
        ``(B, 3, H, W)`` float in [0, 1] on the input's device.
    """
    images = check_images(images, "images")
    device = model_device(transformer)
    with eval_mode(transformer), torch.inference_mode(), autocast(precision, device):
        outs = [transformer(images[i:i + batch_size].to(device)).float().to(images.device)
                for i in range(0, len(images), batch_size)]
    return torch.cat(outs).to(images.dtype)


# ----------------------------------------------------------------------------------------
# Loss and one training step
# ----------------------------------------------------------------------------------------

def perceptual_loss(model: nn.Module, stylized: torch.Tensor, content: torch.Tensor,
                    targets: Mapping, *, content_weight: float = 1.0, style_weight: float = 1.0,
                    tv_weight: float = 1.0, precision: str = DEFAULT_PRECISION) -> dict:
    """Johnson et al.'s loss for a batch: each stylised image against its own content image
    (feature reconstruction at ``targets["content_layer"]``, relative to the content
    features' mean square, :func:`vizlib.style_losses.relative_content_loss`) and against the style's Gram
    matrices (``targets["grams"]``), plus total variation.

    Args:
        model: the loss network (frozen).
        stylized: ``(B, 3, H, W)`` in [0, 1], the transformer's output (with grad).
        content: ``(B, 3, H, W)`` in [0, 1], the transformer's input.
        targets: :func:`vizlib.style_losses.style_targets` of the style image (content ``None``).
        precision: :data:`vizlib.precision.DEFAULT_PRECISION` (``"float32"``), ``"bfloat16"`` or
            ``"auto"`` (see :func:`vizlib.precision.resolve_precision`): with bfloat16 the loss
            network's passes run under bf16 autocast; the Gram matrices and losses are computed
            in float32 either way.

    Returns:
        ``{"content", "style", "tv", "total"}``, each ``(B,)``, ``total`` the weighted sum.
    """
    layers = list(dict.fromkeys([*targets["style_layers"], targets["content_layer"]]))
    precision = resolve_precision(precision, stylized.device)
    with autocast(precision, stylized.device):
        acts = layer_outputs(model, stylized, layers)
        with torch.no_grad():
            wanted = layer_outputs(model, content, [targets["content_layer"]])[targets["content_layer"]]
    if precision == "bfloat16":  # Grams and losses in float32
        acts, wanted = {k: v.float() for k, v in acts.items()}, wanted.float()
    c = st.relative_content_loss(acts[targets["content_layer"]], wanted)
    s = st.weighted_style_loss(acts, targets)
    tv = st.tv_loss(stylized)
    return {"content": c, "style": s, "tv": tv,
            "total": content_weight * c + style_weight * s + tv_weight * tv}


def train_step(transformer: nn.Module, optimizer: torch.optim.Optimizer, model: nn.Module,
               content: torch.Tensor, targets: Mapping, *, precision: str = DEFAULT_PRECISION,
               **weights) -> dict:
    """One optimisation step of the transformer on a batch of content images.

    Zero the gradients, stylise the batch, compute :func:`perceptual_loss` (mean over the
    batch), back-propagate into the transformer only, step the optimiser.

    ``precision``: :data:`vizlib.precision.DEFAULT_PRECISION` (``"float32"``), ``"bfloat16"``
    (autocast), or ``"auto"`` (bfloat16 where the device multiplies bf16 natively,
    :func:`vizlib.precision.bf16_is_fast`, float32 elsewhere). With bfloat16 the weights, the optimiser's state, the Gram matrices and the losses stay float32 (bf16
    has float32's range, so no loss scaling is needed). ``weights``: the loss weights of
    :func:`perceptual_loss`.

    Returns:
        the batch-mean losses as floats: ``{"content", "style", "tv", "total"}``.
    """
    precision = resolve_precision(precision, content.device)
    optimizer.zero_grad(set_to_none=True)
    with autocast(precision, content.device):
        stylized = transformer(content)
    losses = perceptual_loss(model, stylized.float(), content, targets, precision=precision, **weights)
    losses["total"].mean().backward()
    optimizer.step()
    return {k: float(v.detach().mean()) for k, v in losses.items()}


# ----------------------------------------------------------------------------------------
# Checkpoints: safetensors (or plain tensors read with weights_only=True), never pickle
# ----------------------------------------------------------------------------------------

class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, not a fast-style checkpoint, or unsafe."""


def save_checkpoint(path, transformer: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    meta: dict | None = None) -> Path:
    """Write the transformer (and the optimiser's state, for resuming) with safetensors.

    The network's tensors are stored under ``model.*``; ``meta`` (JSON-able: step, style
    settings …) and the network's :meth:`TransformerNet.config` go into the header. The
    optimiser's ``state_dict()`` is stored as it is, by ``torch.save``, in one byte tensor
    (``optimizer``): :func:`load_checkpoint` reads it back with ``weights_only=True``, which
    refuses anything but tensors and plain containers. The file is written beside the target
    and renamed, so an interrupted save leaves the last good checkpoint, and a network holding
    NaN or Inf is never written (``ValueError``): a diverged run cannot replace a good checkpoint.
    """

    net = getattr(transformer, "module", transformer)
    path = Path(path)
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    broken = [k[len("model."):] for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise ValueError(f"not saving {path}: the network's {broken[0]} holds NaN or Inf (did training diverge?)"
                         + ("; the checkpoint already there is kept" if path.exists() else ""))
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"kind": "vizlib.fast_style", "config": net.config(), "meta": meta or {}}
    if optimizer is not None:
        tensors[OPTIMIZER_KEY] = _to_bytes_tensor(optimizer.state_dict())
        info["optimizer"] = type(optimizer).__name__
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")      # one per process: two savers never share it
    try:
        save_file(tensors, str(tmp), metadata={"vizlib": json.dumps(info)})
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


#: The checkpoint's tensor that holds the optimiser's ``state_dict()`` as ``torch.save`` bytes.
OPTIMIZER_KEY = "optimizer"


def _to_bytes_tensor(state: dict) -> torch.Tensor:
    """``state`` (tensors, numbers, strings and containers of them) as a ``torch.save`` file in a
    ``(n,)`` uint8 tensor. Tensors are moved to the CPU."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return torch.frombuffer(bytearray(buffer.getvalue()), dtype=torch.uint8)


def _from_bytes_tensor(data: torch.Tensor, path: Path) -> dict:
    """The inverse of :func:`_to_bytes_tensor`, read with ``weights_only=True``: pickled code in
    ``data`` is refused, never run (:class:`CheckpointError`)."""
    try:
        return torch.load(io.BytesIO(data.numpy().tobytes()), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means: refuse the file
        raise CheckpointError(
            f"refusing {path}: its optimiser state does not load with weights_only=True "
            f"({type(e).__name__}: {str(e).splitlines()[0][:200]}). A file holding pickled code is "
            "never executed.") from None


def _read_tensors(path: Path) -> tuple[dict, dict]:

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return tensors, json.loads(header.get("vizlib", "{}"))
    except (SafetensorError, OSError, ValueError, RuntimeError):
        pass
    # not safetensors: allow a torch.save'd dict of tensors, but never run pickled code
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure here means: refuse the file
        raise CheckpointError(
            f"refusing {path}: it is neither a safetensors file nor a plain tensor file that loads "
            f"with weights_only=True ({type(e).__name__}: {str(e).splitlines()[0][:200]}). A file "
            f"holding pickled code is never executed.") from None
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for k, v in obj.items() if k != "vizlib"):
        raise CheckpointError(f"{path} does not hold a dict of tensors")
    info = obj.pop("vizlib", "{}")
    return obj, json.loads(info) if isinstance(info, str) else {}


def load_checkpoint(path, device=None) -> tuple[TransformerNet, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Args:
        path: the ``.safetensors`` file (a ``torch.save``'d dict of tensors is accepted too,
            read with ``weights_only=True``).
        device: where to put the network (default CPU).

    Returns:
        ``(transformer, info)``: a :class:`TransformerNet` in eval mode and the header
        (``info["meta"]`` holds the step and training settings); to resume training, build the
        optimiser over the network's parameters and call :func:`restore_optimizer`.

    Raises:
        CheckpointError: missing file, corrupt or unsafe file, or not a fast-style checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    tensors, info = _read_tensors(path)
    if info.get("kind") != "vizlib.fast_style" or "config" not in info:
        raise CheckpointError(f"{path} is not a vizlib fast-style checkpoint (no 'vizlib.fast_style' header)")
    try:
        net = TransformerNet(**info["config"])
        state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
        net.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} does not match a TransformerNet{info.get('config')}: "
                              f"{str(e).splitlines()[0][:300]}") from None
    if not all(torch.isfinite(v).all() for v in state.values()):
        raise CheckpointError(f"{path} holds NaN or infinite weights")
    if OPTIMIZER_KEY in tensors:
        info["_optimizer_state"] = _from_bytes_tensor(tensors[OPTIMIZER_KEY], path)
    return net.to(device or "cpu").eval(), info


#: The network that ships with vizlib, trained by ``scripts/train_stylizer.py`` (its settings and
#: losses are in the file's header).
PRETRAINED_FILE = "stylizer.safetensors"


def pretrained(device=None) -> tuple[TransformerNet, dict]:
    """The fast-style network that ships with vizlib, ready to stylise any photograph.

    Trained by ``scripts/train_stylizer.py`` (a CPU, a few minutes) on crops of the bundled
    sample photographs, with EfficientNet-Lite0 as the loss network and the bundled
    ``immunohistochemistry`` image as the style; the astronaut was kept out of training.
    Returns ``(transformer, info)`` as :func:`load_checkpoint` does; ``info["meta"]`` holds
    the training settings, the style's name and the final losses.
    """
    return load_checkpoint(Path(__file__).parent / "data" / PRETRAINED_FILE, device=device)


def restore_optimizer(optimizer: torch.optim.Optimizer, info: dict) -> None:
    """Put the optimiser state saved in a checkpoint (``info`` from :func:`load_checkpoint`)
    back into ``optimizer`` (built over the loaded network's parameters).

    Raises:
        CheckpointError: the checkpoint's optimiser is of another class, or its state was
            written by an older vizlib (optimiser tensors flattened by hand, ``optim.*``).
    """
    if "optim" in info and "_optimizer_state" not in info:
        raise CheckpointError("the checkpoint's optimiser state is in the format of an older vizlib "
                              "(optim.* tensors), which this one no longer reads")
    state = info.get("_optimizer_state")
    if state is None:
        return
    if info.get("optimizer") != type(optimizer).__name__:
        raise CheckpointError(f"the checkpoint's optimiser is {info.get('optimizer')}, not {type(optimizer).__name__}")
    optimizer.load_state_dict(state)


# ----------------------------------------------------------------------------------------
# Data and training
# ----------------------------------------------------------------------------------------

class ImageFolder(torch.utils.data.Dataset):
    """Every image file under ``root`` (recursively), as ``(3, size, size)`` in [0, 1]:
    the shorter side resized to ``size``, then centre-cropped. Files that cannot be read
    are reported by name when they are reached."""

    def __init__(self, root, size: int = 256):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.root}")
        candidates = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        self.files, skipped = [], []
        for path in candidates:  # a header read each: a text file named .jpg is skipped, not fatal
            try:
                with Image.open(path):
                    pass
                self.files.append(path)
            except (OSError, ValueError):
                skipped.append(path)
        if skipped:
            names = ", ".join(str(p.relative_to(self.root)) for p in skipped[:5])
            more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
            config.warn(f"skipping {len(skipped)} file(s) under {self.root} that are not readable "
                        f"images: {names}{more}")
        if not self.files:
            raise ValueError(f"no images that can be read ({', '.join(IMAGE_SUFFIXES)}) under {self.root}")
        self.size = int(size)

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):

        img = load_image(self.files[i], size=self.size, downscale=True)
        return center_crop(img, self.size)[0]


def _digest(image: torch.Tensor) -> str:
    """SHA-256 of an image tensor's values: which style a checkpoint was trained on."""
    return hashlib.sha256(image.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()).hexdigest()


def _check_same_run(info: dict, *, style_digest: str, image_size: int, width: int, residual_blocks: int,
                    path) -> None:
    """Refuse to resume a checkpoint trained with another style image or another shape of run."""
    meta, config = info.get("meta", {}), info.get("config", {})
    wanted = {"style image": (meta.get("style_sha256"), style_digest),
              "image size": (meta.get("image_size"), image_size),
              "width": (config.get("width"), width),
              "residual blocks": (config.get("residual_blocks"), residual_blocks)}
    differ = [f"{what} {old} -> {new}" if what != "style image" else "another style image"
              for what, (old, new) in wanted.items() if old is not None and old != new]
    if differ:
        raise CheckpointError(f"{path} belongs to another run ({'; '.join(differ)})")


def distributed_ranks() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment, or (0, 1, 0)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def train(style_image: torch.Tensor, images, out_dir, *, model: nn.Module | None = None,
          steps: int = 2000, batch_size: int = 4, image_size: int = 256, lr: float = 1e-3,
          content_weight: float = 1.0, style_weight: float = 1.0, tv_weight: float = 1.0,
          style_layers=None, content_layer=None, width: int = 32, residual_blocks: int = 5,
          sample_every: int = 200, checkpoint_every: int = 200, sample_images: torch.Tensor | None = None,
          resume: bool = True, seed: int = 0, progress: bool = True, device=None,
          num_workers: int = 0, precision: str = DEFAULT_PRECISION) -> tuple[TransformerNet, list[dict]]:
    """Train a :class:`TransformerNet` for one style over a folder of content images.

    Single process by default. Started with ``torchrun --nproc_per_node=N`` (which sets
    ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``) it trains with ``DistributedDataParallel``:
    one process per GPU (NCCL; gloo on CPU), each on its share of the images
    (``DistributedSampler``), gradients averaged; only rank 0 shows progress and writes
    samples and checkpoints. ``steps`` and ``batch_size`` are per process.

    Args:
        style_image: ``(1, 3, h, w)`` in [0, 1].
        images: a folder of images (any depth) or a tensor ``(N, 3, S, S)`` in [0, 1].
        out_dir: where ``checkpoint.safetensors`` and ``samples/step_NNNNNN.png`` go.
        model: the loss network (default ``load_model("vgg19")`` — offline, the fallback).
        resume: continue from ``out_dir/checkpoint.safetensors`` if it exists (weights,
            optimiser state, step, the data order).
        seed: initial weights and data order.
        sample_images: ``(K, 3, H, W)`` stylised into the sample grid (default the first
            batch's images).
        precision: ``"float32"`` (default), ``"bfloat16"`` or ``"auto"``: see :func:`train_step`.

    Returns:
        ``(transformer, history)``: the trained network (eval mode) and one dict of losses
        per step taken in this call.
    """


    # every number checked before anything is loaded: a NaN weight must not reach a checkpoint
    lr = check_number(lr, "lr", positive=True)
    weights = {k: check_number(v, k, minimum=0.0) for k, v in
               dict(content_weight=content_weight, style_weight=style_weight, tv_weight=tv_weight).items()}
    steps, batch_size = check_positive_int(steps, "steps"), check_positive_int(batch_size, "batch_size")
    rank, world, local_rank = distributed_ranks()
    lock = None
    ddp = world > 1
    if ddp and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
        own_group = True
    else:
        own_group = False
    try:
        lock = _lock_folder(Path(out_dir)) if rank == 0 else None
        if device is None:
            device = torch.device(f"cuda:{local_rank}") if ddp and torch.cuda.is_available() else \
                config.device()
        device = torch.device(device)
        model = model if model is not None else load_model("vgg19", device=device)
        if model_device(model) != device:
            raise ValueError(f"the loss network is on {model_device(model)}, training on {device}")
        style_image = check_images(style_image, "style image")
        targets = st.style_targets(model, None, style_image, style_layers=style_layers,
                                   content_layer=content_layer)
        dataset = ImageFolder(images, image_size) if not isinstance(images, torch.Tensor) else \
            torch.utils.data.TensorDataset(check_images(images, "images"))
        if len(dataset) < batch_size * world:
            raise ValueError(f"{len(dataset)} images are too few for batch_size {batch_size} x {world} processes")
        out_dir = Path(out_dir)
        ckpt = out_dir / "checkpoint.safetensors"

        start, info = 0, None
        if resume and ckpt.is_file():
            transformer, info = load_checkpoint(ckpt)
            _check_same_run(info, style_digest=_digest(style_image), image_size=image_size,
                            width=width, residual_blocks=residual_blocks, path=ckpt)
            start = int(info["meta"].get("step", 0))
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                transformer = TransformerNet(width, residual_blocks)
        transformer = transformer.to(device).train()
        optimizer = torch.optim.Adam(transformer.parameters(), lr=lr)
        if info is not None:
            restore_optimizer(optimizer, info)
        net = transformer
        if ddp:
            net = nn.parallel.DistributedDataParallel(
                transformer, device_ids=[local_rank] if device.type == "cuda" else None)

        per_epoch = len(dataset) // (batch_size * world)

        def batches(first_step):
            """Batches from step ``first_step`` on; each epoch's order depends only on
            (seed, epoch), so a resumed run sees the images an uninterrupted one would."""
            epoch, skip = divmod(first_step, per_epoch)
            while True:
                if ddp:
                    sampler = torch.utils.data.DistributedSampler(dataset, world, rank, shuffle=True,
                                                                  seed=seed, drop_last=True)
                    sampler.set_epoch(epoch)
                else:
                    sampler = torch.utils.data.RandomSampler(
                        dataset, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
                order = list(sampler)[skip * batch_size:]
                loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, order),
                                                     batch_size=batch_size, shuffle=False,
                                                     drop_last=True, num_workers=num_workers)
                for batch in loader:
                    yield batch[0] if isinstance(batch, (list, tuple)) else batch
                epoch, skip = epoch + 1, 0

        stream = batches(start)
        precision = resolve_precision(precision, device)
        meta = dict(weights, lr=lr, batch_size=batch_size, image_size=image_size, seed=seed, precision=precision,
                    style_sha256=_digest(style_image),
                    world_size=world, style_layers=targets["style_layers"],
                    content_layer=targets["content_layer"], loss_model=getattr(model, "name", "?"))
        history: list[dict] = []
        samples = None
        bar = tqdm(range(start, steps), initial=start, total=steps, disable=not progress or rank != 0,
                   desc="train-style", unit="step")
        step, saved = start, (start if info is not None else 0)
        for step in bar:
            batch = next(stream).to(device)
            if samples is None:
                samples = (sample_images if sample_images is not None else batch[:4]).to(device)
            losses = train_step(net, optimizer, model, batch, targets, precision=precision, **weights)
            if not math.isfinite(losses["total"]):
                kept = f"{ckpt} still holds step {saved}" if saved else "nothing was saved"
                raise FloatingPointError(f"training diverged at step {step + 1}: the loss is {losses['total']}; "
                                         f"{kept} (lower lr or the loss weights and run again)")
            history.append(losses)
            bar.set_postfix(loss=f"{losses['total']:.4g}")
            done = step + 1
            if rank == 0 and sample_every and (done % sample_every == 0 or done == steps):
                save_image(sample_grid(transformer, samples), out_dir / "samples" / f"step_{done:06d}.png")
            if rank == 0 and checkpoint_every and (done % checkpoint_every == 0 or done == steps):
                save_checkpoint(ckpt, transformer, optimizer, dict(meta, step=done))
                saved = done
        bar.close()
        return transformer.eval(), history
    finally:
        if own_group:
            torch.distributed.destroy_process_group()
        if lock is not None:
            lock.close()


def _lock_folder(out_dir: Path):
    """Hold ``out_dir/.lock`` for this run, or refuse at once if another run holds it (two runs
    writing one folder would mix their checkpoints and samples). Released when the file closes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    handle = open(out_dir / ".lock", "a+")
    try:
        import fcntl
    except ImportError:           # no POSIX locks (Windows): nothing to hold
        return handle
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        raise RuntimeError(f"{out_dir} is in use by another training run (pid {owner}): wait for it to "
                           "finish or choose another output folder") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def sample_grid(transformer: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The content images above their stylisations, as one ``(1, 3, 2H, K*W)`` image."""
    out = stylize(transformer, images)
    top = torch.cat(list(images.to(out.device)), dim=2)
    bottom = torch.cat(list(out), dim=2)
    return torch.cat([top, bottom], dim=1).unsqueeze(0)
