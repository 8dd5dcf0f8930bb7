"""A passage as quotable units: prose sentences and whole code blocks (pure, no I/O).

The grounding gate's extractive answer quotes a passage sentence by sentence. Documentation
passages hold code: reStructuredText literal blocks (an indented block after a paragraph ending in
``:``) and Markdown fences. Split as prose, a code block became a "sentence" of flattened lines,
and a quote could stop right after "this is often faster :", before the code it introduces. Here a
code block is one unit, kept whole with its indentation (dedented), and a sentence that introduces
code travels with it (:func:`quote_groups`).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

_FENCE = re.compile(r"^\s*(```+|~~~+)\s*([\w+-]*)\s*$")
# Characters that make an indented block code rather than an indented paragraph.
_CODE_CHARS = re.compile(r"[()\[\]{}=<>:;#/\\]|^\s*>>>", re.MULTILINE)


@dataclass(frozen=True)
class Unit:
    """One sentence of prose, or one whole code block (``code``; ``lang`` from its fence, if any)."""

    text: str
    code: bool = False
    lang: str = ""


def _blocks(text: str) -> list[tuple[str, list[str], str]]:
    """(kind, lines, fence language) per block: ``prose``, ``indent`` (indented) or ``fence``."""
    blocks: list[tuple[str, list[str], str]] = []
    kind, fence, lang = "", "", ""
    cur: list[str] = []

    def close() -> None:
        nonlocal kind, cur
        while cur and not cur[-1].strip():
            cur.pop()
        if kind and cur:
            blocks.append((kind, cur, lang if kind == "fence" else ""))
        kind, cur = "", []

    for line in text.splitlines():
        if fence:
            if line.strip().startswith(fence):
                kind = "fence"
                close()
                fence = ""
            else:
                cur.append(line)
            continue
        m = _FENCE.match(line)
        if m:
            close()
            fence, lang, kind = m.group(1)[:3], m.group(2), "fence"
            continue
        if not line.strip():
            if kind == "indent":
                cur.append("")
            else:
                close()
            continue
        indented = line[:1] in (" ", "\t")
        if kind == "indent" and not indented:
            close()
        if kind:
            cur.append(line)
        else:
            kind, cur = ("indent" if indented else "prose"), [line]
    if fence:
        kind = "fence"
    close()
    return blocks


def passage_units(text: str) -> list[Unit]:
    r"""``text``'s prose sentences and code blocks, in order.

    An indented block is code when the paragraph before it ends with ``:`` or it looks like code
    (brackets, ``=``, ``>>>`` ...); otherwise it is an indented paragraph, read as prose.

    >>> [u.code for u in passage_units("Do this:\n\n   x = 1\n   if x:\n       y()\n\nDone. Really.")]
    [False, True, False, False]
    >>> passage_units("Do this:\n\n   if x:\n       y()")[1].text
    'if x:\n    y()'
    """
    from eval._text import split_sentences

    units: list[Unit] = []
    for kind, lines, lang in _blocks(text):
        body = "\n".join(lines)
        intro = bool(units) and not units[-1].code and units[-1].text.rstrip().endswith(":")
        if kind == "fence" or (kind == "indent" and (intro or _CODE_CHARS.search(body))):
            units.append(Unit(textwrap.dedent(body).strip("\n"), True, lang))
        else:
            joined = " ".join(line.strip() for line in lines)
            units.extend(Unit(" ".join(s.split())) for s in split_sentences(joined))
    return units


def quote_groups(units: list[Unit], start: int) -> list[list[Unit]]:
    """The units from ``start`` on, grouped so that a sentence keeps the code blocks right after it."""
    groups: list[list[Unit]] = []
    for unit in units[start:]:
        if unit.code and groups and (groups[-1][-1].code or groups[-1][-1].text.rstrip().endswith(":")):
            groups[-1].append(unit)
        else:
            groups.append([unit])
    return groups


def dangling(group: list[Unit]) -> bool:
    """Whether ``group`` ends on a sentence introducing something (``...:``) that it does not hold."""
    return not group[-1].code and group[-1].text.rstrip().endswith(":")


def render_quote(groups: list[list[Unit]], marker: str) -> str:
    """The quoted groups as a Markdown blockquote: prose joined, code fenced, ``marker`` at the end."""
    parts: list[str] = []
    prose: list[str] = []
    for unit in (u for g in groups for u in g):
        if unit.code:
            if prose:
                parts.append(" ".join(prose))
                prose = []
            parts.append(f"```{unit.lang}\n{unit.text}\n```")
        else:
            prose.append(unit.text)
    parts.append(" ".join([*prose, marker]))
    return "\n".join(f"> {line}" if line else ">" for line in "\n\n".join(parts).splitlines())
