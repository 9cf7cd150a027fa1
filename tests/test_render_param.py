"""vizlib.render.param: PixelImage in decorrelated colour, as FourierImage."""
import pytest
import torch

from vizlib import render as R


def _colour_cov(x):
    flat = (x.detach().double() - 0.5).permute(1, 0, 2, 3).reshape(3, -1)
    return torch.cov(flat)


def test_decorrelated_noise_has_natural_colour_statistics():
    noise = 0.05
    plain = R.PixelImage(shape=(1, 3, 256, 256), seed=0, noise=noise)()
    mixed = R.PixelImage(shape=(1, 3, 256, 256), seed=0, noise=noise, decorrelate=True)()
    s = R.COLOR_CORRELATION_SQRT.double()
    torch.testing.assert_close(_colour_cov(plain), noise ** 2 * torch.eye(3, dtype=torch.float64),
                               atol=4e-5, rtol=0)
    torch.testing.assert_close(_colour_cov(mixed), noise ** 2 * s @ s.T, atol=4e-5, rtol=0)
    assert float(_colour_cov(mixed)[0, 1]) > 0.5 * noise ** 2  # red and green move together


def test_decorrelated_image_round_trips_its_init_and_passes_gradients():
    init = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(0))
    p = R.PixelImage(init, decorrelate=True)
    torch.testing.assert_close(p(), init, atol=1e-5, rtol=0)
    assert p.tensors == [p.pixels] and p.pixels.requires_grad and not init.requires_grad
    (g,) = torch.autograd.grad(p()[:, 0].sum(), p.pixels)  # red = 0.5 + S[0] . z
    torch.testing.assert_close(g, R.COLOR_CORRELATION_SQRT[0].view(1, 3, 1, 1).expand_as(g))


def test_decorrelated_projection_keeps_the_image_in_range():
    p = R.PixelImage(shape=(1, 3, 8, 8), seed=1, decorrelate=True)
    with torch.no_grad():
        p.pixels.add_(torch.randn(p.pixels.shape, generator=torch.Generator().manual_seed(2)))
    p.project()
    x = p().detach()
    assert float(x.min()) >= -1e-6 and float(x.max()) <= 1 + 1e-6


def test_render_with_a_decorrelated_pixel_image(tiny_net):
    p = R.PixelImage(shape=(8, 8), seed=0, decorrelate=True)
    out = R.render(tiny_net, R.class_score(0), p, steps=4, lr=0.05, precision="float32")
    assert out.history["objective"][-1] > out.history["objective"][0]
    assert float(out.image.min()) >= -1e-6 and float(out.image.max()) <= 1 + 1e-6
    with pytest.raises(ValueError, match="decorrelated PixelImage"):
        R.render(tiny_net, R.class_score(0), R.PixelImage(shape=(8, 8), decorrelate=True), steps=1,
                 lr=0.1, regularizers=[R.BlurEvery()])
