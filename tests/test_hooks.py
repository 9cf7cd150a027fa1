"""vizlib.hooks: exact captured values, and nothing left behind, ever."""
import pytest
import torch
from torch import nn

from vizlib.hooks import capture_activations, capture_gradients, hook_count


def test_captures_exact_activations(tiny_net):
    x = torch.rand(2, 3, 4, 4)
    with capture_activations(tiny_net, ["conv1", "relu1", "fc"]) as acts:
        tiny_net(x)
    torch.testing.assert_close(acts["conv1"][:, 0], x[:, 0])
    torch.testing.assert_close(acts["conv1"][:, 1], -x[:, 1])
    torch.testing.assert_close(acts["relu1"][:, 1], torch.zeros(2, 4, 4))
    expected_fc = torch.stack([x[:, 0].mean((1, 2)), torch.zeros(2)], dim=1)
    torch.testing.assert_close(acts["fc"], expected_fc)
    assert hook_count(tiny_net) == 0


def test_hooks_removed_when_body_raises(tiny_net):
    with pytest.raises(RuntimeError, match="boom"):
        with capture_activations(tiny_net, "conv1"):
            assert hook_count(tiny_net) == 1
            raise RuntimeError("boom")
    assert hook_count(tiny_net) == 0


def test_hooks_removed_when_a_layer_raises(tiny_net):
    class Broken(nn.Module):
        def forward(self, x):
            raise ValueError("layer failed")

    net = nn.Sequential(tiny_net.conv1, Broken())
    with pytest.raises(ValueError, match="layer failed"):
        with capture_activations(net, ["0"]):
            net(torch.rand(1, 3, 4, 4))
    assert hook_count(net) == 0


def test_unknown_layer_registers_nothing(tiny_net):
    with pytest.raises(KeyError, match="conv1"):
        with capture_activations(tiny_net, ["conv1", "conv9"]):
            pass
    assert hook_count(tiny_net) == 0


def test_detached_copy_survives_inplace_relu():
    conv = nn.Conv2d(1, 1, 1, bias=False)
    with torch.no_grad():
        conv.weight.fill_(-1.0)
    net = nn.Sequential(conv, nn.ReLU(inplace=True))
    x = torch.rand(1, 1, 3, 3) + 0.1
    with torch.no_grad(), capture_activations(net, "0") as acts:
        net(x)
    torch.testing.assert_close(acts["0"], -x)  # not overwritten by the in-place ReLU


def test_live_capture_keeps_the_graph(tiny_net):
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    with capture_activations(tiny_net, "conv1", detach=False) as acts:
        tiny_net(x)
    acts["conv1"][:, 0].sum().backward()
    expected = torch.zeros_like(x)
    expected[:, 0] = 1.0
    torch.testing.assert_close(x.grad, expected)


def test_gradients_match_the_analytic_value(tiny_net):
    x = torch.rand(1, 3, 4, 4, requires_grad=True)
    with capture_gradients(tiny_net, ["conv1", "relu1"]) as grads:
        tiny_net(x)[0, 0].backward()
    # logit 0 = mean over 16 positions of relu(red): d/d relu1[:,0] = 1/16, channel 1 gets 0
    expected = torch.zeros(1, 2, 4, 4)
    expected[:, 0] = 1 / 16
    torch.testing.assert_close(grads["relu1"], expected)
    torch.testing.assert_close(grads["conv1"], expected)  # red > 0 everywhere, ReLU passes it
    assert hook_count(tiny_net) == 0


def test_captures_exact_inputs_and_cleans_up(tiny_net):
    from vizlib.hooks import capture_inputs

    x = torch.rand(2, 3, 4, 4)
    with capture_inputs(tiny_net, "fc") as ins:
        tiny_net(x)
    expected = torch.stack([x[:, 0].mean((1, 2)), torch.zeros(2)], dim=1)  # what enters fc
    torch.testing.assert_close(ins["fc"], expected)
    assert hook_count(tiny_net) == 0
