"""Inside the student's kernel: notice what the notebook replaced, and put the originals back.

The grader (:mod:`vizlib.course.execute`) calls :func:`step` between cells, through the kernel's
``user_expressions``, never from a cell:

- ``step("start")`` before any student code runs: imports the libraries the tests use and records
  every watched attribute (the *originals*);
- ``step("check", cell, locked)`` after every cell: what that cell replaced, as names such as
  ``"torch.allclose"``, ``"builtins.isinstance"``, ``"torch.Tensor.__eq__"``,
  ``"IPython's input_transformers_cleanup"`` or ``"the notebook's torch"``; after a read-only cell
  (the instructor's), also records the modules, functions and classes that cell bound, so that a
  later cell rebinding ``torch`` to something else is seen;
- ``step("restore", cell)`` before every graded test cell: puts every original back, so the tests
  compare through the library as it was before any student code ran.

Watched: ``builtins``, ``math``, ``operator``, ``sys``, ``threading``'s profile hook, ``torch``
(with ``nn.functional``, ``testing``, ``linalg``, ``Tensor`` and its C base, ``nn.Module``), ``numpy``
(with ``testing``, ``linalg``, ``random``), ``vizlib.course.checks``; IPython's cell-running methods,
input and AST transformers, event callbacks, traceback display, the kernel's request handlers.
A library wrapping its own function (``torch._dynamo`` wraps ``torch.manual_seed`` when some import
pulls it in) and matplotlib's inline backend registering its callbacks are not replacements. The
grader zeroes a graded cell during which anything else changed. A determined attacker who reads this
module could still subvert it from inside the process; the sandbox (:mod:`vizlib.course.sandbox`)
bounds what such code can reach, and the README states this trust model.
"""
from __future__ import annotations

import importlib
import json
import os
import sys
from functools import partial
from typing import Callable

_MODULES = ("builtins", "math", "operator", "sys", "torch", "torch.nn.functional", "torch.testing",
            "torch.linalg", "numpy", "numpy.testing", "numpy.linalg", "vizlib.course.checks")
_CLASSES = (("torch", "Tensor"), ("torch._C", "TensorBase"), ("torch.nn", "Module"))
_SKIP = {"builtins": {"_", "__", "___"},
         "sys": {"last_type", "last_value", "last_traceback", "last_exc", "ps1", "ps2", "_", "argv",
                 "path_importer_cache", "stdout", "stderr", "stdin", "exc_info"}}
_SHELL_METHODS = ("run_cell", "run_cell_async", "run_ast_nodes", "run_code", "should_run_async",
                  "transform_cell", "transform_ast", "showtraceback", "_showtraceback", "showsyntaxerror",
                  "showindentationerror", "get_exception_only", "user_expressions", "ex", "ev")
_SHELL_OBJECTS = ("compile", "displayhook", "display_pub", "custom_exceptions", "CustomTB", "events",
                  "input_transformer_manager", "user_ns", "kernel")
_SHELL_LISTS = ("input_transformers_cleanup", "input_transformers_post", "ast_transformers")
_KERNEL_METHODS = ("do_execute", "execute_request", "send_response", "dispatch_shell",
                   "_publish_execute_input", "_publish_status")
_MISSING = object()


class _Guard:
    def __init__(self):
        for name in _MODULES:
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        self.protected: dict[str, object] = {}  # notebook names bound by read-only cells
        self.bindings = self._bindings()          # the notebook's names after the last cell
        self.original = self._take()
        self.seen = dict(self.original)

    @staticmethod
    def _bindings() -> dict[str, int]:
        shell = _shell()
        return {} if shell is None else {k: id(v) for k, v in list(shell.user_ns.items())}

    # -- what is watched, as {name: (value, how to put a value back)} --------------------------
    def _take(self) -> dict[str, tuple[object, Callable]]:
        state: dict[str, tuple[object, Callable]] = {}
        for name in _MODULES:
            module = sys.modules.get(name)
            if module is None:
                continue
            state[f"sys.modules[{name!r}]"] = (module, partial(sys.modules.__setitem__, name))
            skip = _SKIP.get(name, ())
            for key, value in list(vars(module).items()):
                if key not in skip:
                    state[f"{name}.{key}"] = (value, partial(setattr, module, key))
        threading = sys.modules.get("threading")
        state["threading.setprofile hook"] = (getattr(threading, "_profile_hook", None),
                                              partial(setattr, threading, "_profile_hook"))
        state["sys.gettrace()"] = (sys.gettrace(), sys.settrace)
        state["sys.getprofile()"] = (sys.getprofile(), sys.setprofile)
        for module, cls in _CLASSES:
            klass = getattr(sys.modules.get(module), cls, None)
            if klass is not None:
                for key, value in list(vars(klass).items()):
                    state[f"{module}.{cls}.{key}"] = (value, partial(setattr, klass, key))
                state[f"{module}.{cls}"] = (klass, partial(setattr, sys.modules[module], cls))
        shell = _shell()
        if shell is not None:
            self._take_methods(state, "IPython's", shell, _SHELL_METHODS)
            for name in _SHELL_OBJECTS:
                state[f"IPython's {name}"] = (getattr(shell, name, None), partial(setattr, shell, name))
            compiler = getattr(shell, "compile", None)
            state["IPython's compile flags"] = (getattr(compiler, "flags", None), partial(setattr, compiler, "flags"))
            for name in _SHELL_LISTS:
                value = getattr(shell, name, None)
                state[f"IPython's {name}"] = (value, partial(setattr, shell, name))
                if isinstance(value, list):
                    state[f"IPython's {name} contents"] = (tuple(value), partial(_refill, value))
            callbacks = getattr(getattr(shell, "events", None), "callbacks", {}) or {}
            for event, funcs in callbacks.items():
                # matplotlib's inline backend registers its own when pyplot is first imported
                state[f"IPython's {event} callbacks"] = (tuple(f for f in funcs if not _inline_backend(f)),
                                                         partial(_refill_callbacks, funcs))
            kernel = getattr(shell, "kernel", None)
            if kernel is not None:
                self._take_methods(state, "the kernel's", kernel, _KERNEL_METHODS)
                handlers = getattr(kernel, "shell_handlers", None) or {}
                for key, value in handlers.items():
                    state[f"the kernel's {key} handler"] = (value, partial(handlers.__setitem__, key))
            for key in self.protected:
                state[f"the notebook's {key}"] = (shell.user_ns.get(key, _MISSING),
                                                  partial(shell.user_ns.__setitem__, key))
        return state

    @staticmethod
    def _take_methods(state: dict, owner: str, obj, names) -> None:
        """``obj``'s methods ``names``: on its class, and any instance attribute shadowing them."""
        for name in names:
            state[f"{owner} {name}"] = (getattr(type(obj), name, None), partial(setattr, type(obj), name))
            state[f"{owner} {name} (instance)"] = (vars(obj).get(name, _MISSING), partial(_set_instance, obj, name))

    # -- the three steps ----------------------------------------------------------------------
    def check(self, locked: bool) -> list[str]:
        now = self._take()
        changed = []
        for name, (value, _) in now.items():
            if name not in self.seen or _same(value, self.seen[name][0]):
                continue
            if _library_rewrap(name, value, self.seen[name][0]):
                self.original[name] = now[name]
            else:
                changed.append(name)
        changed += [name for name in self.seen if name not in now]
        # a class gained an attribute (Tensor.__eq__ defined on the Python class, say)
        changed += [name for name in now if name not in self.seen and name.count(".") >= 2
                    and any(name.startswith(f"{m}.{c}.") for m, c in _CLASSES)]
        self.seen = now
        if locked:
            self._protect()
        self.bindings = self._bindings()
        return sorted(set(_plain(n) for n in changed))

    def _protect(self) -> None:
        """Watch the modules, functions and classes the read-only cell just run bound (not the
        student's own functions, which a test may stand in for while it runs)."""
        shell = _shell()
        if shell is None:
            return
        import types
        hidden = getattr(shell, "user_ns_hidden", {})
        for key, value in list(shell.user_ns.items()):
            if key in hidden or self.bindings.get(key) == id(value):
                continue
            if isinstance(value, (types.ModuleType, types.FunctionType, type)) and key not in self.protected:
                self.protected[key] = value
                entry = (value, partial(shell.user_ns.__setitem__, key))
                self.original[f"the notebook's {key}"] = self.seen[f"the notebook's {key}"] = entry

    def restore(self) -> None:
        for name, (value, put_back) in self.original.items():
            if name in self.seen and _same(self.seen[name][0], value):
                continue
            try:
                put_back(value)
            except Exception:  # noqa: BLE001 -- what cannot be undone stays reported by the next check
                pass
        for module, cls in _CLASSES:  # attributes a class gained
            klass = getattr(sys.modules.get(module), cls, None)
            if klass is not None:
                for key in list(vars(klass)):
                    if f"{module}.{cls}.{key}" not in self.original:
                        try:
                            delattr(klass, key)
                        except (AttributeError, TypeError):
                            pass
        self.seen = self._take()


def _same(a, b) -> bool:
    """Identity; equality for plain numbers and strings (``compile.flags`` is a new int each time);
    for the tuples that stand for a list's contents, identity item by item."""
    if a is b:
        return True
    if type(a) in (int, float, str, bytes) and type(a) is type(b):
        return a == b
    return (type(a) is tuple and type(b) is tuple and len(a) == len(b)
            and all(x is y for x, y in zip(a, b)))


def _plain(name: str) -> str:
    return name.replace(" (instance)", "").replace(" contents", "")


def _refill(items: list, value: tuple) -> None:
    """Put a list's recorded contents back into that same list."""
    items[:] = value


def _refill_callbacks(funcs: list, value: tuple) -> None:
    """Put an event's recorded callbacks back, keeping those of matplotlib's inline backend."""
    funcs[:] = [*value, *(f for f in funcs if _inline_backend(f))]


def _inline_backend(func) -> bool:
    """``func`` is one of the functions of matplotlib's inline backend module (by identity)."""
    module = sys.modules.get("matplotlib_inline.backend_inline")
    return module is not None and any(func is v for v in vars(module).values())


def _library_rewrap(name: str, new, old) -> bool:
    """A library wrapping its own function, as ``torch._dynamo`` wraps ``torch.manual_seed`` when it
    is imported: the new value wraps the old one (``__wrapped__``) and its code lives in the package
    the attribute belongs to."""
    package = sys.modules.get(name.split(".")[0])
    code = getattr(new, "__code__", None)
    if getattr(new, "__wrapped__", None) is not old or code is None or package is None:
        return False
    folder = os.path.dirname(getattr(package, "__file__", None) or "") + os.sep
    return folder != os.sep and os.path.abspath(code.co_filename).startswith(folder)


def _set_instance(obj, name: str, value) -> None:
    """Restore an instance attribute (``_MISSING``: there was none; the class's method applies)."""
    if value is _MISSING:
        vars(obj).pop(name, None)
    else:
        vars(obj)[name] = value


def _shell():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


_GUARD: _Guard | None = None


def step(action: str, cell: str = "", locked: bool = False) -> str:
    """One step of the grader's watch (see the module docstring); returns JSON
    ``{"ok": true, "changed": [names]}``."""
    global _GUARD
    if action == "start" or _GUARD is None:
        _GUARD = _Guard()
        if action == "start":
            return json.dumps({"ok": True, "changed": []})
    if action == "restore":
        _GUARD.restore()
        return json.dumps({"ok": True, "changed": []})
    return json.dumps({"ok": True, "changed": _GUARD.check(locked)})
