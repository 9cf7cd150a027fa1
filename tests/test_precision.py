"""vizlib.precision: one policy, one default — what "auto" resolves to, and that every
``precision=`` in vizlib defaults to the same constant, whatever the hardware."""
import importlib
import inspect
import pkgutil

import pytest
import torch

import vizlib
from vizlib import fast_style, models, style
from vizlib.precision import DEFAULT_PRECISION, PRECISIONS, autocast, bf16_is_fast, resolve_precision


def test_resolve_precision_values_and_errors():
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("bfloat16", "cpu") == "bfloat16"
    assert resolve_precision("auto", "meta") == "float32"
    with pytest.raises(ValueError, match="precision must be one of 'auto', 'float32', 'bfloat16', got 'fp16'"):
        resolve_precision("fp16", "cpu")
    assert DEFAULT_PRECISION in PRECISIONS


@pytest.mark.parametrize("fast", [True, False])
def test_auto_picks_bfloat16_only_where_the_hardware_multiplies_it(monkeypatch, fast):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: fast)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert bf16_is_fast("cpu") is fast
    assert resolve_precision("auto", "cpu") == ("bfloat16" if fast else "float32")
    with autocast("auto", "cpu"):
        assert torch.is_autocast_enabled("cpu") is fast
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    with autocast("float32", "cpu"):
        assert not torch.is_autocast_enabled("cpu")


def test_a_torch_without_the_probes_means_float32(monkeypatch):
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert bf16_is_fast("cpu") is False
    assert resolve_precision("auto", "cpu") == "float32"


def _functions_with_precision():
    """Every public or private function and method in vizlib that takes ``precision=``."""
    found = {}
    for info in pkgutil.walk_packages(vizlib.__path__, "vizlib."):
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            members = [(name, obj)]
            if inspect.isclass(obj):
                members = [(f"{name}.{k}", v) for k, v in vars(obj).items()]
            for qual, fn in members:
                if inspect.isfunction(fn) and fn.__module__ == info.name and \
                        "precision" in inspect.signature(fn).parameters:
                    found[f"{info.name}.{qual}"] = fn
    return found


def test_every_precision_argument_defaults_to_the_one_constant():
    found = _functions_with_precision()
    for must in ("vizlib.render.loop.render", "vizlib.style.style_transfer", "vizlib.fast_style.stylize",
                 "vizlib.fast_style.perceptual_loss", "vizlib.fast_style.train_step", "vizlib.fast_style.train"):
        assert must in found, sorted(found)
    defaults = {name: inspect.signature(fn).parameters["precision"].default for name, fn in found.items()}
    optional = {name: d for name, d in defaults.items() if d is not inspect.Parameter.empty}
    assert set(optional) >= {"vizlib.render.loop.render", "vizlib.fast_style.train"}
    assert optional == {name: DEFAULT_PRECISION for name in optional}


@pytest.mark.parametrize("fast", [True, False])
def test_the_defaults_do_not_depend_on_the_hardware(monkeypatch, fast):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: fast)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    m = models.load_model("shapesnet", device="cpu")
    g = torch.Generator().manual_seed(4)
    content, style_image = torch.rand(1, 3, 40, 40, generator=g), torch.rand(1, 3, 40, 40, generator=g)
    kw = dict(optimizer="adam", steps=2, progress=False)
    default = style.style_transfer(m, content, style_image, **kw)
    explicit = style.style_transfer(m, content, style_image, precision=DEFAULT_PRECISION, **kw)
    assert default.history["loss"] == explicit.history["loss"]
    torch.testing.assert_close(default.image, explicit.image, rtol=0, atol=0)
    net = fast_style.TransformerNet().eval()
    x = torch.rand(1, 3, 24, 24, generator=g)
    torch.testing.assert_close(fast_style.stylize(net, x), fast_style.stylize(net, x, precision=DEFAULT_PRECISION),
                               rtol=0, atol=0)
