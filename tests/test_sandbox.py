"""The sandbox a student's kernel runs in (vizlib.course.sandbox): what it can reach, and its limits.

Each check starts a small Python inside the sandbox, as the grader starts a kernel; the whole class
run with every attack on the grader is in test_classroom.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vizlib.course import sandbox

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(bool(sandbox.unavailable()), reason=f"no sandbox here: {sandbox.unavailable()}")

PROBE = r"""
import json, os, socket, sys
port = int(sys.argv[1])
seen = {"uid": os.getuid(), "pids": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
        "root": sorted(os.listdir("/")), "env": sorted(os.environ), "cwd": os.getcwd()}
def can(f):
    try:
        f()
        return True
    except Exception as exc:
        return type(exc).__name__
seen["repo"] = can(lambda: os.listdir(sys.argv[2]))
seen["solutions"] = can(lambda: os.listdir(sys.argv[2] + "/solutions"))
seen["vizlib"] = can(lambda: open(sys.argv[3]).read(10))
seen["write root"] = can(lambda: open("/escape", "w").write("x"))
seen["write vizlib"] = can(lambda: open(sys.argv[3] + ".x", "w").write("x"))
seen["write tmp"] = can(lambda: open("/tmp/ok", "w").write("x"))
seen["loopback"] = can(lambda: socket.create_connection(("127.0.0.1", port), timeout=2))
seen["big file"] = can(lambda: open("/tmp/big", "wb").write(b"x" * (3 << 20)))
seen["memory"] = can(lambda: bytearray(int(sys.argv[4])))
seen["signal parent"] = can(lambda: os.kill(int(sys.argv[5]), 0))
print(json.dumps(seen))
"""


def test_a_sandboxed_process_sees_only_what_it_needs_and_its_limits_hold(tmp_path, monkeypatch):
    import vizlib

    monkeypatch.setenv("VIZLIB_TEST_SECRET", "s3cret")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    limits = sandbox.Limits(memory=1 << 30, tasks=64, file_size=1 << 20, scratch=8 << 20)
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    cgroups = sandbox.Cgroups(limits)
    try:
        cmd = sandbox.command([sys.executable, "-c", PROBE, str(port), str(ROOT), vizlib.__file__,
                               str(6 << 30), str(os.getpid())], runtime, limits, cgroups)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    finally:
        cgroups.close()
        listener.close()
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout)
    assert seen["solutions"] == "FileNotFoundError"            # the course around vizlib is not there
    assert seen["vizlib"] is True                               # vizlib's own code is, read-only
    assert seen["write vizlib"] == "OSError" and seen["write root"] == "OSError"
    assert seen["write tmp"] is True and seen["cwd"].startswith("/tmp")
    assert seen["loopback"] == "ConnectionRefusedError"         # the host's loopback is another network
    assert seen["big file"] == "OSError"                        # file size limit (1 MiB)
    assert seen["memory"] == "MemoryError"                      # 6 GiB > 1 GiB + the address-space slack
    assert seen["signal parent"] == "ProcessLookupError"        # the grader's processes do not exist in it
    assert max(seen["pids"]) < 10 and seen["uid"] != 0
    assert "VIZLIB_TEST_SECRET" not in seen["env"] and "HOME" in seen["env"]
    assert set(seen["root"]) <= {"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "proc", "dev",
                                 "tmp", *Path(sys.prefix).parts[1:2], *Path(sys.base_prefix).parts[1:2],
                                 *Path(vizlib.__file__).parts[1:2]}


def test_a_fork_bomb_ends_inside_its_sandbox(tmp_path):
    limits = sandbox.Limits(tasks=32)
    cgroups = sandbox.Cgroups(limits)
    bomb = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n"
            "            os._exit(0)\n        n += 1\nexcept OSError:\n    print(n)\n")
    try:
        proc = subprocess.run(sandbox.command([sys.executable, "-c", bomb], tmp_path, limits, cgroups),
                              capture_output=True, text=True, timeout=60)
    finally:
        cgroups.close()
    assert proc.returncode == 0, proc.stderr
    assert 0 < int(proc.stdout) < 64          # stopped by the task limit; the children die with the sandbox


def test_sizes_are_read_with_binary_units():
    assert sandbox.parse_size("4G") == 4 << 30 and sandbox.parse_size("512M") == 512 << 20
    assert sandbox.parse_size(1024) == 1024 and sandbox.parse_size("1.5GiB") == 3 << 29
    for bad in ("-1G", "lots", "0", True):
        with pytest.raises(ValueError):
            sandbox.parse_size(bad)
