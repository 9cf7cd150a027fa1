"""vizlib.course.checks: a graded cell can tell the student's own code from a call to the reference."""
import sys
import threading

import pytest
import torch

import vizlib.filters
import vizlib.images
from vizlib.course.checks import reference_calls
from vizlib.filters import normalize_filters as renamed


def test_a_call_through_any_alias_is_seen():
    w = torch.randn(4, 3, 3, 3)
    with reference_calls("vizlib.filters") as used:
        renamed(w)
    assert used == ["vizlib.filters.normalize_filters"]


def test_own_code_and_other_modules_are_not_reported():
    w = torch.randn(4, 3, 3, 3)
    with reference_calls(vizlib.filters) as used:
        (w - w.min()) / (w.max() - w.min())
        vizlib.images.check_images(torch.rand(1, 3, 8, 8))
    assert used == []


def test_calls_from_a_thread_started_inside_are_seen():
    with reference_calls("vizlib.filters") as used:
        t = threading.Thread(target=renamed, args=(torch.randn(2, 3, 3, 3),))
        t.start()
        t.join()
    assert "vizlib.filters.normalize_filters" in used


def test_the_previous_profiler_is_restored_also_on_error():
    before = sys.getprofile()
    with pytest.raises(RuntimeError):
        with reference_calls("vizlib.filters"):
            raise RuntimeError("student code failed")
    assert sys.getprofile() is before
    with pytest.raises(ValueError, match="at least one module"):
        with reference_calls():
            pass


def test_a_package_is_watched_in_every_module_inside_it():
    from vizlib.render import total_variation                    # lives in vizlib/render/regularizers.py
    with reference_calls("vizlib.render") as used:
        total_variation(torch.rand(1, 3, 4, 5))
    assert "vizlib.render.regularizers.total_variation" in used
    with reference_calls("vizlib.filters") as used:
        total_variation(torch.rand(1, 3, 4, 5))
    assert used == []
