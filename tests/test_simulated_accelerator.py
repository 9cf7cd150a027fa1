"""The simulated accelerator (tests/simulated_accelerator.py) behaves like CUDA where it matters:
the notebooks' device check is only as good as it is."""
import copy
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import simulated_accelerator as S

HERE = Path(__file__).resolve().parent


def _raises(fn, kind, text):
    with pytest.raises(kind, match=text):
        fn()


def test_simulated_accelerator_fails_like_cuda():
    with S.active():
        net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).to("cpu:0")
        assert all(S.on_accelerator(p) for p in net.parameters())
        assert next(net.parameters()).device == torch.device("cpu", 0)
        x = torch.rand(1, 3, 8, 9)
        _raises(lambda: net(x), RuntimeError, "same device")                 # the lectures' old bug
        y = net(x.to(next(net.parameters()).device))
        assert S.on_accelerator(y) and not S.on_accelerator(x)               # a move copies
        _raises(lambda: y.detach().numpy(), TypeError, "numpy")
        _raises(lambda: np.asarray(y.detach()), TypeError, "numpy")
        _raises(lambda: torch.cat([y.flatten(), x.flatten()]), RuntimeError, "same device")
        z = y.detach().cpu()
        z.numpy()
        assert not S.on_accelerator(z)
        assert S.on_accelerator(y * torch.tensor(2.0))                       # CPU scalars are fine
        assert S.on_accelerator(torch.zeros(3, device="cpu:0")) and not S.on_accelerator(torch.zeros(3))
        assert S.on_accelerator(torch.zeros_like(y)) and S.on_accelerator(y[0, :, 1:])
        y[0, 0, torch.tensor([0, 1])]                                        # CPU indices are fine
        y.sum().item()
        w = x.to("cpu:0").requires_grad_(True)
        (g,) = torch.autograd.grad(net(w).sum(), [w])
        assert S.on_accelerator(g)
        net(w).sum().backward()
        assert S.on_accelerator(w.grad)
        torch.optim.Adam([w], lr=0.1).step()                                  # optimiser state follows
        twin = copy.deepcopy(net)                                             # a copy stays where it is
        assert all(S.on_accelerator(p) for p in twin.parameters())
        twin(x.to("cpu:0"))
        net.cpu()
        assert not any(S.on_accelerator(p) for p in net.parameters())
        net(x)
    net.to("cpu:0")                                                           # off: nothing patched
    net(x)


def test_the_notebooks_run_on_it():
    """make test runs every lecture and solution in the kernel that turns it on."""
    makefile = (HERE.parent / "Makefile").read_text()
    assert "--nbval-kernel-name vizlib-accelerator" in makefile
    spec = (HERE / "kernels" / "vizlib-accelerator" / "kernel.json").read_text()
    assert "simulated_accelerator.install()" in spec and '"VIZLIB_DEVICE": "cpu:0"' in spec


def test_results_come_back_to_the_images_device():
    """Found by the notebooks on the simulated accelerator: a texture, a stylised photo and the
    receptive-field copy stayed on (or mixed with) the model's device."""
    from vizlib import images, metrics, models, receptive, samples, style

    with S.active():
        model = models.load_model("shapesnet", device="cpu:0")
        photo = samples.sample_image("chelsea", 32)
        texture = style.gram_texture(model, photo, 24, steps=2).image
        assert not S.on_accelerator(texture)
        metrics.texture_distance(images.center_crop(texture, 24), images.center_crop(photo, 24))
        stylised = style.style_transfer(model, photo, photo, steps=2).image
        assert not S.on_accelerator(stylised) and stylised.shape == photo.shape
        h, w, _, _ = receptive.empirical_receptive_field(model, "conv2", 48)
        assert h == w > 1
