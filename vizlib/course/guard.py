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
The grader zeroes a graded cell during which anything changed. A determined attacker who reads this
module could still subvert it from inside the process; the sandbox (:mod:`vizlib.course.sandbox`)
bounds what such code can reach, and the README states this trust model.
"""
from __future__ import annotations

import importlib
import json
import sys

_MODULES = ("builtins", "math", "operator", "sys", "torch", "torch.nn.functional", "torch.testing",
            "torch.linalg", "numpy", "numpy.testing", "numpy.linalg", "vizlib.course.checks")
#: imported before the originals are recorded: importing them replaces watched attributes
#: (``torch._dynamo`` wraps ``torch.manual_seed``), as any library import may do later
_SELF_PATCHING = ("torch._dynamo",)
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
        import matplotlib.pyplot  # noqa: F401 -- activates the inline backend (it registers callbacks)

        for name in (*_MODULES, *_SELF_PATCHING):
            try:
                importlib.import_module(name)
            except ImportError:
                pass
        self.protected: dict[str, object] = {}  # notebook names bound by read-only cells
        self.original = self._take()
        self.seen = dict(self.original)

    # -- what is watched, as {name: value} ---------------------------------------------------
    def _take(self) -> dict[str, object]:
        state: dict[str, object] = {}
        for name in _MODULES:
            module = sys.modules.get(name)
            if module is None:
                continue
            state[f"sys.modules[{name!r}]"] = module
            skip = _SKIP.get(name, ())
            for key, value in list(vars(module).items()):
                if key not in skip:
                    state[f"{name}.{key}"] = value
        state["threading.setprofile hook"] = getattr(sys.modules.get("threading"), "_profile_hook", None)
        state["sys.gettrace()"] = sys.gettrace()
        state["sys.getprofile()"] = sys.getprofile()
        for module, cls in _CLASSES:
            klass = getattr(sys.modules.get(module), cls, None)
            if klass is not None:
                for key, value in list(vars(klass).items()):
                    state[f"{module}.{cls}.{key}"] = value
                state[f"{module}.{cls}"] = klass
        shell = _shell()
        if shell is not None:
            for name in _SHELL_METHODS:
                state[f"IPython's {name}"] = getattr(type(shell), name, None)
                state[f"IPython's {name} (instance)"] = vars(shell).get(name, _MISSING)
            for name in _SHELL_OBJECTS:
                state[f"IPython's {name}"] = getattr(shell, name, None)
            state["IPython's compile flags"] = getattr(getattr(shell, "compile", None), "flags", None)
            for name in _SHELL_LISTS:
                value = getattr(shell, name, None)
                state[f"IPython's {name}"] = value
                state[f"IPython's {name} contents"] = tuple(value) if isinstance(value, list) else None
            callbacks = getattr(getattr(shell, "events", None), "callbacks", {}) or {}
            for event, funcs in callbacks.items():
                state[f"IPython's {event} callbacks"] = tuple(funcs)
            kernel = getattr(shell, "kernel", None)
            if kernel is not None:
                for name in _KERNEL_METHODS:
                    state[f"the kernel's {name}"] = getattr(type(kernel), name, None)
                    state[f"the kernel's {name} (instance)"] = vars(kernel).get(name, _MISSING)
                for key, value in (getattr(kernel, "shell_handlers", None) or {}).items():
                    state[f"the kernel's {key} handler"] = value
            ns = shell.user_ns
            for key, value in self.protected.items():
                state[f"the notebook's {key}"] = ns.get(key, _MISSING)
        return state

    # -- the three steps ----------------------------------------------------------------------
    def check(self, locked: bool) -> list[str]:
        now = self._take()
        changed = [name for name, value in now.items()
                   if name in self.seen and not _same(value, self.seen[name])]
        changed += [name for name in self.seen if name not in now]
        # a class gained an attribute (Tensor.__eq__ defined on the Python class, say)
        changed += [name for name in now if name not in self.seen and name.count(".") >= 2
                    and any(name.startswith(f"{m}.{c}.") for m, c in _CLASSES)]
        self.seen = now
        if locked:
            self._protect()
        return sorted(set(_plain(n) for n in changed))

    def _protect(self) -> None:
        shell = _shell()
        if shell is None:
            return
        import types
        hidden = getattr(shell, "user_ns_hidden", {})
        for key, value in list(shell.user_ns.items()):
            if key in hidden:
                continue
            if isinstance(value, (types.ModuleType, types.FunctionType, type)) and key not in self.protected:
                self.protected[key] = value
                self.original[f"the notebook's {key}"] = value
                self.seen[f"the notebook's {key}"] = value

    def restore(self) -> None:
        shell = _shell()
        for name, value in self.original.items():
            if _same(self.seen.get(name, _MISSING), value):
                continue
            _put_back(name, value, shell)
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


def _put_back(name: str, value, shell) -> None:
    """Undo one change recorded under ``name`` (best effort: what cannot be undone stays reported)."""
    try:
        if name.startswith("sys.modules["):
            sys.modules[name[len("sys.modules['"):-2]] = value
        elif name.startswith("the notebook's "):
            shell.user_ns[name[len("the notebook's "):]] = value
        elif name.startswith("IPython's ") and shell is not None:
            attr = name[len("IPython's "):]
            if attr.endswith(" callbacks"):
                shell.events.callbacks[attr[:-len(" callbacks")]][:] = list(value)
            elif attr.endswith(" contents"):
                getattr(shell, attr[:-len(" contents")])[:] = list(value)
            elif attr.endswith(" (instance)"):
                attr = attr[:-len(" (instance)")]
                if value is _MISSING:
                    vars(shell).pop(attr, None)
                else:
                    vars(shell)[attr] = value
            elif attr == "compile flags":
                shell.compile.flags = value
            elif attr in _SHELL_METHODS:
                setattr(type(shell), attr, value)
            else:
                setattr(shell, attr, value)
        elif name.startswith("the kernel's ") and shell is not None:
            kernel = shell.kernel
            attr = name[len("the kernel's "):]
            if attr.endswith(" handler"):
                kernel.shell_handlers[attr[:-len(" handler")]] = value
            elif attr.endswith(" (instance)"):
                attr = attr[:-len(" (instance)")]
                if value is _MISSING:
                    vars(kernel).pop(attr, None)
                else:
                    vars(kernel)[attr] = value
            else:
                setattr(type(kernel), attr, value)
        elif name == "sys.gettrace()":
            sys.settrace(value)
        elif name == "sys.getprofile()":
            sys.setprofile(value)
        elif name == "threading.setprofile hook":
            sys.modules["threading"]._profile_hook = value
        else:
            for module, cls in _CLASSES:
                prefix = f"{module}.{cls}."
                if name.startswith(prefix):
                    setattr(getattr(sys.modules[module], cls), name[len(prefix):], value)
                    return
            module, _, attr = name.rpartition(".")
            if module in sys.modules:
                setattr(sys.modules[module], attr, value)
    except Exception:  # noqa: BLE001 -- never let a restore break the grading
        pass


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
