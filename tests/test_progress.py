"""vizlib.progress: every long loop shows a bar on stderr when forced or long, prints nothing when
told not to or when short (nbgrader fails a graded cell that writes to stderr), and computes the
same result either way."""
import dataclasses
from collections import OrderedDict

import pytest
import torch
from torch import nn

from vizlib import attribution as A
from vizlib import neighbors as nb
from vizlib import patches
from vizlib import progress
from vizlib import sanity as S
from vizlib import texture as T


def tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 4, 3, padding=1), relu1=nn.ReLU(),
        conv2=nn.Conv2d(4, 4, 3, padding=1), relu2=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1), flat=nn.Flatten(), fc=nn.Linear(4, 3),
    )).eval()


NET = tiny_net()
IMAGES = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
MAPS = torch.rand(4, 8, 8, generator=torch.Generator().manual_seed(1))
SAMPLE = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(2))

# name -> (desc on the bar, call(progress, long) where ``long`` makes the loop reach the default threshold)
LOOPS = {
    "deletion_curve": ("deletion_curve", lambda p, long: S.deletion_curve(
        NET, IMAGES[:1], MAPS[:1], 0, steps=11 if long else 3, batch_size=1, progress=p)),
    "insertion_curve": ("insertion_curve", lambda p, long: S.insertion_curve(
        NET, IMAGES[:1], MAPS[:1], 0, steps=11 if long else 3, batch_size=1, progress=p)),
    "cascading_randomization": ("cascading_randomization", lambda p, long: S.cascading_randomization(
        NET, A.saliency, IMAGES[:2], layers=["fc", "conv2", "conv1"] * (3 if long else 1), progress=p)),
    "top_activations": ("scanning relu1", lambda p, long: patches.top_activations(
        NET, "relu1", IMAGES.repeat(3 if long else 1, 1, 1, 1), k=2, batch_size=1, progress=p)),
    "top_activations_stream": ("scanning relu2", lambda p, long: patches.top_activations(
        NET, "relu2", [(IMAGES[i:i + 1], None) for i in range(4)] * (3 if long else 1), k=2, progress=p)),
    "extract_features": ("extract_features", lambda p, long: nb.extract_features(
        NET, IMAGES.repeat(3 if long else 1, 1, 1, 1), batch_size=1, progress=p)),
    "extract_features_dict": ("extract_features", lambda p, long: nb.extract_features(
        NET, {"images": IMAGES.repeat(3 if long else 1, 1, 1, 1), "labels": None}, batch_size=1,
        layer="relu2", progress=p)),
    "nearest_neighbor_texture": ("nearest_neighbor_texture", lambda p, long: T.nearest_neighbor_texture(
        SAMPLE, (10, 11) if long else (4, 5), window=5, seed=0, progress=p)),
}


@pytest.fixture
def small_texture_threshold(monkeypatch):
    """The texture's default threshold, scaled down so that a test-sized texture counts as long."""
    monkeypatch.setattr(T, "PROGRESS_PIXELS", 100)


def same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if dataclasses.is_dataclass(a):
        return type(a) is type(b) and same(vars(a), vars(b))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.mark.parametrize("loop", list(LOOPS))
def test_a_forced_bar_goes_to_stderr_and_changes_nothing(loop, capsys, small_texture_threshold):
    desc, call = LOOPS[loop]
    shown = call(True, False)
    out, err = capsys.readouterr()
    assert desc in err and out == ""
    hidden = call(False, False)
    assert capsys.readouterr() == ("", "")
    assert same(shown, hidden)


@pytest.mark.parametrize("loop", list(LOOPS))
def test_short_loops_are_silent_and_long_ones_show_a_bar_by_default(loop, capsys, small_texture_threshold):
    desc, call = LOOPS[loop]
    call(None, False)
    assert capsys.readouterr() == ("", "")
    long_default = call(None, True)
    out, err = capsys.readouterr()
    assert desc in err and out == ""
    assert same(long_default, call(False, True))
    assert capsys.readouterr() == ("", "")


def test_a_stream_without_a_length_is_silent_by_default_and_counts_when_forced(capsys):
    stream = lambda: (IMAGES[i:i + 1] for i in range(4) for _ in range(4))   # 16 batches, no len()
    quiet = patches.top_activations(NET, "relu1", stream(), k=2)
    assert capsys.readouterr() == ("", "")
    shown = patches.top_activations(NET, "relu1", stream(), k=2, progress=True)
    assert "scanning relu1" in capsys.readouterr().err
    assert same(quiet, shown)


def test_the_texture_threshold_is_in_pixels(capsys, monkeypatch):
    T.nearest_neighbor_texture(SAMPLE, (10, 11), window=5)                 # 110 pixels: quiet
    assert capsys.readouterr() == ("", "")
    monkeypatch.setattr(T, "PROGRESS_PIXELS", 110)                         # read at each call
    T.nearest_neighbor_texture(SAMPLE, (10, 11), window=5)                 # 110 pixels: at the threshold
    assert "/110 [" in capsys.readouterr().err                             # one step per pixel
    monkeypatch.setattr(T, "PROGRESS_PIXELS", 111)
    T.nearest_neighbor_texture(SAMPLE, (10, 11), window=5)                 # one pixel short: quiet
    assert capsys.readouterr() == ("", "")


def test_the_rule_of_progress_bar(capsys):
    cases = [((9, "a"), {}, False), ((10, "b"), {}, True), ((None, "c"), {}, False),
             ((None, "d", True), {}, True), ((500, "e", False), {}, False), ((3, "f"), {"threshold": 3}, True),
             ((30, "g"), {"threshold": 31}, False), ((0, "h", True), {}, True)]
    for args, kwargs, shown in cases:
        with progress.progress_bar(*args, **kwargs) as bar:
            assert bar.disable is (not shown), args
            bar.update(1)
        err = capsys.readouterr().err
        assert (args[1] in err) is shown, args
    with progress.progress_bar(12, "passes", unit="batch") as bar:
        bar.update(12)
    err = capsys.readouterr().err
    assert "passes" in err and "/12 [" in err and "batch" in err


def test_attribution_keeps_its_names_and_rule(monkeypatch, capsys):
    assert A.PROGRESS_PASSES == progress.PROGRESS_PASSES == 10
    with A._progress(10, "occlusion", None) as bar:
        assert not bar.disable and bar.unit == "pass"
    with A._progress(9, "occlusion", None) as bar:
        assert bar.disable
    monkeypatch.setattr(A, "PROGRESS_PASSES", 5)                          # still read at each call
    with A._progress(6, "occlusion", None) as bar:
        assert not bar.disable
    capsys.readouterr()
