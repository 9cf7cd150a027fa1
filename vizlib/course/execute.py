"""nbgrader's Execute step for untrusted notebooks: a sandboxed kernel, a watch between cells, capped output.

:class:`GuardedExecute` replaces nbgrader's ``Execute`` preprocessor when ``vizlib grade`` autogrades
a submission (:func:`vizlib.course.grading.nbgrader_api` with ``untrusted=...``):

- the kernel is started by :class:`SandboxedKernelManager`, inside :mod:`vizlib.course.sandbox`
  (when the machine allows it), talking to the grader over Unix sockets in a folder of its own;
- before any student code runs, and between cells, :mod:`vizlib.course.guard` records and restores
  what the tests rely on; a graded cell during which something was replaced gets an error output
  (so nbgrader scores it zero), and the file ``report`` lists ``{"cell": ..., "replaced": [...]}``
  under ``"replaced"`` for the grade's reason;
- a cell's printed output is kept up to ``MAX_CELL_OUTPUT`` characters in the grader's memory,
  the rest dropped as it arrives (gigabytes of printing cannot exhaust the grader) and counted in
  the report's ``"dropped"``.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import tempfile
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbclient.util import run_sync
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Dict, Unicode

from . import sandbox

#: characters of stream output kept per cell while it runs
MAX_CELL_OUTPUT = 1_000_000
#: bytes the kernel may leave in its (host) socket folder besides its sockets
MAX_RUNTIME_BYTES = 1 << 20


class SandboxedKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` whose kernel runs in :mod:`vizlib.course.sandbox` (``limits`` a
    :class:`~vizlib.course.sandbox.Limits` as a dict), over the ``ipc`` transport."""

    limits = Dict(config=True, help="vizlib.course.sandbox.Limits fields")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.runtime = Path(tempfile.mkdtemp(prefix="vizlib-kernel-"))
        self.transport = "ipc"
        self.ip = str(self.runtime / "ipc")
        self.connection_file = str(self.runtime / "kernel.json")
        self.cgroups: sandbox.Cgroups | None = None

    def format_kernel_cmd(self, extra_arguments=None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        limits = sandbox.Limits(**self.limits)
        if self.cgroups is None:
            self.cgroups = sandbox.Cgroups(limits)
        # signals cannot cross into the sandbox's session: interrupt through the control channel
        self.kernel_spec.interrupt_mode = "message"
        return sandbox.command(cmd, self.runtime, limits, self.cgroups)

    def seal(self) -> None:
        """Once the kernel has made its sockets: take its socket folder from it. A grader running as
        root gives the folder to ``nobody`` (the sandbox, root outside but without capabilities,
        can then neither write into it nor change it back); otherwise it stays writable, and
        :meth:`runtime_bytes` is watched between cells."""
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            try:
                os.chmod(self.runtime, 0o500)
                os.chown(self.runtime, 65534, 65534)
            except OSError:
                pass

    def runtime_bytes(self) -> int:
        """Bytes of regular files in the socket folder (the only host folder the kernel can write)."""
        total = 0
        for path in self.runtime.rglob("*"):
            try:
                if path.is_file() and not path.is_symlink():
                    total += path.stat().st_size
            except OSError:
                pass
        return total

    def release(self) -> None:
        """Kill what is left of the sandbox and delete its folder."""
        if self.cgroups is not None:
            self.cgroups.close()
        shutil.rmtree(self.runtime, ignore_errors=True)


class GuardedExecute(Execute):
    """nbgrader's ``Execute`` with a sandboxed kernel (when ``limits`` is set), the guard and capped output."""

    limits = Dict(config=True, help="sandbox limits; empty: run the kernel unsandboxed")
    report = Unicode("", config=True, help="file to write the replacements and the dropped output to (JSON)")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        # a flood of output still queued when a cell is interrupted must not fail the whole grading:
        # the next cell ignores messages that belong to an earlier one
        self.raise_on_iopub_timeout = False
        if self.limits:
            self.kernel_manager_class = SandboxedKernelManager
            self.config.SandboxedKernelManager.limits = dict(self.limits)

    def preprocess(self, nb, resources=None, km=None):
        self._guard_ok = None
        self._tampering: list[dict] = []
        self._printed: dict[int, int] = {}
        self._dropped: dict[int, int] = {}
        try:
            nb, resources = super().preprocess(nb, resources, km)
        finally:
            if isinstance(self.km, SandboxedKernelManager):
                self.km.release()
            if self.report:
                Path(self.report).write_text(json.dumps({"replaced": self._tampering,
                                                         "dropped": sum(self._dropped.values())}))
        return nb, resources

    # -- the guard ---------------------------------------------------------------------------
    async def _guard(self, action: str, cell: str = "", locked: bool = False) -> list[str] | None:
        """Run one guard step in the kernel; the names it reports, or None if it could not run."""
        expr = f"__import__('vizlib.course.guard', fromlist=['step']).step({action!r}, {cell!r}, {locked!r})"
        msg_id = self.kc.execute("", silent=True, store_history=False, user_expressions={"r": expr})
        reply = await self.async_wait_for_reply(msg_id)  # a dead kernel raises, as for a cell
        try:
            value = reply["content"]["user_expressions"]["r"]
            result = json.loads(ast.literal_eval(value["data"]["text/plain"]))
            if result.get("ok") is not True:
                return None
            return [str(n) for n in result["changed"]]
        except Exception:  # noqa: BLE001 -- any other answer means the guard was defeated
            return None

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "code":
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        meta = cell.metadata.get("nbgrader", {})
        name = meta.get("grade_id") or f"cell {cell_index + 1} (added)"
        graded, locked = bool(meta.get("grade")), bool(meta.get("locked"))
        if self._guard_ok is None:
            if isinstance(self.km, SandboxedKernelManager):
                self.km.seal()
            self._guard_ok = await self._guard("start") is not None
            if not self._guard_ok:
                self._tampering.append({"cell": name, "replaced": ["the grader's checks (they could not start)"]})
        if graded and self._guard_ok:
            self._guard_ok = await self._guard("restore", name) is not None
        result = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        changed = await self._guard("check", name, locked) if self._guard_ok else []
        if changed is None:  # it answered before this cell and not after: the cell defeated it
            self._guard_ok = False
            changed = ["the grader's checks (they no longer answer)"]
        if isinstance(self.km, SandboxedKernelManager) and self.km.runtime_bytes() > MAX_RUNTIME_BYTES:
            changed.append("files in the kernel's socket folder")
            for path in self.km.runtime.rglob("*"):
                if path.is_file() and not path.is_symlink() and path.name != "kernel.json":
                    path.unlink(missing_ok=True)
        if changed:
            self._tampering.append({"cell": name, "replaced": changed})
        if graded and (changed or self._guard_ok is False):
            what = ", ".join(changed) or "the grader's checks"
            cell.outputs.append(NotebookNode(
                output_type="error", ename="GradingTampered",
                evalue=f"this cell ran while {what} had been replaced; it scores 0",
                traceback=[f"GradingTampered: this cell ran while {what} had been replaced; it scores 0"]))
        if self._dropped.get(cell_index):
            cell.outputs.append(NotebookNode(
                output_type="stream", name="stderr",
                text=f"\n… [{self._dropped[cell_index]:,} characters of output dropped by the grader]\n"))
        return result

    # nbclient binds its synchronous wrapper to the base class's coroutine: bind it to ours
    execute_cell = run_sync(async_execute_cell)

    # -- output kept in memory -----------------------------------------------------------------
    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "stream":
            text = msg["content"].get("text", "")
            used = self._printed.get(cell_index, 0)
            if used + len(text) > MAX_CELL_OUTPUT:
                self._dropped[cell_index] = self._dropped.get(cell_index, 0) + len(text)
                return None
            self._printed[cell_index] = used + len(text)
        return super().output(outs, msg, display_id, cell_index)
