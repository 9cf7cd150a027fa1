"""Sample data for the lectures, in one place: bundled photos, famous paintings, example batches.

- :func:`sample_image` / :func:`list_sample_images` / :func:`sample_image_info`: photos that
  ship inside installed packages (scikit-image, matplotlib, scikit-learn): no downloads.
- :func:`painting` / :data:`PAINTINGS`: public-domain paintings for style transfer, downloaded
  from Wikimedia Commons when the network is there; offline a bundled, strongly textured photo
  stands in and a :class:`vizlib.config.VizlibWarning` says so.
- :func:`example_batch` / :data:`EXAMPLE_PHOTOS`: the images the attribution lectures explain,
  suited to the model (bundled photos for an ImageNet model, generated shapes for ShapesNet).

Every image is a ``(B, 3, H, W)`` float32 tensor in [0, 1] on the CPU unless ``device=`` says
otherwise (the device policy of :mod:`vizlib.policy`).
"""
from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import config, shapes
from .images import ImageError, ImageFetchError, Size, load_image, stack_images

__all__ = ["SAMPLE_IMAGES", "list_sample_images", "sample_image", "sample_image_info",
           "PAINTINGS", "painting", "EXAMPLE_PHOTOS", "example_batch"]


# ----------------------------------------------------------------------------------------
# Photos bundled with installed packages
# ----------------------------------------------------------------------------------------

# name -> (package, location key, file name, description, credit)
_SAMPLES: dict[str, tuple[str, str, str, str, str]] = {
    "astronaut": ("scikit-image", "skimage", "astronaut.png",
                  "Astronaut Eileen Collins in her flight suit", "NASA, public domain"),
    "brick": ("scikit-image", "skimage", "brick.png",
              "Brick wall texture, grayscale", "CC0Textures, CC0"),
    "camera": ("scikit-image", "skimage", "camera.png",
               "Man with a camera on a tripod, grayscale", "Lav Varshney, CC0"),
    "checkerboard": ("scikit-image", "skimage", "chessboard_GRAY.png",
                     "Black and white checkerboard, grayscale", "scikit-image, synthetic"),
    "chelsea": ("scikit-image", "skimage", "chelsea.png",
                "Chelsea the cat", "Stefan van der Walt, CC0"),
    "coffee": ("scikit-image", "skimage", "coffee.png",
               "Cup of coffee on a wooden table", "Rachel Michetti / Pikolo Espresso Bar, CC0"),
    "coins": ("scikit-image", "skimage", "coins.png",
              "Greek coins from Pompeii, grayscale", "Brooklyn Museum, no known copyright restrictions"),
    "grass": ("scikit-image", "skimage", "grass.png",
              "Grass texture, grayscale", "linolafett on DeviantArt, CC0"),
    "gravel": ("scikit-image", "skimage", "gravel.png",
               "Gravel texture, grayscale", "CC0Textures, CC0"),
    "horse": ("scikit-image", "skimage", "horse.png",
              "Black silhouette of a horse on white", "Andreas Preuss (openclipart), CC0"),
    "hubble_deep_field": ("scikit-image", "skimage", "hubble_deep_field.jpg",
                          "Hubble eXtreme Deep Field: thousands of galaxies", "NASA, public domain"),
    "immunohistochemistry": ("scikit-image", "skimage", "ihc.png",
                             "Immunohistochemical staining of colonic glands (microscopy)",
                             "CMMI, no known copyright restrictions"),
    "motorcycle": ("scikit-image", "skimage", "motorcycle_left.png",
                   "Motorcycle in a workshop (left view of a stereo pair)",
                   "Middlebury 2014 stereo dataset, Scharstein et al."),
    "retina": ("scikit-image", "skimage", "retina.jpg",
               "Fundus photograph of a human retina", "Mikael Häggström, CC0"),
    "rocket": ("scikit-image", "skimage", "rocket.jpg",
               "Falcon 9 rocket launching DSCOVR", "SpaceX, public domain"),
    "grace_hopper": ("matplotlib", "matplotlib", "grace_hopper.jpg",
                     "Portrait of computer scientist Grace Hopper in uniform", "US Navy, public domain"),
    "china": ("scikit-learn", "sklearn", "china.jpg",
              "Chinese temple roof among trees", "danielbuechele on Flickr, CC BY 2.0"),
    "flower": ("scikit-learn", "sklearn", "flower.jpg",
               "Close-up of a pink flower", "vultilion on Flickr, CC BY 2.0"),
}

_ALIASES = {"cat": "chelsea", "ihc": "immunohistochemistry", "hubble": "hubble_deep_field",
            "hopper": "grace_hopper", "chessboard": "checkerboard"}

#: Every registered sample name (see :func:`list_sample_images` for those present here).
SAMPLE_IMAGES: tuple[str, ...] = tuple(sorted(_SAMPLES))


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _sample_path(name: str) -> Path | None:
    _, where, fname, _, _ = _SAMPLES[name]
    if where == "matplotlib":
        try:
            import matplotlib  # only to ask where its data lives; importing it is slow

            base = Path(matplotlib.get_data_path())
        except Exception:  # noqa: BLE001
            pkg = _package_dir("matplotlib")
            base = pkg / "mpl-data" if pkg else None
        path = base / "sample_data" / fname if base else None
    elif where == "sklearn":
        pkg = _package_dir("sklearn")
        path = pkg / "datasets" / "images" / fname if pkg else None
    else:
        pkg = _package_dir("skimage")
        path = pkg / "data" / fname if pkg else None
    return path if path is not None and path.is_file() else None


def _canonical(name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    key = _ALIASES.get(key, key)
    return key if key in _SAMPLES else None


def _resolve_sample(name: str) -> str:
    key = _canonical(name)
    if key is None:
        available = list_sample_images()
        guess = difflib.get_close_matches(str(name).strip().lower(), list(_SAMPLES) + list(_ALIASES), n=3, cutoff=0.5)
        guess = list(dict.fromkeys(_ALIASES.get(g, g) for g in guess))
        hint = f"; did you mean {' or '.join(repr(g) for g in guess)}?" if guess else ""
        raise ImageError(f"unknown sample image {name!r}{hint} Available: {', '.join(available)}")
    return key


def list_sample_images() -> list[str]:
    """Names of the sample images whose files are present in the installed packages (no downloads)."""
    return [name for name in SAMPLE_IMAGES if _sample_path(name) is not None]


def sample_image_info(name: str) -> dict:
    """Facts about a sample image: ``name``, ``description``, ``credit``, ``source_package``,
    ``path`` (str, or None when the file is missing) and ``available`` (bool)."""
    key = _resolve_sample(name)
    package, _, _, description, credit = _SAMPLES[key]
    path = _sample_path(key)
    return {
        "name": key,
        "description": description,
        "credit": credit,
        "source_package": package,
        "path": None if path is None else str(path),
        "available": path is not None,
    }


def sample_image(name: str, size: Size = None) -> torch.Tensor:
    """A sample photo shipped inside an installed package, as a ``(1, 3, H, W)`` float32 tensor in [0, 1].

    Nothing is downloaded. ``name`` is one of :func:`list_sample_images` (e.g.
    ``'astronaut'``, ``'chelsea'``, ``'grace_hopper'``); gray samples come back with 3
    equal channels. ``size`` as in :func:`load_image`.
    """
    key = _resolve_sample(name)
    path = _sample_path(key)
    if path is None:
        package = _SAMPLES[key][0]
        raise ImageError(
            f"sample image {key!r} should ship with {package}, but its file is not in the installed "
            f"version; available here: {', '.join(list_sample_images())}"
        )
    return load_image(path, size=size)


# ----------------------------------------------------------------------------------------
# Style images: famous public-domain paintings by URL, bundled textures offline
# ----------------------------------------------------------------------------------------

#: name -> (title, URL of a public-domain reproduction on Wikimedia Commons, bundled sample
#: used when the URL cannot be fetched). The paintings themselves are in the public domain.
PAINTINGS = {
    "starry_night": ("Vincent van Gogh, The Starry Night (1889)",
                     "https://upload.wikimedia.org/wikipedia/commons/thumb/e/ea/"
                     "Van_Gogh_-_Starry_Night_-_Google_Art_Project.jpg/"
                     "1024px-Van_Gogh_-_Starry_Night_-_Google_Art_Project.jpg",
                     "immunohistochemistry"),
    "great_wave": ("Katsushika Hokusai, The Great Wave off Kanagawa (c. 1831)",
                   "https://upload.wikimedia.org/wikipedia/commons/thumb/a/a5/"
                   "Tsunami_by_hokusai_19th_century.jpg/1024px-Tsunami_by_hokusai_19th_century.jpg",
                   "hubble_deep_field"),
    "composition_vii": ("Wassily Kandinsky, Composition VII (1913)",
                        "https://upload.wikimedia.org/wikipedia/commons/thumb/b/b4/"
                        "Vassily_Kandinsky%2C_1913_-_Composition_7.jpg/"
                        "1024px-Vassily_Kandinsky%2C_1913_-_Composition_7.jpg",
                        "coffee"),
}


def painting(name: str, size: Size = None, *, timeout: float = 10.0) -> torch.Tensor:
    """A famous painting as a style image, ``(1, 3, H, W)`` in [0, 1].

    Downloaded from Wikimedia Commons (:data:`PAINTINGS`) through
    :func:`vizlib.images.load_image` when the network is there; otherwise — offline,
    ``VIZLIB_OFFLINE=1``, or any download failure — a one-line
    :class:`~vizlib.config.VizlibWarning` says so and a bundled, strongly textured sample
    image stands in. ``name`` may also be any path or URL, which is loaded as is (errors are
    not hidden). ``size`` as in :func:`vizlib.images.load_image`.
    """
    if name not in PAINTINGS:
        return load_image(name, size=size, downscale=True, timeout=timeout)
    title, url, fallback = PAINTINGS[name]
    try:
        return load_image(url, size=size, downscale=True, timeout=timeout)
    except ImageFetchError as e:
        reason = "VIZLIB_OFFLINE is set" if config.offline() else str(e)
        config.warn(f"{title} not available ({reason}); using the bundled '{fallback}' image instead")
        return sample_image(fallback, size=size)


# ----------------------------------------------------------------------------------------
# The lectures' example batches
# ----------------------------------------------------------------------------------------

#: Bundled photos a real ImageNet classifier names correctly (EfficientNet-Lite0, measured: Egyptian
#: cat, espresso, moped, missile, military uniform, palace); the horse silhouette ("Great Dane")
#: and the astronaut ("bobsled") are left out.
EXAMPLE_PHOTOS = ("chelsea", "coffee", "motorcycle", "rocket", "grace_hopper", "china")


def example_batch(model: nn.Module, n: int = 4, seed: int = 0, size: int | None = None,
                  device=None) -> dict:
    """Images for the lectures, suited to ``model``, on ``device`` (default the CPU; any device
    works with vizlib and with a course model's door).

    An ImageNet model gets up to ``n`` bundled photos (:data:`EXAMPLE_PHOTOS`, ``size`` default
    224, 64 in quick mode) and explains its own top class (``targets`` None, ``masks`` None). Any other model
    (the offline ShapesNet) gets ``n`` generated shapes (:func:`vizlib.shapes.make_batch`,
    ``size`` default ``model.input_size``) with their true labels as ``targets`` and their
    object ``masks``.

    Returns ``{"images": (n, 3, S, S) in [0, 1], "names": [str], "targets": (n,) int64 or None,
    "masks": (n, S, S) bool or None}``.
    """
    if getattr(model, "source", None) == "imagenet":
        names = list(EXAMPLE_PHOTOS[:n])
        x = stack_images([sample_image(k) for k in names], size=size or config.pick(224, 64))
        return {"images": x.to(device), "names": names, "targets": None, "masks": None}
    data = shapes.make_batch(n, size or getattr(model, "input_size", 64), seed=seed)
    classes = getattr(model, "classes", None) or list(shapes.CLASSES)
    return {"images": data["images"].to(device), "names": [classes[int(i)] for i in data["labels"]],
            "targets": data["labels"].to(device), "masks": data["masks"].to(device)}
