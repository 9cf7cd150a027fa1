"""vizlib.fast_style (lecture 14): the transformer network, one training step, training with
checkpoints that resume exactly, safe checkpoint loading, and inference at any size."""
import io
import os

import pytest
import torch

from vizlib import fast_style as fs
from vizlib import style_losses as st
from vizlib.hooks import hook_count
from vizlib.render import layer_outputs


@pytest.fixture(scope="module")
def targets(shapesnet):
    g = torch.Generator().manual_seed(0)
    stripes = (torch.arange(40) % 8 < 4).float().expand(1, 3, 40, 40).clone()
    stripes[:, 0] *= 0.9
    noisy = (0.9 * stripes + 0.1 * torch.rand(1, 3, 40, 40, generator=g)).clamp(0, 1)
    return st.style_targets(shapesnet, None, noisy)


def _batch(n=4, size=24, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_paper_network_size_and_any_input_size():
    net = fs.TransformerNet()
    assert sum(p.numel() for p in net.parameters()) == 1_679_235      # Johnson et al.: ~1.7 M
    assert sum(isinstance(m, torch.nn.InstanceNorm2d) for m in net.modules()) == 15
    small = fs.TransformerNet(4, 1)
    for h, w in [(17, 30), (32, 32), (9, 5)]:
        y = fs.stylize(small, torch.rand(1, 3, h, w))
        assert y.shape == (1, 3, h, w) and 0 <= float(y.min()) and float(y.max()) <= 1


def test_instance_norm_makes_each_image_independent_of_its_batch():
    net = fs.TransformerNet(4, 1)
    x = _batch(3)
    together = fs.stylize(net, x, batch_size=3)
    alone = torch.cat([fs.stylize(net, x[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)
    assert net.training  # stylize left the mode as it was


def test_perceptual_loss_is_the_sum_of_its_parts(shapesnet, targets):
    x = _batch(2)
    y = torch.rand(2, 3, 24, 24)
    parts = fs.perceptual_loss(shapesnet, y, x, targets, content_weight=2.0, style_weight=3.0, tv_weight=5.0)
    acts = layer_outputs(shapesnet, y, ["relu1", "relu2", "relu3", "relu4"])
    ref = layer_outputs(shapesnet, x, ["relu3"])["relu3"]
    c = st.content_loss(acts["relu3"], ref) / ref.pow(2).flatten(1).mean(1)
    s = sum(targets["layer_weights"][n] * st.style_loss(acts[n], targets["grams"][n]) for n in targets["style_layers"])
    torch.testing.assert_close(parts["content"], c)
    torch.testing.assert_close(parts["style"], s)
    torch.testing.assert_close(parts["tv"], st.tv_loss(y))
    torch.testing.assert_close(parts["total"], 2 * c + 3 * s + 5 * st.tv_loss(y))


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_train_step_lowers_the_loss_and_touches_only_the_transformer(shapesnet, targets, precision):
    torch.manual_seed(0)
    net = fs.TransformerNet(4, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    x = _batch(2)
    before = {k: v.clone() for k, v in shapesnet.state_dict().items()}
    first = fs.perceptual_loss(shapesnet, net(x), x, targets)["total"].mean().item()  # float32
    losses = [fs.train_step(net, opt, shapesnet, x, targets, precision=precision)["total"] for _ in range(12)]
    assert losses[0] == pytest.approx(first, rel=0 if precision == "float32" else 0.02)  # stated: 2 %
    assert losses[-1] < 0.7 * losses[0], losses
    # mixed precision keeps the weights, their gradients and Adam's state in float32
    assert all(p.dtype == torch.float32 and p.grad.dtype == torch.float32 for p in net.parameters())
    assert all(v.dtype == torch.float32 for st_ in opt.state.values() for v in st_.values() if v.ndim)
    assert all(torch.equal(v, before[k]) for k, v in shapesnet.state_dict().items())
    assert all(p.grad is None for p in shapesnet.parameters()) and hook_count(shapesnet) == 0
    assert all(p.grad is not None for p in net.parameters())


def test_training_resumes_exactly_where_it_stopped(tmp_path, shapesnet):
    style = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    images = _batch(6, 16, seed=1)
    kw = dict(model=shapesnet, batch_size=2, width=4, residual_blocks=1, progress=False,
              sample_every=0, checkpoint_every=2, device="cpu", seed=3)
    straight, hist = fs.train(style, images, tmp_path / "a", steps=5, **kw)
    fs.train(style, images, tmp_path / "b", steps=2, **kw)
    assert (tmp_path / "b" / "checkpoint.safetensors").is_file()
    resumed, hist_b = fs.train(style, images, tmp_path / "b", steps=5, **kw)
    assert len(hist) == 5 and len(hist_b) == 3
    assert hist_b[-1]["total"] == pytest.approx(hist[-1]["total"], rel=1e-5)
    for p, q in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
    net, info = fs.load_checkpoint(tmp_path / "b" / "checkpoint.safetensors")
    assert info["meta"]["step"] == 5 and info["meta"]["loss_model"] == "shapesnet"
    x = _batch(1, 20)
    torch.testing.assert_close(fs.stylize(net, x), fs.stylize(resumed, x))


def test_folder_training_writes_samples(tmp_path, shapesnet):
    from vizlib.images import save_image

    folder = tmp_path / "imgs" / "nested"
    folder.mkdir(parents=True)
    for i in range(3):
        save_image(_batch(1, 20 + i, seed=i), folder / f"im{i}.png")
    (folder / "notes.txt").write_text("not an image")
    net, hist = fs.train(torch.rand(1, 3, 24, 24), tmp_path / "imgs", tmp_path / "out", model=shapesnet,
                         steps=2, batch_size=1, image_size=16, width=4, residual_blocks=0,
                         sample_every=1, checkpoint_every=0, progress=False, device="cpu")
    assert sorted(p.name for p in (tmp_path / "out" / "samples").iterdir()) == ["step_000001.png", "step_000002.png"]
    assert len(fs.ImageFolder(tmp_path / "imgs", 16)) == 3
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no images"):
        fs.ImageFolder(empty, 16)
    with pytest.raises(FileNotFoundError, match="not found"):
        fs.ImageFolder(tmp_path / "missing", 16)


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


def test_checkpoints_with_pickled_code_or_garbage_are_refused(tmp_path):
    _Evil.marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"model.weight": torch.zeros(1), "x": _Evil()}, evil)
    with pytest.raises(fs.CheckpointError, match="never executed"):
        fs.load_checkpoint(evil)
    assert not _Evil.marker.exists()
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00\x01not a checkpoint")
    with pytest.raises(fs.CheckpointError, match="refusing"):
        fs.load_checkpoint(junk)
    with pytest.raises(fs.CheckpointError, match="not found"):
        fs.load_checkpoint(tmp_path / "nope.safetensors")
    good = fs.save_checkpoint(tmp_path / "ok.safetensors", fs.TransformerNet(4, 1))
    data = good.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(fs.CheckpointError):
        fs.load_checkpoint(cut)
    from safetensors.torch import save_file
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(fs.CheckpointError, match="not a vizlib fast-style checkpoint"):
        fs.load_checkpoint(other)


def test_the_optimiser_state_round_trips_and_pickled_code_in_it_is_refused(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    net = fs.TransformerNet(4, 1)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2, betas=(0.8, 0.95))
    net(_batch(1, 12)).sum().backward()
    opt.step()
    path = fs.save_checkpoint(tmp_path / "ck.safetensors", net, opt, {"step": 1})
    loaded, info = fs.load_checkpoint(path)
    again = torch.optim.Adam(loaded.parameters(), lr=1.0)
    fs.restore_optimizer(again, info)
    want, got = opt.state_dict(), again.state_dict()
    assert got["param_groups"] == want["param_groups"] and got["state"].keys() == want["state"].keys()
    for pid, state in want["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(got["state"][pid][key], value, rtol=0, atol=0)
    with pytest.raises(fs.CheckpointError, match="optimiser is Adam, not SGD"):
        fs.restore_optimizer(torch.optim.SGD(loaded.parameters(), lr=1.0), info)
    # the optimiser's bytes are a torch.save file: one holding code is refused, never run
    _Evil.marker = tmp_path / "pwned"
    tensors = load_file(str(path))
    pickled = io.BytesIO()
    torch.save({"state": {}, "x": _Evil()}, pickled)
    tensors[fs.OPTIMIZER_KEY] = torch.frombuffer(bytearray(pickled.getvalue()), dtype=torch.uint8)
    evil = tmp_path / "evil.safetensors"
    with safe_open(str(path), framework="pt") as f:  # the same header: only the optimiser's bytes differ
        header = f.metadata()
    save_file(tensors, str(evil), metadata=header)
    with pytest.raises(fs.CheckpointError, match="never executed"):
        fs.load_checkpoint(evil)
    assert not _Evil.marker.exists()
    # a checkpoint whose optimiser tensors an older vizlib flattened by hand cannot be resumed
    with pytest.raises(fs.CheckpointError, match="older vizlib"):
        fs.restore_optimizer(again, {"optim": {"class": "Adam", "scalars": {}, "param_groups": []}})


def test_plain_tensor_files_load_with_weights_only(tmp_path):
    import json

    net = fs.TransformerNet(4, 1)
    tensors = {f"model.{k}": v for k, v in net.state_dict().items()}
    tensors["vizlib"] = json.dumps({"kind": "vizlib.fast_style", "config": net.config(), "meta": {}})
    torch.save(tensors, tmp_path / "plain.pt")
    loaded, _ = fs.load_checkpoint(tmp_path / "plain.pt")
    x = _batch(1, 12)
    torch.testing.assert_close(fs.stylize(loaded, x), fs.stylize(net, x))


def test_stylize_in_bfloat16_is_close_to_float32():
    net = fs.TransformerNet().eval()
    x = torch.rand(2, 3, 40, 56, generator=torch.Generator().manual_seed(3))
    full = fs.stylize(net, x, precision="float32")
    half = fs.stylize(net, x, precision="bfloat16")
    assert half.dtype == torch.float32 and half.shape == full.shape
    assert (half - full).abs().max() < 0.03          # stated tolerance: about 8/255
    with pytest.raises(ValueError, match="precision"):
        fs.stylize(net, x, precision="int8")
