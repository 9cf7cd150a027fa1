"""The generated shapes dataset: deterministic, well-formed, with exact masks and boxes."""
import pytest
import torch

from vizlib import shapes
from vizlib.shapes import CLASSES, ShapesDataset, boxes_from_masks, make_batch

N = 96  # a multiple of len(CLASSES): perfectly balanced


@pytest.fixture(scope="module")
def batch():
    return make_batch(N, size=64, seed=3)


def test_classes():
    assert isinstance(CLASSES, tuple) and 6 <= len(CLASSES) <= 10
    assert len(set(CLASSES)) == len(CLASSES)
    assert all(isinstance(c, str) and c for c in CLASSES)


def test_same_seed_gives_identical_tensors(batch):
    again = make_batch(N, size=64, seed=3)
    for key in ("images", "labels", "masks", "boxes"):
        assert torch.equal(batch[key], again[key]), key


def test_different_seed_gives_different_images(batch):
    other = make_batch(N, size=64, seed=4)
    assert not torch.equal(batch["images"], other["images"])
    assert not torch.equal(batch["masks"], other["masks"])


def test_global_rng_is_neither_used_nor_disturbed():
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = make_batch(16, size=32, seed=5)
    assert torch.equal(torch.get_rng_state(), state)
    torch.manual_seed(123)
    b = make_batch(16, size=32, seed=5)
    assert torch.equal(a["images"], b["images"])


def test_shapes_dtypes_ranges(batch):
    im, lab, m, box = batch["images"], batch["labels"], batch["masks"], batch["boxes"]
    assert im.shape == (N, 3, 64, 64) and im.dtype == torch.float32
    assert lab.shape == (N,) and lab.dtype == torch.int64
    assert m.shape == (N, 64, 64) and m.dtype == torch.bool
    assert box.shape == (N, 4) and box.dtype == torch.int64
    assert float(im.min()) >= 0.0 and float(im.max()) <= 1.0
    assert torch.isfinite(im).all()
    assert int(lab.min()) >= 0 and int(lab.max()) < len(CLASSES)


def test_other_sizes():
    b = make_batch(8, size=40, seed=1)
    assert b["images"].shape == (8, 3, 40, 40) and b["masks"].shape == (8, 40, 40)
    assert make_batch(0)["images"].shape == (0, 3, 64, 64)
    with pytest.raises(ValueError):
        make_batch(4, size=8)


def test_masks_non_empty_and_boxes_tight(batch):
    m, box = batch["masks"], batch["boxes"]
    assert (m.flatten(1).sum(1) > 0).all()
    for i in range(N):
        x0, y0, x1, y1 = box[i].tolist()
        assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        inside = m[i, y0:y1, x0:x1]
        assert int(inside.sum()) == int(m[i].sum())          # the box holds the whole mask
        assert inside[0].any() and inside[-1].any()           # and touches it on every side
        assert inside[:, 0].any() and inside[:, -1].any()
    assert torch.equal(boxes_from_masks(m), box)


def test_object_size_range(batch):
    box = batch["boxes"]
    side = torch.maximum(box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]).float() / 64
    assert float(side.min()) >= 0.15 and float(side.max()) <= 0.65


def test_balanced_classes(batch):
    counts = torch.bincount(batch["labels"], minlength=len(CLASSES))
    assert (counts == N // len(CLASSES)).all()
    counts = torch.bincount(make_batch(50, size=32, seed=0)["labels"], minlength=len(CLASSES))
    assert int(counts.max() - counts.min()) <= 1
    assert not torch.equal(batch["labels"], torch.arange(N) % len(CLASSES))   # shuffled


def test_restrict_classes():
    b = make_batch(30, size=32, seed=2, classes=[1, 4, 6])
    assert set(b["labels"].tolist()) == {1, 4, 6}
    assert (torch.bincount(b["labels"], minlength=len(CLASSES))[[1, 4, 6]] == 10).all()
    with pytest.raises(ValueError):
        make_batch(4, classes=[len(CLASSES)])


def test_object_is_visible(batch):
    """The object's pixels differ from the background right around it."""
    im, m = batch["images"], batch["masks"]
    for i in range(N):
        ring = torch.nn.functional.max_pool2d(m[i][None, None].float(), 7, 1, 3)[0, 0].bool() & ~m[i]
        inside = im[i][:, m[i]].mean(1)
        around = im[i][:, ring].mean(1)
        pixel_diff = (im[i][:, m[i]] - around[:, None]).abs().sum(0).mean()
        assert float(pixel_diff) > 0.15 or float((inside - around).abs().sum()) > 0.15, i


def test_every_class_drawn_differently():
    """Each class yields a distinct mean mask shape (sanity: classes are not all one shape)."""
    b = make_batch(64, size=64, seed=7)
    fill = torch.stack([
        (b["masks"][b["labels"] == c].flatten(1).sum(1).float()
         / ((b["boxes"][b["labels"] == c, 2] - b["boxes"][b["labels"] == c, 0])
            * (b["boxes"][b["labels"] == c, 3] - b["boxes"][b["labels"] == c, 1])).float()).mean()
        for c in range(len(CLASSES))])
    disc, square, triangle, cross, ring = (fill[CLASSES.index(k)] for k in ("disc", "square", "triangle", "cross", "ring"))
    assert 0.7 < disc < 0.85                 # pi / 4
    assert ring < disc and cross < disc and triangle < disc


def test_dataset_wrapper():
    ds = ShapesDataset(40, size=32, seed=9, block=16)
    assert len(ds) == 40
    image, label = ds[5]
    assert image.shape == (3, 32, 32) and isinstance(label, int)
    s = ds.sample(5)
    assert torch.equal(s["image"], image) and s["label"] == label
    assert s["mask"].shape == (32, 32) and s["mask"].any()
    assert torch.equal(s["box"], boxes_from_masks(s["mask"][None])[0])
    # image i does not depend on the dataset's length, and is regenerated identically
    assert torch.equal(ShapesDataset(7, size=32, seed=9, block=16)[5][0], image)
    assert torch.equal(ds[-1][0], ds[39][0])
    with pytest.raises(IndexError):
        ds[40]
    b = ds.batch([0, 1, 2])
    assert b["images"].shape == (3, 3, 32, 32) and b["labels"].shape == (3,)
    loader = torch.utils.data.DataLoader(ds, batch_size=8)
    x, y = next(iter(loader))
    assert x.shape == (8, 3, 32, 32) and y.dtype == torch.int64


def test_docstrings_state_shapes():
    assert "(N, 3, H, W)" in make_batch.__doc__ and "[0, 1]" in make_batch.__doc__
    assert shapes.__doc__ and ShapesDataset.__doc__
