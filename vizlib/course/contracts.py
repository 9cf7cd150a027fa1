"""Each graded function's contract: the clauses of its specification, each held by an assertion.

    vizlib check-assignments --contracts               # every clause of every graded function

A clause is a comment in the function's graded test cell (in its hidden part, where naming it
would not give the answer away), followed by the assertions that hold it::

    # clause dtype: the dtype of x (float64 in, float64 out)
    assert saliency_map(model, x64, [0]).dtype == torch.float64

or by the reason it does not apply::

    # clause per-item: n/a - one stack of layers

A clause's assertions are the lines after it, up to the next clause at the same or a lower indent
(so a clause may hold the clauses nested inside it). Every graded function must state a clause of
each :data:`REQUIRED` kind, each stated clause must be followed by an assertion (``assert``, an
``untouched(...)`` block, or an ``AssertionError``), and only :data:`KINDS` are known.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .mutants import program

#: kind -> what a clause of that kind promises
KINDS: dict[str, str] = {
    "values": "what it computes, on cases worked out by hand or by an independent float64 reference",
    "shape": "every returned shape and resolution",
    "dtype": "dtype in -> dtype out (or the type the text names)",
    "range": "the range of the values returned",
    "detached": "whether the result carries an autograd graph",
    "untouched": "what stays as it was: the caller's tensors, dicts, lists, the model's weights, flags, .grad, mode, hooks",
    "per-item": "each item of a batch on its own",
    "arguments": "every argument at values other than its default (and the defaults themselves)",
    "edge": "the edge cases the text names",
    "every-step": "what holds at every step of a loop, not only at the end",
    "by-name": "things matched by name (dict keys, module types, the earlier functions the text says to use)",
    "cleanup": "hooks removed, exceptions passed on",
    "layout": "tensors that are views (not contiguous)",
    "own-code": "the student's own code, not a call to vizlib's reference",
}
REQUIRED = ("values", "shape", "dtype", "untouched", "per-item", "arguments", "edge", "own-code")
CLAUSE = re.compile(r"^(?P<indent>[ \t]*)# clause (?P<kind>[a-z-]+): (?P<text>.*)$")
ASSERTS = ("assert ", "untouched(", "AssertionError")


@dataclass(frozen=True)
class Clause:
    function: str         # the solution cell's grade_id
    test: str             # the graded cell that holds it
    kind: str
    text: str
    held: bool            # followed by an assertion

    @property
    def not_applicable(self) -> bool:
        return self.text.startswith("n/a")


def clauses(assignment: str, root: Path) -> dict[str, list[Clause]]:
    """Every graded function of ``assignment`` and the clauses its test cells state, in order."""
    prog = program(assignment, root)
    sources = {gid: source for gid, kind, source in prog.cells if kind == "graded"}
    out: dict[str, list[Clause]] = {}
    for function, tests in prog.tests.items():
        found = out.setdefault(function, [])
        for test in tests:
            lines = sources[test].splitlines()
            stated = [(i, m) for i, m in ((i, CLAUSE.match(line)) for i, line in enumerate(lines)) if m]
            blocks = []
            for i, m in stated:
                indent, block = len(m["indent"].expandtabs()), []
                for later in lines[i + 1:]:
                    n = CLAUSE.match(later)
                    if n and len(n["indent"].expandtabs()) <= indent:
                        break
                    block.append(later)
                blocks.append(block)
            for k in range(len(blocks) - 2, -1, -1):      # clauses stacked on one block share it
                if not any(b.strip() for b in blocks[k]):
                    blocks[k] = blocks[k + 1]
            for (i, m), block in zip(stated, blocks):
                held = any(a in b for b in block for a in ASSERTS if not b.lstrip().startswith("#"))
                found.append(Clause(function, test, m["kind"], m["text"].strip(), held))
    return out


def problems(assignment: str, root: Path) -> list[str]:
    """What makes ``assignment``'s contracts incomplete: a required kind of clause missing, a
    clause with no assertion after it, a kind nobody knows."""
    out = []
    for function, found in clauses(assignment, root).items():
        kinds = {c.kind for c in found}
        for kind in REQUIRED:
            if kind not in kinds:
                out.append(f"{assignment}/{function}: no '{kind}' clause ({KINDS[kind]}); state it, "
                           f"or say why it does not apply ('# clause {kind}: n/a - ...')")
        for c in found:
            if c.kind not in KINDS:
                out.append(f"{assignment}/{function}: unknown kind of clause {c.kind!r} (known: {', '.join(KINDS)})")
            elif not c.not_applicable and not c.held:
                out.append(f"{assignment}/{function}: clause '{c.kind}: {c.text}' is followed by no assertion")
    return out


def format_contracts(assignment: str, root: Path) -> str:
    lines = [f"{assignment}:"]
    for function, found in clauses(assignment, root).items():
        held = sum(not c.not_applicable for c in found)
        lines.append(f"  {function}: {held} clauses held, {len(found) - held} do not apply")
        for c in found:
            lines.append(f"    {c.kind:10s} {c.text}")
    return "\n".join(lines)
