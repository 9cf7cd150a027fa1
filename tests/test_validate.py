"""The one shape check and the one integer check every module uses (vizlib.validate)."""
import numpy as np
import pytest
import torch

from vizlib.validate import check_positive_int, check_shape


def test_check_shape_returns_the_tensor_itself():
    x = torch.zeros(2, 3, 5, 7)
    assert check_shape(x, "B 3 H W", "images") is x


@pytest.mark.parametrize("shape, spec, message", [
    ((3, 5, 7), "B 3 H W", r"images must have shape \(B, 3, H, W\), got \(3, 5, 7\)"),
    ((2, 4, 5, 7), "B 3 H W", r"got \(2, 4, 5, 7\)"),
    ((2, 3, 5, 7), "1 C h w", r"must have shape \(1, C, h, w\), got \(2, 3, 5, 7\)"),
    ((2, 3, 4), "B C C", r"\(B, C, C\), got \(2, 3, 4\)"),
])
def test_check_shape_names_the_shape_wanted_and_given(shape, spec, message):
    with pytest.raises(ValueError, match=message):
        check_shape(torch.zeros(shape), spec, "images")


def test_names_bind_across_dimensions_and_from_outside():
    check_shape(torch.zeros(2, 3, 3), "B C C")
    check_shape(torch.zeros(2, 9, 4), "B H W", "maps", sizes={"B": 2, "W": 4})
    with pytest.raises(ValueError, match=r"maps must have shape \(B, H, W\) = \(2, H, 5\), got \(2, 9, 4\)"):
        check_shape(torch.zeros(2, 9, 4), "B H W", "maps", sizes={"B": 2, "W": 5})


def test_types_and_dtypes_are_type_errors():
    with pytest.raises(TypeError, match="x must be a tensor \\(B, C\\), got a NumPy array"):
        check_shape(np.zeros((2, 3)), "B C", "x")
    with pytest.raises(TypeError, match="got list"):
        check_shape([1.0], "B", "x")
    with pytest.raises(TypeError, match="x must be floating point, got dtype torch.int64"):
        check_shape(torch.zeros(2, 3, dtype=torch.long), "B C", "x")
    assert check_shape(torch.zeros(2, 3, dtype=torch.long), "B C", "x", floating=False).dtype == torch.long


def test_hint_is_appended_to_shape_errors():
    with pytest.raises(ValueError, match=r"got \(3, 4, 4\) — add a batch dimension$"):
        check_shape(torch.zeros(3, 4, 4), "B 3 H W", hint=" — add a batch dimension")


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_check_positive_int_refuses(bad):
    with pytest.raises(ValueError, match=f"batch_size must be a positive integer, got {bad!r}"):
        check_positive_int(bad, "batch_size")


def test_check_positive_int_accepts_numpy_ints():
    assert check_positive_int(np.int64(3), "n") == 3 and type(check_positive_int(np.int64(3), "n")) is int


def test_hint_is_appended_to_type_errors_too():
    with pytest.raises(TypeError, match=r"got list — one image$"):
        check_shape([1.0], "1 C h w", "sample", hint=" — one image")
    with pytest.raises(TypeError, match=r"got dtype torch.int64 — one image$"):
        check_shape(torch.zeros(1, 3, 2, 2, dtype=torch.long), "1 C h w", "sample", hint=" — one image")
