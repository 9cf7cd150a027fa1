import contextlib
import os

import matplotlib
import pytest
import torch

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
    from collections import OrderedDict

    from torch import nn

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
def random_model():
    """``random_model(name)``: a course architecture with random weights, built once per session
    (VGG's initialisation is slow). Tests must not modify it."""
    from vizlib.models import load_model

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
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


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
