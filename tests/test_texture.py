"""vizlib.texture (lecture 12): Efros–Leung nearest-neighbour synthesis in scan-line order.

Every output pixel is checked against a float64 brute-force search over the sample, and on a
periodic texture the method must reproduce the period exactly."""
import pytest
import torch

from vizlib.texture import causal_offsets, nearest_neighbor_texture


def test_causal_offsets_are_the_pixels_before_in_scanline_order():
    offs = causal_offsets(5)
    assert len(offs) == 5 * 2 + 2
    assert offs[0] == (-2, -2) and offs[-1] == (0, -1)
    assert all(dr < 0 or (dr == 0 and dc < 0) for dr, dc in offs)
    with pytest.raises(ValueError, match="odd"):
        causal_offsets(4)


def _brute_force_distances(sample, out, i, j, window, sigma):
    """Weighted SSD, in float64, between the known causal neighbourhood of out[i, j] and the
    same neighbourhood at every valid sample position. Returns {(r, c): distance}."""
    half = window // 2
    _, _, h, w = sample.shape
    H, W = out.shape[-2:]
    s, o = sample[0].double(), out[0].double()
    d = {}
    for r in range(half, h - half):
        for c in range(half, w - half):
            total = 0.0
            for dr, dc in causal_offsets(window):
                ii, jj = i + dr, j + dc
                if 0 <= ii < H and 0 <= jj < W and (ii < i or (ii == i and jj < j)):
                    g = torch.exp(torch.tensor(-(dr * dr + dc * dc) / (2 * sigma ** 2), dtype=torch.float64))
                    total += float(g * ((s[:, r + dr, c + dc] - o[:, ii, jj]) ** 2).sum())
            d[(r, c)] = total
    return d


def test_every_pixel_copies_a_best_match_found_by_brute_force():
    gen = torch.Generator().manual_seed(1)
    sample = torch.rand(1, 3, 11, 12, generator=gen)
    window, sigma = 5, 5 / 6.4
    res = nearest_neighbor_texture(sample, (6, 7), window=window, epsilon=0.0, seed=3)
    assert res.image.shape == (1, 3, 6, 7) and res.source.shape == (6, 7, 2)
    for i in range(6):
        for j in range(7):
            r, c = res.source[i, j].tolist()
            assert torch.equal(res.image[0, :, i, j], sample[0, :, r, c])   # a copy of a sample pixel
            if i == 0 and j == 0:
                continue
            d = _brute_force_distances(sample, res.image, i, j, window, sigma)
            assert d[(r, c)] == pytest.approx(min(d.values()), rel=1e-5, abs=1e-9)


def test_a_periodic_texture_is_continued_exactly():
    # vertical stripes with period 3: [1, 0, 0, 1, 0, 0, ...], in every row
    cols = (torch.arange(24) % 3 == 0).float()
    sample = cols.expand(1, 3, 20, 24).clone()
    res = nearest_neighbor_texture(sample, (16, 30), window=5, epsilon=0.0, seed=0)
    img = res.image[0, 0]
    assert torch.equal(img, img[:1].expand_as(img))          # every column is constant
    row = img[0]
    assert torch.equal(row[3:], row[:-3])                    # period 3
    assert row[:3].sum() == 1                                # one bright stripe per period


def test_seed_reproduces_and_changes_the_texture_and_input_is_untouched():
    sample = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before = sample.clone()
    a = nearest_neighbor_texture(sample, 10, window=5, seed=0)
    b = nearest_neighbor_texture(sample, 10, window=5, seed=0)
    c = nearest_neighbor_texture(sample, 10, window=5, seed=1)
    assert torch.equal(a.image, b.image) and not torch.equal(a.image, c.image)
    assert a.image.dtype == torch.float64 and a.image.shape == (1, 1, 10, 10)
    assert torch.equal(sample, before)


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 3, 16, 16), r"sample must have shape \(1, C, h, w\), got \(2, 3, 16, 16\) — the sample is one image"),
    (torch.rand(3, 16), r"got \(3, 16\) — the sample is one image, \(1, C, h, w\) or \(C, h, w\)"),
    (torch.rand(1, 3, 5, 16), "larger than the window"),
    (torch.zeros(1, 3, 16, 16, dtype=torch.uint8), "sample must be floating point, got dtype torch.uint8 .*float in"),
    ([[0.5] * 16] * 16, r"sample must be a tensor \(1, C, h, w\), got list .*or \(C, h, w\)"),
])
def test_bad_samples_are_refused_clearly(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        nearest_neighbor_texture(bad, 8, window=5)
