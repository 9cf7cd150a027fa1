"""vizlib.render.transforms: Pad, and a Jitter that shifts without wrapping the image around."""
import pytest
import torch

from vizlib import render as R


def test_pad_modes_exact():
    x = torch.arange(12.0).view(1, 1, 3, 4)
    reflect = R.Pad(1)(x, None)
    assert reflect.shape == (1, 1, 5, 6)
    torch.testing.assert_close(reflect[0, 0, 0, 1:5], x[0, 0, 1])      # mirrored about row 0
    torch.testing.assert_close(reflect[0, 0, 1:4, 0], x[0, 0, :, 1])   # mirrored about column 0
    rep = R.Pad(2, mode="replicate")(x, None)
    torch.testing.assert_close(rep[0, 0, :2, 2:6], x[0, 0, :1].expand(2, 4))
    const = R.Pad(1, mode="constant")(x, None)
    assert torch.equal(const[0, 0, 0], torch.full((6,), 0.5))          # grey
    torch.testing.assert_close(const[..., 1:4, 1:5], x)
    assert R.Pad(0)(x, None) is x
    with pytest.raises(ValueError, match="mode"):
        R.Pad(1, mode="wrap")


def test_unwrapped_jitter_is_the_cyclic_shift_inside_and_never_wraps():
    p = 3
    bottom, right = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    bottom[..., -1, :] = 1.0  # a white bottom row
    right[..., :, -1] = 1.0   # a white right column
    pad, jitter, roll = R.Pad(p), R.Jitter(p, wrap=False), R.Jitter(p)
    wrapped = {"rows": False, "cols": False}
    for seed in range(40):
        dy, dx = torch.randint(-p, p + 1, (2,), generator=torch.Generator().manual_seed(seed)).tolist()
        for x in (bottom, right):
            out = jitter(pad(x, None), torch.Generator().manual_seed(seed))
            cyclic = roll(x, torch.Generator().manual_seed(seed))  # the same draw, wrapping
            assert out.shape == x.shape
            # where the shifted pixel comes from inside the image, both agree exactly
            inside = (..., slice(max(dy, 0), 16 + min(dy, 0)), slice(max(dx, 0), 16 + min(dx, 0)))
            assert torch.equal(out[inside], cyclic[inside])
        # nothing of the bottom row reaches the top rows, nothing of the right column the left ones
        top = jitter(pad(bottom, None), torch.Generator().manual_seed(seed))[..., :p, :]
        left = jitter(pad(right, None), torch.Generator().manual_seed(seed))[..., :, :p]
        assert not top.any() and not left.any()
        wrapped["rows"] |= bool(roll(bottom, torch.Generator().manual_seed(seed))[..., :p, :].any())
        wrapped["cols"] |= bool(roll(right, torch.Generator().manual_seed(seed))[..., :, :p].any())
    assert wrapped == {"rows": True, "cols": True}  # the checks can fail: the cyclic shift wraps


def test_unwrapped_jitter_alone_crops_and_refuses_too_small_images():
    x = torch.rand(2, 3, 10, 12)
    out = R.Jitter(2, wrap=False)(x, torch.Generator().manual_seed(0))
    assert out.shape == (2, 3, 6, 8)
    dy, dx = torch.randint(-2, 3, (2,), generator=torch.Generator().manual_seed(0)).tolist()
    assert torch.equal(out, x[..., 2 - dy:8 - dy, 2 - dx:10 - dx])
    with pytest.raises(ValueError, match="Pad"):
        R.Jitter(5, wrap=False)(x, torch.Generator())


def test_pad_and_unwrapped_jitter_in_the_render_loop(tiny_net):
    out = R.render(tiny_net, R.class_score(0), R.PixelImage(shape=(8, 8)), steps=3, lr=0.05,
                   transforms=[R.Pad(2), R.Jitter(2, wrap=False)], precision="float32")
    assert out.image.shape == (1, 3, 8, 8) and out.history["objective"][-1] > out.history["objective"][0]


def test_shift_is_pad_then_unwrapped_jitter_and_the_default_stacks_use_it():
    from vizlib import ascent
    x = torch.rand(1, 3, 12, 20, generator=torch.Generator().manual_seed(0))
    for seed in range(10):
        made = R.shift(2)(x, torch.Generator().manual_seed(seed))
        by_hand = R.Jitter(2, wrap=False)(R.Pad(2)(x, None), torch.Generator().manual_seed(seed))
        assert made.shape == x.shape and torch.equal(made, by_hand)
    first = ascent.default_transforms(64)[0]
    assert isinstance(first, R.Compose) and [type(t) for t in first.transforms] == [R.Pad, R.Jitter]
    assert first.transforms[1].wrap is False and first.transforms[1].pixels == 4
