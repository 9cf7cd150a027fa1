"""Resource discipline, for every vizlib method that hooks into a model:

- run normally, with a bad target (or layer) and with a layer that raises midway, the model comes
  back exactly as it was: same weights, mode, ``requires_grad``, ``.grad``, the same module
  objects (nothing swapped) and no hook left behind; the caller's images are untouched;
- called 100 times, memory stays flat: the process's resident memory ends within 1.2x of its level
  after the first call, and — the sensitive check — no tensors pile up between calls.
"""
from __future__ import annotations

import copy
import gc
import warnings

import pytest
import torch

from vizlib import activations, ascent, attribution as A, hooks, neighbors, patches, receptive, style
from conftest import ModelState

LAYER = "relu3"

# method name -> call(model, images (2, 3, 32, 32), target, layer)
METHODS = {
    "occlusion": lambda m, x, t, l: A.occlusion(m, x, t, patch=16, stride=16),
    "saliency": lambda m, x, t, l: A.saliency(m, x, t),
    "guided_backprop": lambda m, x, t, l: A.guided_backprop(m, x, t),
    "deconvnet": lambda m, x, t, l: A.deconvnet(m, x, t),
    "cam": lambda m, x, t, l: A.cam(m, x, t),
    "grad_cam": lambda m, x, t, l: A.grad_cam(m, x, t, layer=l),
    "guided_grad_cam": lambda m, x, t, l: A.guided_grad_cam(m, x, t, layer=l),
    "grad_cam_pp": lambda m, x, t, l: A.grad_cam_pp(m, x, t, layer=l),
    "smoothgrad": lambda m, x, t, l: A.smoothgrad(m, x, t, samples=2),
    "integrated_gradients": lambda m, x, t, l: A.integrated_gradients(m, x, t, steps=2),
    "class_visualization": lambda m, x, t, l: ascent.class_visualization(m, t, size=32, steps=2, progress=False),
    "filter_visualization": lambda m, x, t, l: ascent.filter_visualization(m, l, [0], size=32, steps=2,
                                                                         progress=False),
    "fooling_image": lambda m, x, t, l: ascent.fooling_image(m, x[:1], t, max_steps=2),
    "deepdream": lambda m, x, t, l: ascent.deepdream(m, x[:1], l, octaves=1, steps=2, progress=False),
    "invert_features": lambda m, x, t, l: ascent.invert_features(m, x[:1], l, steps=2, progress=False),
    "style_transfer": lambda m, x, t, l: style.style_transfer(m, x[:1], x[1:], style_layers=[l], content_layer=l,
                                                              optimizer="adam", steps=2, progress=False),
    "gram_texture": lambda m, x, t, l: style.gram_texture(m, x[:1], size=32, style_layers=[l], optimizer="adam",
                                                          steps=2, progress=False),
    "layer_activations": lambda m, x, t, l: activations.layer_activations(m, x, [l]),
    "extract_features": lambda m, x, t, l: neighbors.extract_features(m, x, layer=l, progress=False, cache_dir=None),
    "top_activations": lambda m, x, t, l: patches.top_activations(m, l, x, k=2),
    "capture_activations": lambda m, x, t, l: _capture(m, x, l),
    "empirical_receptive_field": lambda m, x, t, l: receptive.empirical_receptive_field(m, l, 32),
}
# methods that take a class: the bad call names a class that does not exist; the others a layer
TARGETED = {"occlusion", "saliency", "guided_backprop", "deconvnet", "cam", "grad_cam", "guided_grad_cam",
            "grad_cam_pp", "smoothgrad", "integrated_gradients", "class_visualization", "fooling_image"}

# runs a float64 copy whose ReLUs are identities (vizlib.receptive), never the caller's modules
WORKS_ON_A_COPY = {"empirical_receptive_field"}


def _capture(m, x, layer):
    with hooks.capture_activations(m, layer) as acts:
        with torch.no_grad():
            m(x)
    return acts


@pytest.fixture
def images():
    return torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


class _Boom(RuntimeError):
    pass


def _raising_copy(model, layer):
    """A copy of ``model`` whose ``layer`` raises in the middle of the forward pass (a hook of the
    test's own, counted in the baseline)."""
    m = copy.deepcopy(model)

    def explode(module, args, output):
        raise _Boom(f"{layer} failed")

    m.layer(layer).register_forward_hook(explode)
    return m


@pytest.mark.parametrize("name", sorted(METHODS))
def test_model_unchanged_normally_with_bad_input_and_when_a_layer_raises(name, shapesnet, images):
    call = METHODS[name]
    assert all(p.grad is None for p in shapesnet.parameters())
    before = ModelState(shapesnet, images)
    call(shapesnet, images, 3, LAYER)
    before.assert_unchanged(f"{name}, normal call")

    with pytest.raises((ValueError, IndexError, KeyError)) as bad:
        if name in TARGETED:
            call(shapesnet, images, 99, LAYER)     # ShapesNet has 8 classes
        else:
            call(shapesnet, images, 3, "relu9")    # no such layer
    assert ("99" in str(bad.value)) or ("relu9" in str(bad.value)), f"{name}: {bad.value}"
    before.assert_unchanged(f"{name}, bad target")

    boom = _raising_copy(shapesnet, LAYER)
    boom_before = ModelState(boom, images)
    if name in WORKS_ON_A_COPY:
        call(boom, images, 3, LAYER)   # it never runs the caller's modules: nothing to raise
    else:
        with pytest.raises(_Boom):
            call(boom, images, 3, LAYER)
    boom_before.assert_unchanged(f"{name}, layer raising")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _live_tensors() -> int:
    gc.collect()
    with warnings.catch_warnings():  # isinstance on torch's deprecated module proxies warns
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc (Linux)")
@pytest.mark.parametrize("name", sorted(METHODS))
def test_memory_stays_flat_over_100_calls(name, shapesnet, images):
    call = METHODS[name]
    call(shapesnet, images, 3, LAYER)
    rss_first, tensors_first = _rss_bytes(), _live_tensors()
    for _ in range(99):
        call(shapesnet, images, 3, LAYER)
    rss_last, tensors_last = _rss_bytes(), _live_tensors()
    assert rss_last <= 1.2 * rss_first, f"{name}: {rss_first / 2**20:.0f} MiB -> {rss_last / 2**20:.0f} MiB"
    assert tensors_last <= tensors_first + 2, f"{name}: {tensors_first} live tensors -> {tensors_last}"
