"""`vizlib stylize` and `vizlib train-style` (lectures 13-14) on tiny images: results written,
clear errors, URLs through a local HTTP server, and multi-process training through torchrun."""
import functools
import http.server
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from vizlib import fast_style as fs
from vizlib import samples
from vizlib.config import VizlibWarning
from vizlib.cli import main
from vizlib.images import load_image, save_image
from conftest import serve_http

ROOT = Path(__file__).resolve().parents[1]


def _png(path, h=24, w=24, seed=0):
    save_image(torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(seed)), path)
    return path


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        _png(folder / f"p{i}.png", 20, 20, seed=i)
    return {"content": _png(tmp_path / "content.png", 20, 28, 10), "style": _png(tmp_path / "style.png", 24, 24, 11),
            "folder": folder, "tmp": tmp_path}


def test_stylize_by_optimisation_writes_the_image(files, capsys):
    out = files["tmp"] / "out.png"
    rc = main(["stylize", str(files["content"]), str(files["style"]), "-o", str(out), "--size", "20",
               "--steps", "2", "--optimizer", "adam", "--quiet", "--style-layers", "stem,block2_expand",
               "--content-layer", "block2"])  # offline, vgg19 falls back to EfficientNet-Lite0
    assert rc == 0, capsys.readouterr().err
    img = load_image(out)
    assert img.shape == (1, 3, 20, 28)
    assert f"wrote {out}" in capsys.readouterr().out


def test_train_style_then_feed_forward(files, capsys):
    run = files["tmp"] / "run"
    rc = main(["train-style", str(files["style"]), str(files["folder"]), "-o", str(run), "--steps", "2",
               "--batch-size", "2", "--image-size", "16", "--width", "4", "--residual-blocks", "1",
               "--sample-every", "2", "--checkpoint-every", "2", "--quiet", "--precision", "float32"])
    assert rc == 0, capsys.readouterr().err
    ckpt = run / "checkpoint.safetensors"
    assert ckpt.is_file() and (run / "samples" / "step_000002.png").is_file()
    net, info = fs.load_checkpoint(ckpt)
    assert info["meta"]["precision"] == "float32"
    for precision in ("auto", "float32"):
        out = files["tmp"] / f"fast_{precision}.png"
        assert main(["stylize", "--model", str(ckpt), str(files["content"]), "-o", str(out), "--size", "20",
                     "--precision", precision]) == 0
        expected = fs.stylize(net, load_image(files["content"], size=20), precision=precision)
        torch.testing.assert_close(load_image(out), expected, atol=1 / 255, rtol=0)


@pytest.mark.parametrize("argv, message", [
    (["stylize", "{tmp}/missing.png", "{style}", "-o", "{tmp}/o.png"], "content image"),
    (["stylize", "{notimage}", "{style}", "-o", "{tmp}/o.png"], "not"),
    (["stylize", "{content}", "-o", "{tmp}/o.png"], "give a STYLE image"),
    (["stylize", "--model", "{notimage}", "{content}", "-o", "{tmp}/o.png"], "refusing"),
    (["stylize", "--model", "{tmp}/none.safetensors", "{content}", "-o", "{tmp}/o.png"], "checkpoint not found"),
    (["stylize", "{content}", "{style}", "-o", "{tmp}/o.png", "--style-layers", "relu9", "--steps", "1"], "relu9"),
    (["train-style", "{style}", "{tmp}/nofolder", "-o", "{tmp}/r"], "image folder not found"),
])
def test_clear_errors(files, capsys, argv, message):
    notimage = files["tmp"] / "notes.png"
    notimage.write_text("hello, not a picture")
    subs = dict(tmp=files["tmp"], style=files["style"], content=files["content"], notimage=notimage)
    assert main([a.format(**subs) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "vizlib: error:" in err and message in err and "Traceback" not in err


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_root(tmp_path):
    with serve_http(functools.partial(_Quiet, directory=str(tmp_path))) as base:
        yield tmp_path, base


def test_paintings_load_by_url_and_fall_back_offline(http_root, monkeypatch, capsys):
    root, base = http_root
    _png(root / "wave.png", 30, 40, seed=3)
    monkeypatch.setitem(samples.PAINTINGS, "great_wave", ("The Great Wave", f"{base}/wave.png", "coffee"))
    monkeypatch.delenv("VIZLIB_OFFLINE")
    with warnings.catch_warnings():
        warnings.simplefilter("error", VizlibWarning)  # a painting that downloads says nothing
        got = samples.painting("great_wave")
    torch.testing.assert_close(got, load_image(root / "wave.png"))
    assert capsys.readouterr().err == ""
    # the server is there but the file is not: the bundled stand-in, said in one line
    monkeypatch.setitem(samples.PAINTINGS, "great_wave", ("The Great Wave", f"{base}/gone.png", "coffee"))
    with pytest.warns(VizlibWarning, match="The Great Wave not available") as record:
        stand_in = samples.painting("great_wave", size=32)
    assert len(record) == 1 and "\n" not in str(record[0].message) and min(stand_in.shape[-2:]) == 32
    monkeypatch.setenv("VIZLIB_OFFLINE", "1")
    with pytest.warns(VizlibWarning, match="VIZLIB_OFFLINE is set"):
        samples.painting("great_wave")
    # the CLI takes URLs as well as paths
    monkeypatch.delenv("VIZLIB_OFFLINE")
    _png(root / "c.png", 16, 16, seed=4)
    out = root / "styled.png"
    assert main(["stylize", f"{base}/c.png", f"{base}/wave.png", "-o", str(out), "--size", "16", "--steps", "1",
                 "--optimizer", "adam", "--quiet"]) == 0
    assert load_image(out).shape == (1, 3, 16, 16)


@pytest.mark.slow  # two fresh Python processes importing torch: ~20 s on a loaded 2-core machine
def test_train_style_under_torchrun_with_two_processes(files):
    """DistributedDataParallel on CPU (gloo), 2 processes: both train, rank 0 writes."""
    run = files["tmp"] / "ddp"
    env = dict(os.environ, PYTHONPATH=str(ROOT), VIZLIB_OFFLINE="1", VIZLIB_DEVICE="cpu", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "vizlib.cli", "train-style", str(files["style"]), str(files["folder"]), "-o", str(run),
           "--steps", "2", "--batch-size", "1", "--image-size", "16", "--width", "4",
           "--residual-blocks", "0", "--sample-every", "0", "--checkpoint-every", "2", "--quiet"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "on 2 process(es)" in proc.stdout
    net, info = fs.load_checkpoint(run / "checkpoint.safetensors")
    assert info["meta"]["world_size"] == 2 and info["meta"]["step"] == 2


# --- everything is checked before the expensive part ------------------------------------------

@pytest.fixture
def nothing_expensive(monkeypatch):
    """Fail loudly if a check comes after loading a network."""
    import vizlib.models

    def refuse(*a, **k):
        raise AssertionError("a network was loaded before the arguments were checked")
    monkeypatch.setattr(vizlib.models, "load_model", refuse)


@pytest.mark.parametrize("argv, message", [
    (["stylize", "{content}", "{style}", "-o", "{tmp}/out.pgn"], "output '{tmp}/out.pgn': cannot tell an image format from '.pgn'"),
    (["stylize", "{content}", "{style}", "-o", "{tmp}/result"], "cannot tell an image format from 'no extension'"),
    (["stylize", "{content}", "{style}", "-o", "{content}/o.png"], "is a file, not a folder"),
    (["stylize", "{content}", "{style}", "-o", "{tmp}/o.png", "--device", "banana"], "--device 'banana': not a device"),
    (["stylize", "{content}", "{style}", "-o", "{tmp}/o.png", "--device", "cuda"], "--device 'cuda': this machine has no CUDA GPU"),
    (["train-style", "{style}", "{tmp}/nofolder", "-o", "{tmp}/r"], "image folder not found"),
    (["train-style", "{style}", "{content}", "-o", "{tmp}/r"], "is a file, not a folder"),
    (["train-style", "{style}", "{folder}", "-o", "{content}/r"], "output folder"),
    (["train-style", "{style}", "{folder}", "-o", "{tmp}/r", "--device", "cuda:3"], "--device 'cuda:3'"),
])
def test_mistakes_are_one_line_before_any_network_loads(files, capsys, nothing_expensive, argv, message):
    if "no CUDA" in message and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    subs = dict(tmp=files["tmp"], style=files["style"], content=files["content"], folder=files["folder"])
    assert main([a.format(**subs) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message.format(**subs) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("argv, message", [
    (["train-style", "{style}", "{folder}", "-o", "{tmp}/r", "--batch-size", "0"], "--batch-size: must be at least 1, not 0"),
    (["train-style", "{style}", "{folder}", "-o", "{tmp}/r", "--steps", "-1"], "--steps: must be at least 1, not -1"),
    (["train-style", "{style}", "{folder}", "-o", "{tmp}/r", "--lr", "0"], "--lr: must be a finite number > 0, not 0"),
    (["stylize", "{content}", "{style}", "-o", "{tmp}/o.png", "--size", "big"], "--size: 'big' is not a whole number"),
])
def test_bad_numbers_are_refused_by_the_parser(files, capsys, nothing_expensive, argv, message):
    subs = dict(tmp=files["tmp"], style=files["style"], content=files["content"], folder=files["folder"])
    with pytest.raises(SystemExit) as exit_:
        main([a.format(**subs) for a in argv])
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_every_option_has_help_and_its_default(capsys):
    for command in ("stylize", "train-style"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "(default: 256)" in text and "(default: float32)" in text
        options = [w for w in text.split("options:")[1].split() if w.startswith("--") and w != "--help"]
        assert text.count("(default:") >= len(set(o.rstrip(",") for o in options)) - 1  # all but --help
    assert main(["--version"]) == 0 and capsys.readouterr().out.startswith("vizlib ")


def test_a_file_that_is_not_an_image_is_skipped_with_its_name(files):
    (files["folder"] / "notes.jpg").write_text("not a photo")
    with pytest.warns(VizlibWarning, match="skipping 1 file.*notes.jpg"):
        data = fs.ImageFolder(files["folder"], 16)
    assert len(data) == 4


def test_another_runs_checkpoint_is_not_resumed(files, capsys):
    def run(style, steps=1, width=4):
        return main(["train-style", str(style), str(files["folder"]), "-o", str(files["tmp"] / "run"),
                     "--steps", str(steps), "--batch-size", "2", "--image-size", "16", "--style-size", "16",
                     "--width", str(width), "--residual-blocks", "0", "--quiet", "--sample-every", "1000"])

    assert run(files["style"]) == 0
    other = _png(files["tmp"] / "other_style.png", 24, 24, seed=99)
    assert run(other, steps=2) == 2
    assert "belongs to another run (another style image)" in capsys.readouterr().err
    assert run(files["style"], steps=2, width=8) == 2
    assert "width 4 -> 8" in capsys.readouterr().err
    assert run(files["style"], steps=2) == 0                     # the same run resumes
    assert "trained 1 steps" in capsys.readouterr().out
