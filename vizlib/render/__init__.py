"""One optimisation loop for every image the course makes by gradient ascent.

Class models, filter visualisation, fooling images, DeepDream, feature inversion (lectures
08-11) and texture / style synthesis (lectures 12-13) all solve the same problem with the
network's weights frozen:

    x* = argmax_x  objective(phi(T(x)))  -  sum_k  w_k R_k(x)

where ``x = param()`` is an image made from learnable tensors (a *parameterisation*),
``T`` is a random *transform* drawn afresh each step (pad, jitter, scale, rotate —
robustness, so the image cannot rely on one exact pixel alignment), ``phi`` the activations
of the layers the objective reads, and ``R_k`` *regularisers*. :mod:`vizlib.ascent` builds the
lectures' techniques on it. The parts live in one module each, as in Lucent:

- :mod:`~vizlib.render.objectives`: ``layer_outputs`` (runs the model only as far as the
  deepest layer asked for), ``Objective`` (``fn(acts) -> (B,)`` to maximise, combined with
  ``+ - * /``) and its constructors ``class_score``, ``channel``, ``neuron``,
  ``layer_energy``, ``feature_distance``.
- :mod:`~vizlib.render.param`: ``PixelImage`` (pixels, optionally in decorrelated colour) and
  ``FourierImage`` (a scaled spectrum in decorrelated colour); ``param()`` -> ``(B, 3, H, W)``
  in [0, 1].
- :mod:`~vizlib.render.transforms`: ``Pad``, ``Jitter``, ``RandomScale``, ``RandomRotate``
  (and ``rotate``), ``Compose``; ``t(images, generator) -> images``.
- :mod:`~vizlib.render.regularizers`: penalties ``L2`` and ``TV`` (``total_variation``) and
  between-step operations ``BlurEvery``, ``ClipSmallValues``, ``ClipSmallGradients``.
- :mod:`~vizlib.render.loop`: ``render(...) -> RenderResult(image, history)``.

The Gaussian blur (``BlurEvery``'s) lives in :mod:`vizlib.blur` and the precision policy in
:mod:`vizlib.precision`.

Example::

    model = load_model("vgg16")
    obj = class_score(model.classes.index("goldfish")) - 0.5 * channel("relu4_3", 7)
    param = FourierImage((1, 3, 224, 224), seed=0)
    result = render(model, obj, param, steps=256, lr=0.05,
                    transforms=[shift(8), RandomScale((0.9, 1.1)), RandomRotate(10)],
                    regularizers=[TV(1e-2)])
    result.image            # (1, 3, 224, 224) in [0, 1]
    result.history["objective"][-1]
"""
from .loop import RenderResult, render
from .objectives import (LOGITS, Objective, channel, class_score, feature_distance, layer_energy,
                         layer_outputs, neuron)
from .param import COLOR_CORRELATION_SQRT, GREY, FourierImage, PixelImage, color_correlation_sqrt
from .regularizers import TV, L2, BlurEvery, ClipSmallGradients, ClipSmallValues, total_variation
from .transforms import Compose, Jitter, Pad, RandomRotate, RandomScale, rotate, shift

__all__ = [
    "layer_outputs", "Objective", "class_score", "channel", "neuron", "layer_energy",
    "feature_distance", "PixelImage", "FourierImage", "Pad", "Jitter", "shift", "RandomScale",
    "RandomRotate", "Compose", "rotate", "L2", "TV", "BlurEvery", "ClipSmallValues",
    "ClipSmallGradients", "total_variation", "render",
    "RenderResult", "LOGITS", "GREY", "COLOR_CORRELATION_SQRT", "color_correlation_sqrt",
]
