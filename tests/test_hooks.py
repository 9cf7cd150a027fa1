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


# ------------------------------------------------------------------ stop_after

class _Raises(nn.Module):
    def forward(self, x):
        raise AssertionError("this layer must never run")


class _Twice(nn.Module):
    """Runs one module twice: ``relu(relu(x) - 1)``."""

    def __init__(self):
        super().__init__()
        self.relu = nn.ReLU()
        self.after = _Raises()

    def forward(self, x):
        return self.after(self.relu(self.relu(x) - 1.0))


def test_stop_after_stops_before_a_later_layer_and_keeps_the_graph(tiny_net):
    from vizlib.hooks import stop_after

    net = nn.Sequential(tiny_net.conv1, tiny_net.relu1, _Raises())
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    with stop_after(net, ["1", "0"]) as outs:
        net(x)
    assert list(outs) == ["0", "1"]  # in the order they ran
    torch.testing.assert_close(outs["0"][:, 0], x[:, 0])
    (g,) = torch.autograd.grad(outs["1"][:, 0].sum(), x)  # live, not detached
    torch.testing.assert_close(g[:, 0], torch.ones(2, 4, 4))
    assert hook_count(net) == 0


def test_stop_after_captures_a_twice_run_layer_at_its_first_run():
    from vizlib.hooks import stop_after

    net = _Twice()
    x = torch.full((1, 1, 2, 2), 3.0)
    with stop_after(net, "relu", stop=False) as outs:
        with pytest.raises(AssertionError, match="never run"):
            net(x)  # stop=False lets the pass go on, into the raising layer
    torch.testing.assert_close(outs["relu"], x)  # the first run's output, not relu(3 - 1) = 2
    assert hook_count(net) == 0


def test_stop_after_leaves_no_hook_after_an_exception_or_a_bad_name(tiny_net):
    from vizlib.hooks import stop_after

    with pytest.raises(KeyError, match="conv9"):
        with stop_after(tiny_net, ["conv1", "conv9"]):
            pytest.fail("the body must not run")
    assert hook_count(tiny_net) == 0
    with pytest.raises(RuntimeError, match="boom"):
        with stop_after(tiny_net, "relu1"):
            assert hook_count(tiny_net) == 1
            raise RuntimeError("boom")
    assert hook_count(tiny_net) == 0
    with pytest.raises(ValueError, match=r"\['fc'\] did not run"):
        with stop_after(tiny_net, ["conv1", "fc"]):
            tiny_net.conv1(torch.rand(1, 3, 4, 4))  # the body never reaches fc
    assert hook_count(tiny_net) == 0


def test_nested_stop_after_each_swallow_only_their_own_stop(tiny_net):
    from vizlib.hooks import stop_after

    x = torch.rand(1, 3, 4, 4)
    with stop_after(tiny_net, "fc") as outer:
        with stop_after(tiny_net, "conv1") as inner:
            tiny_net(x)  # inner stops at conv1: the outer's fc never ran yet
        tiny_net(x)      # the outer's own pass, stopped at fc
    assert set(inner) == {"conv1"} and set(outer) == {"fc"}
    with stop_after(tiny_net, "conv1") as outer:
        with stop_after(tiny_net, "fc") as inner:
            tiny_net(x)  # the outer's stop, at conv1: the inner passes it on, unmet
            pytest.fail("the pass must have stopped")
    assert set(outer) == {"conv1"} and inner == {}
    assert hook_count(tiny_net) == 0
