"""reStructuredText, just enough for retrieval: section titles and readable section bodies.

Pure functions on strings. No docutils: Sphinx sources are full of directives and roles that
docutils cannot resolve on its own, and all we need is the heading structure and plain text that
embeds well (``:func:`~os.path.join``` reads as ``join``; ``.. index::`` blocks vanish).
"""

from __future__ import annotations

import re

#: Characters rst allows for section adornments.
_ADORNMENT = set("=-`:'\"~^_*+#<>.!$%&(),/;?@[\\]{|}")

# Directives whose whole block is navigation or markup noise for a reader of the text.
_DROP = frozenset(
    "index toctree highlight sectionauthor moduleauthor contents tabularcolumns raw include image "
    "figure testsetup testcleanup literalinclude audit-event currentmodule default-role role program "
    "productionlist".split()
)
# Object descriptions: the argument (a signature) is the useful text.
_SIGNATURE = frozenset(
    "function method class attribute data exception decorator decoratormethod classmethod staticmethod "
    "abstractmethod coroutinefunction coroutinemethod awaitablefunction awaitablemethod describe opcode "
    "cmdoption option envvar pdbcommand c:function c:macro c:type c:member c:var property".split()
)
_LABELS = {
    "note": "Note:",
    "warning": "Warning:",
    "caution": "Caution:",
    "important": "Important:",
    "tip": "Tip:",
    "hint": "Hint:",
    "seealso": "See also:",
    "versionadded": "Added in version",
    "versionchanged": "Changed in version",
    "deprecated": "Deprecated since version",
    "deprecated-removed": "Deprecated since version",
    "impl-detail": "CPython implementation detail:",
    "module": "Module",
}

_DIRECTIVE = re.compile(r"^(\s*)\.\.\s+([\w:-]+)::\s*(.*)$")
_EXPLICIT = re.compile(r"^(\s*)\.\.(\s|$)")  # comments, targets, substitutions, footnotes
_OPTION = re.compile(r"^\s+:[\w-]+:")
_FIELD = re.compile(r"^:[\w-]+:(\s|$)")
_ROLE = re.compile(r":(?:[\w-]+:)*([\w-]+):`([^`]+)`")
_LITERAL = re.compile(r"``(.+?)``")
_LINK = re.compile(r"`([^`<]+?)\s*<[^>`]*>`__?")
_REF = re.compile(r"`([^`]+)`__?")
_INTERPRETED = re.compile(r"`([^`]+)`")
_FOOTNOTE_REF = re.compile(r"\s?\[(?:#\w*|\d+|\*)\]_")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")


def _adornment(line: str) -> str | None:
    """The adornment character when ``line`` is a section over/underline, else None."""
    s = line.rstrip()
    if len(s) < 2 or s[0] not in _ADORNMENT or s.strip(s[0]) or line[:1].isspace():
        return None
    return s[0]


def split_rst_sections(text: str) -> list[tuple[int, str, str]]:
    """Split rst into ``(level, title, body)`` sections; level 0 is text before the first title.

    Levels follow the order in which adornment styles first appear, as in docutils.
    """
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []
    sections: list[tuple[int, str, str]] = []
    level, title, body = 0, "", []  # type: tuple[int, str, list[str]]
    i, n = 0, len(lines)
    while i < n:
        found = _title_at(lines, i)
        if found is None:
            body.append(lines[i])
            i += 1
            continue
        style, heading, width = found
        sections.append((level, title, "\n".join(body)))
        if style not in styles:
            styles.append(style)
        level, title, body = styles.index(style) + 1, heading, []
        i += width
    sections.append((level, title, "\n".join(body)))
    return [s for s in sections if s[1] or s[2].strip()]


def _title_at(lines: list[str], i: int) -> tuple[tuple[str, bool], str, int] | None:
    """A section title starting at line ``i``: (style, title, lines consumed), or None."""
    over = _adornment(lines[i])
    if over and i + 2 < len(lines) and lines[i + 1].strip() and _adornment(lines[i + 2]) == over:
        return (over, True), lines[i + 1].strip(), 3
    if i + 1 >= len(lines) or not lines[i].strip() or lines[i][:1].isspace():
        return None
    if i > 0 and lines[i - 1].strip() and not _adornment(lines[i - 1]):
        return None  # a title starts a block: the line before must be blank
    under = _adornment(lines[i + 1])
    heading = lines[i].strip()
    if under is None or len(lines[i + 1].rstrip()) < min(len(heading), 3):
        return None
    if _adornment(lines[i]) or lines[i].lstrip().startswith(".."):
        return None
    return (under, False), heading, 2


def _role(m: re.Match[str]) -> str:
    name, inner = m.group(1), m.group(2)
    target = re.match(r"(.*?)\s*<([^>]*)>$", inner, re.S)
    if target:
        return target.group(1) or target.group(2)
    if name in {"pep", "rfc"}:
        return f"{name.upper()} {inner}"
    if inner.startswith("~"):
        inner = inner[1:].rsplit(".", 1)[-1]
    return inner.lstrip("!")


def clean_inline(text: str) -> str:
    """Turn rst inline markup into plain text: roles, literals, links, footnote references."""
    text = _ROLE.sub(_role, text)
    text = _LITERAL.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _REF.sub(r"\1", text)
    text = _INTERPRETED.sub(r"\1", text)
    text = _FOOTNOTE_REF.sub("", text)
    return _STRONG.sub(r"\1", text)


def _directive_line(name: str, arg: str, indent: str) -> str | None:
    """What a directive's first line becomes in plain text (None: nothing)."""
    if name in _SIGNATURE:
        return f"{indent}{arg}" if arg else None
    label = _LABELS.get(name)
    if label:
        return f"{indent}{label} {arg}".rstrip()
    if name in {"code-block", "sourcecode", "code", "doctest", "testcode", "testoutput", "only"}:
        return None
    return f"{indent}{arg}" if arg else None


def _block_end(lines: list[str], start: int, indent: int) -> int:
    """Index after the block of lines indented deeper than ``indent`` (blank lines included)."""
    j = start
    while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
        j += 1
    return j


def clean_rst(text: str) -> str:
    """Plain text of an rst section body: noisy directives dropped, the others reduced to their text."""
    lines = text.splitlines()
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        m = _DIRECTIVE.match(line)
        if m:
            indent, name, arg = m.group(1), m.group(2).lower(), m.group(3)
            i += 1
            while i < len(lines) and _OPTION.match(lines[i]):
                i += 1  # directive options (:maxdepth: 2, :noindex:, ...)
            if name in _DROP:
                i = _block_end(lines, i, len(indent))
                continue
            first = _directive_line(name, arg, indent)
            if first is not None:
                out.append(first)
            continue
        if _EXPLICIT.match(line):  # comment, hyperlink target, substitution definition
            i = _block_end(lines, i + 1, len(line) - len(line.lstrip()))
            continue
        if _FIELD.match(line) and not any(o.strip() for o in out):
            i += 1  # document-level fields (:tocdepth: 2, :orphan:) are build settings
            continue
        if line.strip() == "::":
            i += 1
            continue
        out.append(line[:-1] if line.endswith("::") else line)
        i += 1
    cleaned = clean_inline("\n".join(out))
    return re.sub(r"\n{3,}", "\n\n", cleaned).strip()
