"""vizlib.neighbors (lecture 03): exact neighbours, faithful features, a safe cache, and the
lecture's claim — feature space groups classes, pixel space does not — measured."""
import copy
import warnings

import pytest
import torch

from vizlib import neighbors as nb
from vizlib import shapes
from vizlib.config import VizlibWarning
from vizlib.hooks import hook_count
from vizlib.models import load_model


@pytest.fixture(scope="module")
def small_batch():
    return shapes.make_batch(24, seed=3)


def _brute(q, db, k, metric, exclude=None):
    q, db = q.double(), db.double()
    if metric == "euclidean":
        d = ((q[:, None, :] - db[None, :, :]) ** 2).sum(-1).sqrt()
    else:
        d = 1 - (q / q.norm(dim=1, keepdim=True)) @ (db / db.norm(dim=1, keepdim=True)).T
    if exclude is not None:
        d[torch.arange(len(q)), exclude] = float("inf")
    top = d.topk(k, dim=1, largest=False)
    return top.indices, top.values


# ----------------------------------------------------------------------- nearest_neighbors

@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_nearest_neighbors_match_float64_brute_force(metric):
    g = torch.Generator().manual_seed(0)
    db = torch.randn(300, 17, generator=g)
    q = torch.randn(45, 17, generator=g)
    idx, dist = nb.nearest_neighbors(q, db, k=7, metric=metric, chunk_size=16)
    ref_i, ref_d = _brute(q, db, 7, metric)
    assert idx.dtype == torch.int64 and idx.shape == (45, 7) and dist.shape == (45, 7)
    assert torch.equal(idx, ref_i)
    torch.testing.assert_close(dist.double(), ref_d, atol=1e-5, rtol=1e-5)

    # querying the database with itself, excluding each query's own row
    ex = torch.arange(0, 300, 7)
    idx, dist = nb.nearest_neighbors(db[ex], db, k=5, metric=metric, exclude=ex)
    ref_i, ref_d = _brute(db[ex], db, 5, metric, exclude=ex)
    assert torch.equal(idx, ref_i)
    assert not (idx == ex[:, None]).any()
    torch.testing.assert_close(dist.double(), ref_d, atol=1e-5, rtol=1e-5)


def test_nearest_neighbors_known_answer():
    db = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [5.0, 5.0]])
    q = torch.tensor([[0.9, 0.1], [4.0, 4.0]])
    idx, dist = nb.nearest_neighbors(q, db, k=2)
    assert idx.tolist() == [[1, 0], [3, 2]]
    torch.testing.assert_close(dist, torch.tensor([[0.02 ** 0.5, 0.82 ** 0.5], [2 ** 0.5, 20 ** 0.5]]))
    # cosine ignores length: (4, 4) points exactly like (5, 5)
    idx, dist = nb.nearest_neighbors(q[1:], db[1:], k=1, metric="cosine")
    assert idx.tolist() == [[2]] and dist.abs().max() < 1e-6
    # exclude the query's own row (and -1 excludes nothing)
    idx, _ = nb.nearest_neighbors(db[:2], db, k=1, exclude=torch.tensor([0, -1]))
    assert idx.tolist() == [[1], [1]]
    with pytest.raises(ValueError):
        nb.nearest_neighbors(q, db, k=5)


def test_neighbor_class_agreement_exact():
    idx = torch.tensor([[0, 1], [2, 3]])
    assert nb.neighbor_class_agreement(idx, torch.tensor([0, 1]), torch.tensor([0, 1, 1, 1])) == 0.75


# ----------------------------------------------------------------------- extract_features

def test_extract_features_equal_a_manual_hooked_forward(shapesnet, small_batch):
    images = small_batch["images"]
    before = copy.deepcopy(shapesnet.state_dict())
    images_before = images.clone()

    feats = nb.extract_features(shapesnet, images, batch_size=5, progress=False)
    assert feats.shape == (24, 128) and feats.dtype == torch.float32 and feats.device.type == "cpu"

    seen = {}
    handle = shapesnet.net.fc.register_forward_pre_hook(lambda m, inp: seen.setdefault("x", inp[0].clone()))
    try:
        with torch.no_grad():
            shapesnet(images)
    finally:
        handle.remove()
    torch.testing.assert_close(feats, seen["x"], atol=1e-5, rtol=1e-5)

    # batch size does not change the result; an iterable of batches works too
    torch.testing.assert_close(nb.extract_features(shapesnet, images, batch_size=64, progress=False),
                               feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(
        nb.extract_features(shapesnet, [(images[:10], None), (images[10:], None)], progress=False),
        feats, atol=1e-5, rtol=1e-5)

    # a named layer's output, flattened
    relu4 = nb.extract_features(shapesnet, images[:4], layer="relu4", progress=False)
    with torch.no_grad():
        maps = shapesnet.net.features(shapesnet.normalize(images[:4]))
    torch.testing.assert_close(relu4, maps.flatten(1), atol=1e-5, rtol=1e-5)

    # nothing left behind, nothing changed
    assert hook_count(shapesnet) == 0
    assert not shapesnet.training
    assert torch.equal(images, images_before)
    for k, v in shapesnet.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_extract_features_refuses_train_mode_and_leaves_it(small_batch):
    m = load_model("shapesnet", device="cpu").train()
    with pytest.raises(ValueError, match="extract_features needs the model in eval mode.*training mode.*model.eval"):
        nb.extract_features(m, small_batch["images"][:2], progress=False)
    assert all(mod.training for mod in m.modules())


def test_feature_cache_loads_from_disk_and_survives_garbage(shapesnet, small_batch, tmp_path, monkeypatch):
    images = small_batch["images"][:8]
    first = nb.extract_features(shapesnet, images, progress=False, cache_dir=tmp_path)
    files = list(tmp_path.glob("*.safetensors"))
    assert len(files) == 1

    calls = []
    real_forward = type(shapesnet).forward

    def counting_forward(self, x):
        calls.append(len(x))
        return real_forward(self, x)

    monkeypatch.setattr(type(shapesnet), "forward", counting_forward)
    second = nb.extract_features(shapesnet, images, progress=False, cache_dir=tmp_path)
    assert calls == [] and torch.equal(first, second)

    # other images or another layer -> another key
    nb.extract_features(shapesnet, images[:4], progress=False, cache_dir=tmp_path)
    nb.extract_features(shapesnet, images, layer="avgpool", progress=False, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.safetensors"))) == 3

    # a garbage file (here: a pickle) is never unpickled, just recomputed and rewritten
    import pickle
    files[0].write_bytes(pickle.dumps({"features": "boom"}))
    calls.clear()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        third = nb.extract_features(shapesnet, images, progress=False, cache_dir=tmp_path)
    assert calls == [8]
    assert any("feature cache" in str(w.message) and w.category is VizlibWarning for w in caught)
    torch.testing.assert_close(third, first)
    calls.clear()
    assert torch.equal(nb.extract_features(shapesnet, images, progress=False, cache_dir=tmp_path), third)
    assert calls == []


def test_default_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VIZLIB_CACHE", str(tmp_path))
    assert nb.default_cache_dir() == tmp_path
    monkeypatch.delenv("VIZLIB_CACHE")
    assert nb.default_cache_dir().parts[-3:] == (".cache", "vizlib", "features")


# ----------------------------------------------------------------------- the lecture's claims

def test_feature_space_groups_classes_pixel_space_does_not(shapesnet):
    db = shapes.make_batch(1000, seed=1)
    q = shapes.make_batch(200, seed=2)
    fd = nb.extract_features(shapesnet, db["images"], progress=False)
    fq = nb.extract_features(shapesnet, q["images"], progress=False)
    idx_f, _ = nb.nearest_neighbors(fq, fd, k=5)
    idx_p, _ = nb.nearest_neighbors(nb.pixel_features(q["images"]), nb.pixel_features(db["images"]), k=5)
    feat = nb.neighbor_class_agreement(idx_f, q["labels"], db["labels"])
    pix = nb.neighbor_class_agreement(idx_p, q["labels"], db["labels"])
    print(f"top-5 class agreement: features {feat:.3f}, pixels {pix:.3f}")
    assert feat >= 0.85          # measured 0.924
    assert pix <= 0.3            # measured 0.133 (chance 0.125)
    assert feat - pix >= 0.6


def test_moved_object_is_far_in_pixels_near_in_features(shapesnet):
    """Roll the frame 16 px right (the object stays wholly inside): in pixels the copy is
    farther from its original than from the pixel-nearest image of another class; in
    features it is nearer to its original than to that same image."""
    b = shapes.make_batch(40, seed=7)
    pool = shapes.make_batch(400, seed=8)
    pool_pix = nb.pixel_features(pool["images"])
    pool_feat = nb.extract_features(shapesnet, pool["images"], progress=False)
    held, cases = 0, 0
    for i in range(len(b["images"])):
        if b["boxes"][i, 2] + 16 > 63:
            continue
        cases += 1
        pair = torch.stack([b["images"][i], torch.roll(b["images"][i], 16, dims=2)])
        pix, feat = nb.pixel_features(pair), nb.extract_features(shapesnet, pair, progress=False)
        other = pool["labels"] != b["labels"][i]
        j = (pool_pix[other] - pix[1]).norm(dim=1).argmin()
        pix_self, pix_other = (pix[0] - pix[1]).norm(), (pool_pix[other][j] - pix[1]).norm()
        feat_self, feat_other = (feat[0] - feat[1]).norm(), (pool_feat[other][j] - feat[1]).norm()
        held += bool(pix_self > pix_other and feat_self < feat_other)
    print(f"moved object: claim holds in {held}/{cases} cases")
    assert cases >= 15 and held / cases >= 0.75   # measured 18/21


# ----------------------------------------------------------------------- drawing

def test_embed_2d_shape_and_determinism():
    x = torch.randn(60, 20, generator=torch.Generator().manual_seed(1))
    for method in ("pca", "tsne"):
        a = nb.embed_2d(x, method=method, seed=3, perplexity=10)
        b = nb.embed_2d(x, method=method, seed=3, perplexity=10)
        assert a.shape == (60, 2) and a.dtype == torch.float32 and torch.isfinite(a).all()
        assert torch.equal(a, b)
    # PCA of points on a line keeps the order along that line
    t = torch.linspace(0, 1, 10)[:, None]
    line = nb.embed_2d(torch.cat([t, 2 * t, -t], dim=1))[:, 0]
    assert (line.diff() > 0).all() or (line.diff() < 0).all()
    with pytest.raises(ValueError):
        nb.embed_2d(x, method="umap")


def test_grid_assignment_permutation_and_order():
    r, c = torch.meshgrid(torch.arange(3.0), torch.arange(4.0), indexing="ij")
    grid = torch.stack([c.reshape(-1), r.reshape(-1)], dim=1) * 10 + 5   # (x, y), shifted/scaled
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(0))
    cells = nb.grid_assignment(grid[perm], rows=3, cols=4)
    assert torch.equal(cells, perm)   # every point lands on its own cell

    pts = torch.randn(20, 2, generator=torch.Generator().manual_seed(2))
    cells = nb.grid_assignment(pts, rows=5, cols=5)
    assert cells.dtype == torch.int64 and cells.shape == (20,)
    assert cells.unique().numel() == 20 and cells.min() >= 0 and cells.max() < 25
    # the leftmost point lands in column 0, the rightmost in the last column
    assert cells[pts[:, 0].argmin()] % 5 == 0 and cells[pts[:, 0].argmax()] % 5 == 4
    with pytest.raises(ValueError):
        nb.grid_assignment(pts, rows=4, cols=4)


def test_grid_image_tiles_and_leaves_empty_cells_white():
    imgs = torch.zeros(2, 3, 4, 5)
    imgs[1] = 0.5
    out = nb.grid_image(imgs, torch.tensor([3, 0]), rows=2, cols=2, pad=1)
    assert out.shape == (3, 2 * 5 + 1, 2 * 6 + 1)
    assert torch.equal(out[:, 1:5, 1:6], torch.full((3, 4, 5), 0.5))   # cell 0: image 1
    assert torch.equal(out[:, 6:10, 7:12], torch.zeros(3, 4, 5))       # cell 3: image 0
    assert torch.equal(out[:, 1:5, 7:12], torch.ones(3, 4, 5))         # cell 1: empty
    assert out[:, 0].eq(1).all() and out[:, :, 6].eq(1).all()          # padding
    with pytest.raises(ValueError):
        nb.grid_image(imgs, torch.tensor([1, 1]), rows=2, cols=2)


def test_shifted_photos_find_their_original_in_feature_space_not_in_pixels(shapesnet):
    """Lecture 03's photo experiment, asserted on the offline model: a crop of a bundled photo
    shifted by 16 px retrieves its own photo in feature space far more often than in pixels."""
    from vizlib import images, samples

    photos = images.stack_images([samples.sample_image(n) for n in samples.list_sample_images()], size=160)
    central, shifted = photos[:, :, 16:144, 16:144], photos[:, :, 32:160, 0:128]
    truth = torch.arange(len(photos))
    by_pixels = nb.nearest_neighbors(nb.pixel_features(shifted),
                                            nb.pixel_features(central), k=1)[0][:, 0]
    by_features = nb.nearest_neighbors(
        nb.extract_features(shapesnet, shifted, progress=False),
        nb.extract_features(shapesnet, central, progress=False), k=1)[0][:, 0]
    pixel_hits = float((by_pixels == truth).float().mean())
    feature_hits = float((by_features == truth).float().mean())
    assert feature_hits >= 0.9 and feature_hits - pixel_hits >= 0.3, (feature_hits, pixel_hits)


@pytest.mark.parametrize("chunk_size", [0, -1, 2.5])
def test_nearest_neighbors_refuses_a_chunk_size_that_is_no_positive_int(chunk_size):
    with pytest.raises(ValueError, match=f"chunk_size must be a positive integer, got {chunk_size!r}"):
        nb.nearest_neighbors(torch.rand(3, 4), torch.rand(5, 4), k=2, chunk_size=chunk_size)
