"""Generic mutation operators: the mistakes any graded function can have, applied by machine.

The hand-written mutants of ``tests/mutants/`` are the mistakes someone thought of. These are the
ones nobody has to: each operator rewrites one *site* of a reference solution's syntax tree (or one
of its parameters) and the harness (:mod:`vizlib.course.mutants`) checks that the graded cells of
that part fail. A site whose change no test can see is either a gap in the tests or an equivalent
mutant; equivalents are declared, with the reason, in ``tests/mutants/<assignment>.toml``::

    [[equivalent]]
    cell = "train_step"
    operator = "flip_mode"
    where = "transformer"
    reason = "the text does not fix the transformer's mode"

Operators that work at run time (a cast, a resampling, a change to an argument) only *apply* when
the value has the right kind — a module for ``flip_mode``, a tensor for ``modify_argument`` — and
the harness reports a site that never met such a value as "does not apply" rather than as a
survivor. :data:`OPERATORS` lists the operators; :func:`sites` the mutants of one cell.
"""
from __future__ import annotations

import ast
import copy
from dataclasses import dataclass

#: operator -> the mistake it makes, as the report prints it
OPERATORS: dict[str, str] = {
    "float32_result": "the result is cast to float32 (dtype in != dtype out)",
    "resample_result": "a returned map is resampled to twice its size",
    "flip_mode": "a module argument is switched to the other train/eval mode and left there",
    "touch_weights": "a module argument's weights are changed in place",
    "freeze": "a module argument's parameters get requires_grad=False and keep it",
    "unfreeze": "requires_grad=True is set on a module's parameters or a tensor argument and left",
    "leave_hook": "a forward hook is left on a module argument",
    "leave_grad": "a .grad is left on a module's parameters or a tensor argument",
    "modify_argument": "a tensor argument (or the tensors of a dict argument) is changed in place",
    "ignore_argument": "a keyword argument is ignored: its default is used whatever the caller passes",
    "drop_call": "a call such as .detach(), .clone(), .clamp(), .abs(), float(...) is left out",
    "drop_context": "a `with torch.no_grad()` / `enable_grad()` block runs without its context",
    "drop_finally": "a `finally` block runs only when nothing raised",
    "reverse_loop": "a loop walks its items in reverse order",
    "by_position": "inside a loop over a dict, another dict is read by position instead of by key",
    "after_loop": "a statement of a loop body runs once, after the loop",
    "hoist_method": "a method applied inside a loop (clamp, detach ...) is applied once after it",
    "whole_batch": "a per-item reduction also reduces over the batch (dim 0)",
    "arith": "an arithmetic operator is swapped (+ -, * /, ** *)",
    "compare": "a comparison is swapped (< <=, > >=, == !=, is / is not)",
    "constant": "a number is changed by one (a dim, a bound, a scale)",
    "unary": "a unary minus or `not` is left out",
    "swap_args": "the first two positional arguments of a call are swapped",
    "keepdim": "keepdim= is flipped",
}

DROPPABLE_METHODS = {"detach", "clone", "clamp", "clamp_", "abs", "sign", "float", "double", "to",
                     "contiguous", "relu", "sqrt", "neg", "long", "cpu", "item", "tolist", "reshape",
                     "squeeze", "unsqueeze"}
DROPPABLE_FUNCTIONS = {"float", "int", "list", "tuple", "abs", "relu", "clamp", "sqrt", "sign"}
HOISTABLE = {"detach", "clone", "clamp", "clamp_", "abs", "sign", "float", "double", "requires_grad_"}
REDUCTIONS = {"sum", "mean", "amax", "amin", "std", "var", "prod", "logsumexp", "all", "any", "norm"}
CONTEXTS = {"no_grad", "enable_grad", "inference_mode", "set_grad_enabled"}
SKIPPED_PARAMETERS = {"self", "cls", "ctx"}
SWAP = {ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.Pow: ast.Mult,
        ast.FloorDiv: ast.Div, ast.Mod: ast.FloorDiv, ast.MatMult: ast.Mult}
COMPARE = {ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt, ast.Eq: ast.NotEq,
           ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is}

# What the mutated cells call at run time. ``_mut_state["applies"]`` records that a run-time
# operator met a value of its kind at least once (a site that never does "does not apply").
PRELUDE = '''
import torch as _mut_torch
_mut_state = {"applies": False}


def _mut_map(v, f):
    if isinstance(v, (tuple, list)):
        return type(v)(_mut_map(e, f) for e in v)
    return f(v)


def _mut_float32(v):
    def cast(t):
        if isinstance(t, _mut_torch.Tensor):
            _mut_state["applies"] = True
            return t.float()
        return t
    return _mut_map(v, cast)


def _mut_resample(v):
    def up(t):
        if isinstance(t, _mut_torch.Tensor) and t.is_floating_point() and t.ndim >= 3:
            _mut_state["applies"] = True
            h, w = t.shape[-2:]
            flat = t.detach().reshape(-1, 1, h, w)
            big = _mut_torch.nn.functional.interpolate(flat, size=(2 * h, 2 * w), mode="bilinear")
            return big.reshape(*t.shape[:-2], 2 * h, 2 * w).to(t.dtype)
        return t
    return _mut_map(v, up)


def _mut_module(p):
    ok = isinstance(p, _mut_torch.nn.Module)
    if ok:
        _mut_state["applies"] = True
    return ok


def _mut_tensor(p):
    ok = isinstance(p, _mut_torch.Tensor) and (p.is_floating_point() or p.dtype == _mut_torch.int64)
    if ok:
        _mut_state["applies"] = True
    return ok


def _mut_flip_mode(p):
    if _mut_module(p):
        p.train(not p.training)


def _mut_touch_weights(p):
    if _mut_module(p):
        with _mut_torch.no_grad():
            for q in p.parameters():
                q.add_(0.01)
                break


def _mut_freeze(p):
    if _mut_module(p):
        p.requires_grad_(False)


def _mut_float_leaf(p):
    ok = isinstance(p, _mut_torch.Tensor) and p.is_floating_point() and p.is_leaf
    if ok:
        _mut_state["applies"] = True
    return ok


def _mut_unfreeze(p):
    if _mut_module(p):
        p.requires_grad_(True)
    elif _mut_float_leaf(p):
        p.requires_grad_(True)


def _mut_leave_hook(p):
    if _mut_module(p):
        p.register_forward_hook(lambda *args: None)


def _mut_leave_grad(p):
    if _mut_module(p):
        for q in p.parameters():
            q.grad = _mut_torch.ones_like(q) if q.grad is None else q.grad + 1
    elif _mut_float_leaf(p):
        p.grad = _mut_torch.ones_like(p)


def _mut_modify(p):
    values = list(p.values()) if isinstance(p, dict) else [p]
    for t in values:
        if _mut_tensor(t):
            with _mut_torch.no_grad():
                t.add_(1 if t.dtype == _mut_torch.int64 else 0.125)


def _mut_whole(x, name, *args, **kwargs):
    result = getattr(x, name)(*args, **kwargs)
    dim = kwargs.get("dim", args[0] if args and not isinstance(args[0], float) else None)
    if not isinstance(x, _mut_torch.Tensor) or dim is None or x.ndim == 0 or name == "norm":
        return result
    dims = {d % x.ndim for d in ((dim,) if isinstance(dim, int) else dim)}
    if 0 in dims or not isinstance(result, _mut_torch.Tensor):
        return result
    _mut_state["applies"] = True
    kw = {k: v for k, v in kwargs.items() if k not in ("dim", "keepdim")}
    whole = getattr(x, name)(dim=tuple(sorted(dims | {0})), keepdim=True, **kw)
    if not kwargs.get("keepdim", False):
        whole = whole.squeeze(tuple(sorted(dims)))
    return whole.expand_as(result)


def _mut_by_position(other, loop, key):
    if isinstance(other, dict) and isinstance(loop, dict) and other is not loop:
        _mut_state["applies"] = True
        keys, values = list(loop), list(other.values())
        i = keys.index(key) if key in keys else -1
        if 0 <= i < len(values):
            return values[i]
    return other[key]
'''

#: operators that work at run time (and so may "not apply")
RUNTIME = {"float32_result", "resample_result", "flip_mode", "touch_weights", "freeze", "unfreeze",
           "leave_hook", "leave_grad", "modify_argument", "whole_batch", "by_position"}
RESULT_HELPERS = {"float32_result": "_mut_float32", "resample_result": "_mut_resample"}
PARAMETER_HELPERS = {"flip_mode": "_mut_flip_mode", "touch_weights": "_mut_touch_weights",
                     "freeze": "_mut_freeze", "unfreeze": "_mut_unfreeze", "leave_hook": "_mut_leave_hook",
                     "leave_grad": "_mut_leave_grad", "modify_argument": "_mut_modify"}


@dataclass(frozen=True)
class Site:
    """One generic mutant of a solution cell: ``operator`` (a key of :data:`OPERATORS`) applied
    at ``where`` (the code it changes, or the parameter), giving the cell ``source``."""
    cell: str
    operator: str
    where: str
    source: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.cell, self.operator, self.where

    @property
    def runtime(self) -> bool:
        return self.operator in RUNTIME


#: the kinds of argument (``vizlib.course.mutants._kind``) each argument operator can change: the
#: harness runs one only where the tests pass its parameter such a value ("does not apply" elsewhere)
APPLIES_TO = {"flip_mode": {"module"}, "touch_weights": {"module"}, "freeze": {"module"},
              "leave_hook": {"module"}, "unfreeze": {"module", "float-leaf"},
              "leave_grad": {"module", "float-leaf"}, "modify_argument": {"float-leaf", "tensor", "dict"}}


# ----------------------------------------------------------------------------------------
# Finding sites
# ----------------------------------------------------------------------------------------

def _parents(tree: ast.AST) -> dict[int, ast.AST]:
    return {id(child): node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _replace(parent: ast.AST, old: ast.AST, new) -> None:
    """Put ``new`` (a node or a list of statements) where ``old`` is in ``parent``."""
    for field, value in ast.iter_fields(parent):
        if value is old:
            setattr(parent, field, new)
            return
        if isinstance(value, list) and any(v is old for v in value):
            i = next(i for i, v in enumerate(value) if v is old)
            value[i:i + 1] = new if isinstance(new, list) else [new]
            return
    raise ValueError("node not found in its parent")


def _functions(tree: ast.Module) -> list[ast.FunctionDef]:
    """The cell's top-level functions and the methods of its top-level classes."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            out.append(node)
        elif isinstance(node, ast.ClassDef):
            out += [n for n in node.body if isinstance(n, ast.FunctionDef)]
    return out


def _text(node: ast.AST) -> str:
    text = ast.unparse(node).splitlines()[0]
    return text if len(text) <= 70 else text[:67] + "..."


def _call(name: str, *args: ast.expr, keywords=()) -> ast.Call:
    return ast.Call(func=ast.Name(name, ast.Load()), args=list(args), keywords=list(keywords))


def _in_loop(node: ast.AST, parents: dict[int, ast.AST]) -> bool:
    while id(node) in parents:
        node = parents[id(node)]
        if isinstance(node, (ast.For, ast.While)):
            return True
        if isinstance(node, (ast.FunctionDef, ast.Lambda)):
            return False
    return False


def _node_sites(tree: ast.Module):
    """Yield ``(operator, index of the node in ast.walk order, extra)`` for every syntax site."""
    parents = _parents(tree)
    for i, node in enumerate(ast.walk(tree)):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Attribute) and f.attr in DROPPABLE_METHODS:
                yield "drop_call", i, None
            elif isinstance(f, (ast.Name, ast.Attribute)) and node.args and \
                    (f.id if isinstance(f, ast.Name) else f.attr) in DROPPABLE_FUNCTIONS and \
                    (isinstance(f, ast.Name) or ast.unparse(f.value) in ("torch", "F", "torch.nn.functional")):
                yield "drop_call", i, None
            if isinstance(f, ast.Attribute) and f.attr in REDUCTIONS and (node.args or node.keywords):
                yield "whole_batch", i, None
            positional = [a for a in node.args if not isinstance(a, ast.Starred)]
            if len(positional) >= 2 and len(positional) == len(node.args) and \
                    ast.unparse(node.args[0]) != ast.unparse(node.args[1]):
                yield "swap_args", i, None
            for k in node.keywords:
                if k.arg == "keepdim" and isinstance(k.value, ast.Constant):
                    yield "keepdim", i, None
        elif isinstance(node, ast.With) and any(
                isinstance(item.context_expr, ast.Call) and isinstance(item.context_expr.func, ast.Attribute)
                and item.context_expr.func.attr in CONTEXTS for item in node.items):
            yield "drop_context", i, None
        elif isinstance(node, ast.Try) and node.finalbody:
            yield "drop_finally", i, None
        elif isinstance(node, ast.For):
            yield "reverse_loop", i, None
            if len(node.body) >= 2:
                for j, stmt in enumerate(node.body):
                    if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.Expr)):
                        yield "after_loop", i, j
        elif isinstance(node, ast.While) and len(node.body) >= 2:
            for j, stmt in enumerate(node.body):
                if isinstance(stmt, (ast.Assign, ast.AugAssign, ast.Expr)):
                    yield "after_loop", i, j
        elif isinstance(node, ast.Assign) and _in_loop(node, parents) and len(node.targets) == 1 and \
                isinstance(node.targets[0], ast.Name) and isinstance(node.value, ast.Call) and \
                isinstance(node.value.func, ast.Attribute) and node.value.func.attr in HOISTABLE:
            yield "hoist_method", i, None
        elif isinstance(node, (ast.BinOp, ast.AugAssign)) and type(node.op) in SWAP:
            yield "arith", i, None
        elif isinstance(node, ast.Compare):
            for j, op in enumerate(node.ops):
                if type(op) in COMPARE:
                    yield "compare", i, j
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
            yield "constant", i, None
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
            yield "unary", i, None
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and isinstance(node.slice, ast.Name):
            loop = _dict_loop(node, parents)
            if loop is not None and ast.unparse(loop) != node.value.id:
                yield "by_position", i, loop


def _dict_loop(node: ast.Subscript, parents) -> ast.expr | None:
    """The dict a loop walks, when ``node``'s key is that loop's key variable (``for k, v in
    d.items()``, ``for k in d``, ``for k in d.keys()``)."""
    key = node.slice.id
    cur = node
    while id(cur) in parents:
        cur = parents[id(cur)]
        if isinstance(cur, ast.For):
            target, it = cur.target, cur.iter
            names = [target] if isinstance(target, ast.Name) else \
                (list(target.elts) if isinstance(target, ast.Tuple) else [])
            if not names or not isinstance(names[0], ast.Name) or names[0].id != key:
                continue
            if isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute) and it.func.attr in ("items", "keys") \
                    and not it.args:
                return it.func.value
            if isinstance(it, ast.Name) and isinstance(target, ast.Name):
                return it
    return None


def _mutate_node(tree: ast.Module, operator: str, index: int, extra) -> str:
    """Apply ``operator`` at the ``index``-th node of ``tree`` (a copy); returns the site text."""
    parents = _parents(tree)
    node = list(ast.walk(tree))[index]
    parent = parents.get(id(node))
    where = _text(node)
    if operator == "drop_call":
        inner = node.func.value if isinstance(node.func, ast.Attribute) and node.func.attr in DROPPABLE_METHODS \
            and not (isinstance(node.func.value, ast.Name) and node.func.value.id in ("torch", "F")) else node.args[0]
        _replace(parent, node, inner)
    elif operator == "whole_batch":
        call = _call("_mut_whole", node.func.value, ast.Constant(node.func.attr), *node.args, keywords=node.keywords)
        _replace(parent, node, call)
    elif operator == "swap_args":
        node.args[0], node.args[1] = node.args[1], node.args[0]
    elif operator == "keepdim":
        k = next(k for k in node.keywords if k.arg == "keepdim")
        k.value = ast.Constant(not k.value.value)
    elif operator == "drop_context":
        _replace(parent, node, node.body)
        where = _text(node.items[0].context_expr)
    elif operator == "drop_finally":
        body = node.body + node.finalbody if not node.handlers else \
            [ast.Try(body=node.body, handlers=node.handlers, orelse=node.orelse, finalbody=[])] + node.finalbody
        _replace(parent, node, body)
        where = "finally: " + _text(node.finalbody[0])
    elif operator == "reverse_loop":
        node.iter = _call("reversed", _call("list", node.iter))
        where = f"for {ast.unparse(node.target)} in {ast.unparse(node.iter.args[0].args[0])}"
    elif operator == "after_loop":
        stmt = node.body.pop(extra)
        _replace(parent, node, [node, stmt])
        where = _text(stmt)
    elif operator == "hoist_method":
        call, name = node.value, node.targets[0].id
        node.value = call.func.value
        loop = node
        while not isinstance(loop, (ast.For, ast.While)):
            loop = parents[id(loop)]
        after = ast.Assign(targets=[ast.Name(name, ast.Store())],
                           value=ast.Call(ast.Attribute(ast.Name(name, ast.Load()), call.func.attr, ast.Load()),
                                          call.args, call.keywords))
        _replace(parents[id(loop)], loop, [loop, after])
    elif operator == "arith":
        node.op = SWAP[type(node.op)]()
    elif operator == "compare":
        node.ops[extra] = COMPARE[type(node.ops[extra])]()
    elif operator == "constant":
        node.value = node.value + 1
    elif operator == "unary":
        _replace(parent, node, node.operand)
    elif operator == "by_position":
        _replace(parent, node, _call("_mut_by_position", node.value, extra, node.slice))
    else:
        raise ValueError(f"unknown operator {operator!r}")
    return where


def _wrap_returns(fn: ast.FunctionDef, helper: str) -> None:
    """``return E`` -> ``return helper(E)`` for the returns of ``fn`` itself (not nested defs)."""
    stack = list(fn.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Return) and node.value is not None:
            node.value = _call(helper, node.value)
        if not isinstance(node, (ast.FunctionDef, ast.Lambda, ast.ClassDef)):
            stack += list(ast.iter_child_nodes(node))


def _parameters(fn: ast.FunctionDef) -> list[str]:
    args = fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs
    return [a.arg for a in args if a.arg not in SKIPPED_PARAMETERS]


def _defaults(fn: ast.FunctionDef) -> dict[str, ast.expr]:
    positional = fn.args.posonlyargs + fn.args.args
    out = dict(zip([a.arg for a in positional[len(positional) - len(fn.args.defaults):]], fn.args.defaults))
    out.update({a.arg: d for a, d in zip(fn.args.kwonlyargs, fn.args.kw_defaults) if d is not None})
    return out


def sites(cell: str, source: str) -> list[Site]:
    """Every generic mutant of the solution cell ``cell`` whose reference text is ``source``."""
    tree = ast.parse(source)
    out: list[Site] = []

    def emit(operator: str, where: str, mutated: ast.Module) -> None:
        ast.fix_missing_locations(mutated)
        body = ast.unparse(mutated)
        uses = "_mut_" in body
        out.append(Site(cell, operator, where, (PRELUDE + "\n\n" if uses else "") + body + "\n"))

    for operator, index, extra in list(_node_sites(tree)):
        mutated = copy.deepcopy(tree)
        where = _mutate_node(mutated, operator, index, extra)
        emit(operator, where, mutated)

    for k, fn in enumerate(_functions(tree)):
        prefix = f"{fn.name}: " if len(_functions(tree)) > 1 else ""
        if any(isinstance(n, ast.Return) and n.value is not None for n in ast.walk(fn)):
            for operator, helper in RESULT_HELPERS.items():
                mutated = copy.deepcopy(tree)
                _wrap_returns(_functions(mutated)[k], helper)
                emit(operator, prefix + "return", mutated)
        for param in _parameters(fn):
            for operator, helper in PARAMETER_HELPERS.items():
                mutated = copy.deepcopy(tree)
                f = _functions(mutated)[k]
                call = ast.Expr(_call(helper, ast.Name(param, ast.Load())))
                if operator == "flip_mode":          # at the start: it changes what the function computes too
                    f.body.insert(_docstring_end(f), call)
                else:                                # on the way out, however the function leaves
                    f.body[_docstring_end(f):] = [ast.Try(body=f.body[_docstring_end(f):], handlers=[],
                                                          orelse=[], finalbody=[call])]
                emit(operator, prefix + param, mutated)
        for param, default in _defaults(fn).items():
            mutated = copy.deepcopy(tree)
            f = _functions(mutated)[k]
            f.body.insert(_docstring_end(f), ast.Assign(targets=[ast.Name(param, ast.Store())],
                                                        value=copy.deepcopy(default)))
            emit("ignore_argument", prefix + param, mutated)

    # the same text at two sites: number them, so every site has its own name
    seen: dict[tuple[str, str], int] = {}
    named = []
    for s in out:
        n = seen[(s.operator, s.where)] = seen.get((s.operator, s.where), 0) + 1
        named.append(s if n == 1 else Site(s.cell, s.operator, f"{s.where} (#{n})", s.source))
    return named


def _docstring_end(fn: ast.FunctionDef) -> int:
    first = fn.body[0] if fn.body else None
    return 1 if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
        and isinstance(first.value.value, str) else 0
