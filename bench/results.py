"""bench/RESULTS.md is written in sections, each by the script that measured it."""
from __future__ import annotations


def put_block(current: str, key: str, text: str, title: str) -> str:
    """``current`` with ``text`` between ``<!-- key -->`` and ``<!-- /key -->`` (a new section
    ``title`` at the end when there is none); everything else is kept as it is."""
    start, end = current.find(f"<!-- {key} -->"), current.find(f"<!-- /{key} -->")
    block = f"<!-- {key} -->\n{text}\n<!-- /{key} -->"
    if start >= 0 and end > start:
        return current[:start] + block + current[end + len(f"<!-- /{key} -->"):]
    return current.rstrip("\n") + f"\n\n{title}\n\n{block}\n"
