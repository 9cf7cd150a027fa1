"""A sandbox for a student's kernel: Linux namespaces from bubblewrap, limits from rlimits and cgroups.

Student code is untrusted. While ``vizlib grade`` runs a submission, the kernel that executes it is
started as

    python -m vizlib.course.sandbox LIMITS -- bwrap ... -- python -m ipykernel_launcher -f ...

The launcher (this module's :func:`main`) applies the resource limits to itself, joins the
submission's cgroups where it may, and becomes ``bwrap``, which starts the kernel in new user,
mount, PID, network, IPC, UTS and cgroup namespaces. What the kernel can reach:

- **files**: a new root holding, read-only, the system's ``/usr`` and libraries, the few files of
  ``/etc`` that programs read, the Python installation and its packages, and vizlib's own folder
  (its code and data); a private ``/tmp`` (a size-limited tmpfs, also its home and working folder);
  and the folder of its own connection file and sockets. Nothing else exists in it: not the course's
  ``source/`` folder (the hidden tests reach the kernel only as each test cell runs), not the
  gradebook, the other submissions, the output folder or the rest of the disk;
- **network**: none. The kernel talks to the grader over Unix sockets in its connection folder; its
  network namespace has no interface but a loopback of its own, so neither the machine's loopback
  (other kernels, other services) nor any other host can be reached;
- **processes**: its own PID namespace: it sees and can signal only its own processes, and when
  the kernel ends, everything it started ends with it; ``--die-with-parent`` ends it with the grader;
- **limits**: memory (a cgroup's limit on the whole sandbox where the grader may create cgroups, and
  an address-space limit per process everywhere), tasks (a cgroup's ``pids.max``, else
  ``RLIMIT_NPROC``), the size of any file it writes, and the size of its ``/tmp``.

Why bubblewrap: it is a small, audited, unprivileged tool (Flatpak's sandbox) packaged by every
distribution (Debian's ``bubblewrap``), it builds the file system from an allow-list rather than
hiding paths one by one, and it needs no daemon or root, unlike a container runtime.

Where it cannot run (no ``bwrap``, user namespaces disabled, macOS), :func:`unavailable` says why
and the grader runs kernels unsandboxed, saying so loudly.
"""
from __future__ import annotations

import functools
import json
import os
import re
import resource
import shutil
import site
import subprocess
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

import vizlib

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}

#: Address space a kernel reserves without using it (torch's allocators and thread stacks): the
#: per-process address-space limit is the memory limit plus this.
ADDRESS_SPACE_SLACK = 4 << 30

#: The files of /etc that the Python stack reads (dynamic linker, users, fonts, time zone, MIME).
ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "nsswitch.conf", "passwd", "group",
             "localtime", "fonts", "alternatives", "mime.types", "os-release", "ssl/certs")

#: Environment variables passed into the sandbox (everything else is cleared).
PASSED_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "VIZLIB_QUICK", "VIZLIB_OFFLINE", "VIZLIB_DEVICE",
              "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "CUDA_VISIBLE_DEVICES",
              "PYTHONHASHSEED", "MPLBACKEND")


def parse_size(text: str | int) -> int:
    """Bytes from ``"4G"``, ``"512M"``, ``"1024"`` (binary units). Raises ``ValueError``."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", str(text), re.IGNORECASE)
        if not match:
            raise ValueError(f"not a size: {text!r} (expected e.g. 4G, 512M or a number of bytes)")
        value = int(float(match[1]) * _UNITS[match[2].upper()])
    if value <= 0:
        raise ValueError(f"a size must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class Limits:
    """What one submission's kernel may use.

    Attributes:
        memory: bytes of memory for the whole sandbox (cgroup), and the basis of the per-process
            address-space limit (``memory + ADDRESS_SPACE_SLACK``).
        tasks: processes and threads together.
        file_size: bytes of any one file it writes.
        scratch: bytes of its private ``/tmp``.
    """
    memory: int = 4 << 30
    tasks: int = 512
    file_size: int = 256 << 20
    scratch: int = 512 << 20


def bwrap() -> str | None:
    """The ``bwrap`` executable on PATH, or None."""
    return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def unavailable() -> str:
    """Why kernels cannot be sandboxed here ("" when they can): tries a tiny sandbox once."""
    if not sys.platform.startswith("linux"):
        return f"bubblewrap needs Linux (this is {sys.platform})"
    exe = bwrap()
    if exe is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    try:
        proc = subprocess.run([exe, *_namespace_args(), "--ro-bind", "/", "/", "--", "true"],
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not start: {exc}"
    if proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        return f"bwrap cannot create namespaces here ({err[-1] if err else proc.returncode}); are user namespaces disabled?"
    return ""


def _namespace_args() -> list[str]:
    # a new user namespace also when run as root, so that the sandbox holds no capability outside it
    return ["--unshare-user", "--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts",
            "--unshare-cgroup-try", "--disable-userns", "--die-with-parent", "--new-session",
            "--cap-drop", "ALL", "--uid", "1000", "--gid", "1000", "--hostname", "sandbox"]


def _read_only_roots() -> list[Path]:
    """Folders the kernel needs to read: the Python installation, its packages and vizlib's folder
    (an editable install's source folder, never the course around it)."""
    roots = {Path(sys.base_prefix), Path(sys.prefix), Path(sys.executable).parent,
             Path(vizlib.__file__).resolve().parent}
    roots.update(Path(p) for p in [*site.getsitepackages(), site.getusersitepackages()])
    return sorted(r for r in roots if r.exists())


def bwrap_args(runtime: Path, limits: Limits, env: dict[str, str] | None = None) -> list[str]:
    """The ``bwrap`` command line (up to its ``--``) for a kernel whose connection file and sockets
    are in ``runtime``."""
    env = os.environ if env is None else env
    args = [bwrap() or "bwrap", *_namespace_args()]
    for top in ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / top
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), str(path)]
        elif path.exists():
            args += ["--ro-bind", str(path), str(path)]
    for name in ETC_FILES:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    # the private /tmp first: the Python environment, vizlib or the socket folder may live under /tmp
    # (a course cloned there), and a later mount would hide them
    args += ["--proc", "/proc", "--dev", "/dev",
             "--size", str(limits.scratch), "--tmpfs", "/tmp", "--dir", "/tmp/home"]
    for root in _read_only_roots():
        args += ["--ro-bind", str(root), str(root)]
    for device in sorted(Path("/dev").glob("nvidia*")):  # a GPU, where there is one
        args += ["--dev-bind", str(device), str(device)]
    args += ["--bind", str(runtime), str(runtime), "--remount-ro", "/", "--chdir", "/tmp/home", "--clearenv"]
    for key in PASSED_ENV:
        if key in env:
            args += ["--setenv", key, env[key]]
    args += ["--setenv", "HOME", "/tmp/home", "--setenv", "TMPDIR", "/tmp",
             "--setenv", "MPLCONFIGDIR", "/tmp/home/.matplotlib", "--setenv", "MALLOC_ARENA_MAX", "4",
             "--setenv", "PYTHONDONTWRITEBYTECODE", "1", "--setenv", "VIZLIB_SANDBOXED", "1"]
    return args


# ----------------------------------------------------------------------------------------
# cgroups: a limit on the whole sandbox, where the grader may create them (root, or delegated)
# ----------------------------------------------------------------------------------------

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _writable(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


class Cgroups:
    """The cgroups of one sandbox: ``pids`` and ``memory``, in cgroup v2 or v1, where this process may
    create them. ``paths`` is empty where it may not (then only rlimits apply)."""

    def __init__(self, limits: Limits):
        self.paths: list[Path] = []
        name = f"vizlib-grade-{uuid.uuid4().hex[:12]}"
        v2 = _CGROUP_ROOT / "cgroup.controllers"
        try:
            if v2.exists() and {"pids", "memory"} <= set(v2.read_text().split()) and _writable(_CGROUP_ROOT):
                path = _CGROUP_ROOT / name
                path.mkdir()
                self.paths.append(path)
                (path / "pids.max").write_text(str(limits.tasks))
                (path / "memory.max").write_text(str(limits.memory))
                if (path / "memory.swap.max").exists():
                    (path / "memory.swap.max").write_text("0")
            elif _writable(_CGROUP_ROOT / "pids") and _writable(_CGROUP_ROOT / "memory"):
                for controller, files in (("pids", {"pids.max": limits.tasks}),
                                          ("memory", {"memory.limit_in_bytes": limits.memory})):
                    path = _CGROUP_ROOT / controller / name
                    path.mkdir()
                    self.paths.append(path)
                    for file, value in files.items():
                        (path / file).write_text(str(value))
        except OSError:
            self.close()

    def close(self) -> None:
        """Kill whatever is left in the cgroups and remove them."""
        for path in self.paths:
            for _ in range(50):
                try:
                    pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
                except OSError:
                    break
                if not pids:
                    break
                for pid in pids:
                    try:
                        os.kill(pid, 9)
                    except OSError:
                        pass
                time.sleep(0.02)
            try:
                path.rmdir()
            except OSError:
                pass
        self.paths = []


def command(kernel: list[str], runtime: Path, limits: Limits, cgroups: Cgroups | None = None,
            env: dict[str, str] | None = None) -> list[str]:
    """The full command that starts ``kernel`` (an argv) in a sandbox under ``limits``."""
    spec = {"limits": asdict(limits), "cgroups": [str(p) for p in (cgroups.paths if cgroups else [])]}
    return [sys.executable, "-I", "-m", "vizlib.course.sandbox", json.dumps(spec), "--",
            *bwrap_args(runtime, limits, env), "--", *kernel]


def _apply(spec: dict) -> None:
    limits = Limits(**spec["limits"])
    address = limits.memory + ADDRESS_SPACE_SLACK
    resource.setrlimit(resource.RLIMIT_AS, (address, address))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size, limits.file_size))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    for path in spec["cgroups"]:
        (Path(path) / "cgroup.procs").write_text(str(os.getpid()))
    if not spec["cgroups"]:
        # without a pids cgroup: RLIMIT_NPROC counts every process of this user, so allow those
        # already running on top of the sandbox's share (root is exempt from it: cgroups are used)
        running = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owned(p))
        nproc = running + limits.tasks
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))


def _owned(proc: Path) -> bool:
    try:
        return proc.stat().st_uid == os.getuid()
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    """``python -m vizlib.course.sandbox SPEC -- BWRAP...``: apply SPEC's limits, then exec bwrap."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m vizlib.course.sandbox SPEC -- COMMAND ...", file=sys.stderr)
        return 2
    _apply(json.loads(argv[0]))
    os.execv(argv[2], argv[2:])
    return 127  # not reached


if __name__ == "__main__":
    sys.exit(main())
