import contextlib
import http.server
import os
import threading
from collections import OrderedDict

import matplotlib
import pytest
import torch
from torch import nn

from vizlib.hooks import hook_count
from vizlib.models import load_model

matplotlib.use("Agg")
os.environ.setdefault("VIZLIB_QUICK", "1")


@pytest.fixture(autouse=True)
def _no_network_and_seed(monkeypatch):
    """Tests never touch the network and are deterministic."""
    monkeypatch.setenv("VIZLIB_OFFLINE", "1")
    monkeypatch.setenv("VIZLIB_DEVICE", "cpu")
    torch.manual_seed(0)


@pytest.fixture
def tiny_net():
    """A hand-weighted 2-layer conv net whose outputs are easy to compute by hand."""
    net = nn.Sequential(OrderedDict(
        conv1=nn.Conv2d(3, 2, 3, padding=1, bias=False),
        relu1=nn.ReLU(),
        pool=nn.AdaptiveAvgPool2d(1),
        flat=nn.Flatten(),
        fc=nn.Linear(2, 2, bias=False),
    ))
    with torch.no_grad():
        net.conv1.weight.zero_()
        net.conv1.weight[0, 0, 1, 1] = 1.0   # channel 0 copies the red channel
        net.conv1.weight[1, 1, 1, 1] = -1.0  # channel 1 is minus the green channel
        net.fc.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    return net.eval()


@pytest.fixture(scope="session")
def shapesnet():
    """The course's ShapesNet with its packaged (trained) weights, on the CPU, built once per
    session and lent to every test that asks for it; each such test is checked to give it back
    as it found it (:func:`_lent_shapesnet_comes_back_unchanged`). For random weights use
    ``random_model("shapesnet")``; a test that must change the model changes a deep copy."""
    return load_model("shapesnet", device="cpu")


@pytest.fixture(scope="session")
def _shapesnet_as_lent(shapesnet):
    """The shared ShapesNet's state when it was first lent (a one-item list, re-recorded after a
    test is caught changing it, so that only that test is blamed)."""
    return [ModelState(shapesnet)]


@pytest.fixture(autouse=True)
def _lent_shapesnet_comes_back_unchanged(request):
    """A test that borrows the session's ShapesNet (directly or through a fixture of its module)
    must leave its weights, modes, flags and hooks as they were: every such test is also a
    side-effect test of what it calls."""
    if "shapesnet" not in request.fixturenames:
        yield
        return
    state = request.getfixturevalue("_shapesnet_as_lent")
    yield
    try:
        state[0].assert_unchanged(f"{request.node.nodeid} changed the shared ShapesNet")
    except AssertionError:
        state[0] = ModelState(state[0].model)
        raise


@pytest.fixture(scope="session")
def random_model():
    """``random_model(name)``: a course architecture with random weights, built once per session
    (VGG's initialisation is slow). Tests must not modify it."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_model(name, pretrained=False, device="cpu")
        return cache[name]

    return get


def pytest_collection_modifyitems(config, items):
    """Slow tests are opt-in: they run only when asked for with ``-m slow`` (``make test-slow``)."""
    if "slow" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="slow: run with -m slow (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@contextlib.contextmanager
def serve_http(handler):
    """Run ``handler`` (an ``http.server`` request-handler class or factory) on a local
    threaded server for the block; yields its base URL ``http://127.0.0.1:PORT``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


# ------------------------------------------------------------------ what a call must leave alone

def _tensor_record(t: torch.Tensor) -> dict:
    return dict(values=t.detach().clone(), version=t._version, requires_grad=t.requires_grad,
                grad=None if t.grad is None else t.grad.detach().clone(),
                tensor_hooks=len(t._backward_hooks or {}))


def _record(model: nn.Module, tensors) -> dict:
    """Everything of ``model`` and ``tensors`` that :class:`ModelState` compares."""
    return dict(
        state={k: v.detach().clone() for k, v in model.state_dict().items()},
        modules=[(name, id(m), m.training) for name, m in model.named_modules()],
        parameters=[(name, id(p), p.requires_grad, len(p._backward_hooks or {}))
                    for name, p in model.named_parameters()],
        grads={name: None if p.grad is None else p.grad.detach().clone()
               for name, p in model.named_parameters()},
        inplace=[(name, m.inplace) for name, m in model.named_modules() if hasattr(m, "inplace")],
        hooks=hook_count(model),
        global_hooks=sum(len(getattr(nn.modules.module, d, {})) for d in (
            "_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
            "_global_backward_pre_hooks")),
        tensors=[_tensor_record(t) for t in tensors],
    )


def _same_tensor(a: torch.Tensor | None, b: torch.Tensor | None) -> bool:
    """Both ``None``, or equal in shape, dtype, device and every value."""
    if a is None or b is None:
        return a is None and b is None
    return a.dtype == b.dtype and a.device == b.device and torch.equal(a, b)


class ModelState:
    """What a vizlib call must leave as it found it (STYLE habit 4, "no side effects").

    Of ``model``: every weight and buffer (values, dtype, device), every module's identity and
    train/eval mode, every parameter's identity, ``requires_grad``, ``.grad`` and tensor hooks,
    every ``inplace`` flag, the number of module hooks (and of global module hooks). Of each of
    ``tensors`` (the caller's images): values, version counter (an in-place write bumps it even
    when it writes the same values), ``requires_grad``, ``.grad`` and hooks.

    ``before = ModelState(model, x)`` records them; ``before.assert_unchanged("what")`` records
    them again and fails naming what changed. As a context manager, ``with ModelState(model, x):``
    checks when the block ends normally (a ``pytest.raises`` inside it is fine). Tests import it
    as ``from conftest import ModelState``.
    """

    def __init__(self, model: nn.Module, *tensors: torch.Tensor):
        self.model, self.tensors = model, tensors
        self.record = _record(model, tensors)

    def assert_unchanged(self, what: str = "the call") -> None:
        before, after = self.record, _record(self.model, self.tensors)
        assert before["state"].keys() == after["state"].keys(), f"{what}: state_dict keys changed"
        for k, v in before["state"].items():
            assert _same_tensor(v, after["state"][k]), f"{what}: weight or buffer {k} changed"
        for key in ("modules", "parameters", "inplace", "hooks", "global_hooks"):
            assert before[key] == after[key], f"{what}: {key} changed"
        for name, g in before["grads"].items():
            assert _same_tensor(g, after["grads"][name]), f"{what}: {name}.grad changed"
        for i, (a, b) in enumerate(zip(before["tensors"], after["tensors"])):
            assert _same_tensor(a["values"], b["values"]), f"{what}: the caller's tensor {i} changed"
            assert _same_tensor(a["grad"], b["grad"]), f"{what}: the caller's tensor {i}'s .grad changed"
            for key in ("version", "requires_grad", "tensor_hooks"):
                assert a[key] == b[key], f"{what}: the caller's tensor {i}'s {key} changed"

    def __enter__(self) -> "ModelState":
        return self

    def __exit__(self, kind, value, traceback) -> bool:
        if kind is None:
            self.assert_unchanged()
        return False


# The mutation score of each assignment (tests/test_mutants.py records it), printed at the end of
# every run so that CI's log shows it; collected from the reports, so it works under xdist too.
_MUTATION_SCORES: dict[str, str] = {}


def pytest_runtest_logreport(report):
    for key, value in getattr(report, "user_properties", ()):
        if key == "mutation score":
            _MUTATION_SCORES[report.nodeid] = value


def pytest_terminal_summary(terminalreporter):
    if _MUTATION_SCORES:
        terminalreporter.section("mutation score of the graded cells")
        for line in sorted(set(_MUTATION_SCORES.values())):
            terminalreporter.write_line(line)
