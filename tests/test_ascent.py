"""vizlib.ascent: class models, filters, fooling images, DeepDream, feature inversion — behaviour
measured on the offline model, and no side effects; vizlib.metrics: SSIM, MSE and PSNR."""
import pytest
import torch

from vizlib import ascent as A
from vizlib import metrics as M
from vizlib import render as R
from vizlib.hooks import hook_count


@pytest.fixture(scope="module")
def shapes_batch():
    from vizlib.shapes import make_batch

    return make_batch(8, size=64, seed=3, classes=list(range(8)))


def test_class_visualization_makes_images_the_model_calls_that_class(shapesnet):
    out = A.class_visualization(shapesnet, [0, 5], steps=25, lr=0.05, seed=0)
    assert out.image.shape == (2, 3, 64, 64)
    with torch.no_grad():
        pred = shapesnet(out.image).argmax(1).tolist()
    assert pred == [0, 5]
    assert out.history["objective"][-1] > out.history["objective"][0] + 10
    assert set(out.history) == {"objective", "l2", "loss"}  # the default penalty; blur/clips act between steps


def test_fourier_class_visualization_drops_only_the_default_pixel_operations(shapesnet):
    out = A.class_visualization(shapesnet, 1, size=32, steps=2, param="fourier", seed=0)  # defaults: fine
    assert out.image.shape == (1, 3, 32, 32)
    with pytest.raises(ValueError, match="PixelImage"):  # the caller's own between-step op is not dropped
        A.class_visualization(shapesnet, 1, size=32, steps=2, param="fourier", regularizers=[R.BlurEvery(2)])


def test_filter_visualization_raises_each_channel(shapesnet):
    out = A.filter_visualization(shapesnet, "relu2", [0, 2, 4], steps=12, size=32, seed=0)
    acts = R.layer_outputs(shapesnet, out.image, "relu2")["relu2"]
    start = R.layer_outputs(shapesnet, torch.full((1, 3, 32, 32), 0.5), "relu2")["relu2"]
    for b, c in enumerate([0, 2, 4]):
        assert float(acts[b, c].mean()) > 1.5 * float(start[0, c].mean()) + 0.05
        # image b is tuned to its own channel more than the others' images are
        others = [float(acts[o, c].mean()) for o in range(3) if o != b]
        assert float(acts[b, c].mean()) > max(others)


def test_fooling_image_is_classified_as_the_target_with_a_small_change(shapesnet, shapes_batch):
    x = shapes_batch["images"][0:1]  # a triangle, classified correctly
    before = x.clone()
    with torch.no_grad():
        assert int(shapesnet(x).argmax()) == int(shapes_batch["labels"][0])
    out = A.fooling_image(shapesnet, x, target=3)
    assert torch.equal(x, before)
    with torch.no_grad():
        assert int(shapesnet(out.image).argmax()) == 3
    assert out.fooled and 0 < out.steps <= 40
    delta = (out.image - x) * 255
    assert out.linf == pytest.approx(float(delta.abs().max()), rel=1e-5)
    assert out.l2 == pytest.approx(float(delta.norm()), rel=1e-5)
    assert out.linf <= 12 and out.rms <= 6  # grey levels out of 255
    assert out.linf <= out.steps * 0.5 * 1.05 + 0.5  # Adam moves a value about lr per step


def test_fooling_image_already_the_target_takes_no_step(shapesnet, shapes_batch):
    x = shapes_batch["images"][0:1]
    out = A.fooling_image(shapesnet, x, target=int(shapes_batch["labels"][0]))
    assert out.steps == 0 and out.fooled and out.linf == 0.0


def test_deepdream_amplifies_the_layer_and_keeps_the_input(shapesnet):
    from vizlib.samples import sample_image

    img = sample_image("chelsea", size=48)
    keep = img.clone()
    out = A.deepdream(shapesnet, img, "relu3", octaves=2, steps=4, lr=0.01, seed=0)
    assert out.shape == img.shape and torch.equal(img, keep)
    energy = lambda x: float(R.layer_energy("relu3")(R.layer_outputs(shapesnet, x, "relu3")))
    assert energy(out) > 1.5 * energy(img)
    assert hook_count(shapesnet) == 0


def _gaussian_ssim(a, b, sigma=1.5):
    """A float64 reference written out from Wang et al. 2004 (Gaussian window, sample
    covariances, positions where the 11-tap window fits): ``(C, H, W)`` twice -> a float."""
    r = int(3.5 * sigma + 0.5)
    t = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-t ** 2 / (2 * sigma ** 2))
    k = (g[:, None] * g[None, :]) / (g.sum() ** 2)
    filt = lambda x: torch.nn.functional.conv2d(x[:, None], k[None, None])[:, 0]  # noqa: E731
    n = (2 * r + 1) ** 2
    mu_a, mu_b = filt(a), filt(b)
    var_a = n / (n - 1) * (filt(a * a) - mu_a ** 2)
    var_b = n / (n - 1) * (filt(b * b) - mu_b ** 2)
    cov = n / (n - 1) * (filt(a * b) - mu_a * mu_b)
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    s = (2 * mu_a * mu_b + c1) * (2 * cov + c2) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 24, 20, generator=g, dtype=torch.float64)
    b = (a + 0.1 * torch.randn(2, 3, 24, 20, generator=g, dtype=torch.float64)).clamp(0, 1)
    ours = M.ssim(a, b)
    assert ours.shape == (2,) and ours.dtype == torch.float64
    for i in range(2):
        ref = structural_similarity(a[i].numpy(), b[i].numpy(), channel_axis=0, data_range=1.0,
                                    gaussian_weights=True, sigma=1.5, use_sample_covariance=True)
        assert float(ours[i]) == pytest.approx(ref, abs=1e-10)
        assert float(ours[i]) == pytest.approx(_gaussian_ssim(a[i], b[i]), abs=1e-10)
    assert M.ssim(a, a).tolist() == pytest.approx([1.0, 1.0])
    assert float(M.ssim(a, 1 - a)[0]) < 0  # an inverted image is anti-correlated
    low = M.ssim(a.float(), b.float())
    assert low.dtype == torch.float32 and torch.allclose(low.double(), ours, atol=1e-6)
    with pytest.raises(ValueError, match=r"ssim: b must have shape \(B, C, H, W\) = \(2, 3, 24, 20\)"):
        M.ssim(a, b[:, :, :20])
    with pytest.raises(ValueError, match="window 11 does not fit sigma 2.0.* is 15 pixels wide"):
        M.ssim(a, b, sigma=2.0)


def test_reconstruction_error_known_values():
    a = torch.zeros(1, 3, 16, 16)
    b = torch.full((1, 3, 16, 16), 0.1)
    err = M.reconstruction_error(b, a)
    assert err["mse"] == pytest.approx(0.01) and err["psnr"] == pytest.approx(20.0)
    assert err["ssim"] == pytest.approx(M.ssim(b.double(), a.double()).item())
    same = M.reconstruction_error(a, a)
    assert same == {"mse": 0.0, "psnr": float("inf"), "ssim": pytest.approx(1.0)}


def test_inversion_loses_detail_with_depth(shapesnet, shapes_batch):
    """The seed's claim, measured: the deeper the layer, the worse the reconstruction."""
    x = shapes_batch["images"][0:1]
    _, rows = A.inversion_by_layer(shapesnet, x, ["relu1", "relu2", "relu4"], steps=40, lr=0.05)
    mse = [r["mse"] for r in rows]
    ssim = [r["ssim"] for r in rows]
    assert mse[0] < mse[1] < mse[2]
    assert ssim[0] > ssim[1] > ssim[2]
    assert ssim[0] > 0.6  # the first layer keeps most of it (40 steps)


def test_tv_smooths_the_inversion(shapesnet, shapes_batch):
    x = shapes_batch["images"][0:1]
    plain = A.invert_features(shapesnet, x, "relu3", steps=30, lr=0.05)
    tv = A.invert_features(shapesnet, x, "relu3", steps=30, lr=0.05, tv_weight=1.0)
    assert float(R.total_variation(tv.image)) < 0.7 * float(R.total_variation(plain.image))
    assert "tv" in tv.history and "tv" not in plain.history
