"""Split documents into chunks: by heading/section first, then by size with overlap. Pure functions.

A chunk never crosses a section boundary, so every chunk carries one heading path as its title
("Programming FAQ > Performance > My program is too slow"). The title is embedded together with
the text: in FAQ-style documents the heading is the question, and the answer alone embeds poorly.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from retrieval._rst import clean_rst, split_rst_sections

#: Formats :func:`split_document` understands. Loaders turn HTML into "md" and PDF into "txt".
FORMATS = ("md", "rst", "txt")
#: Separator between heading levels in a chunk title.
TITLE_SEP = " > "
# Split points tried in order when a section is too long: paragraphs, lines, sentences, words.
_SEPARATORS = ("\n\n", "\n", ". ", " ")
_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")


@dataclass(frozen=True)
class Chunk:
    """One piece of a document: its text, its section title path and its position in the document."""

    text: str
    title: str
    position: int

    @property
    def embed_text(self) -> str:
        """The text that is embedded: the title path, then the chunk text."""
        return f"{self.title}\n\n{self.text}" if self.title else self.text


def chunk_id(source: str, chunk: Chunk, occurrence: int = 0) -> str:
    """A stable id from the chunk's content: the same text under the same title in the same file.

    ``occurrence`` tells apart identical chunks repeated in one document.
    """
    h = hashlib.sha256(f"{source}\x00{chunk.title}\x00{chunk.text}\x00{occurrence}".encode())
    return h.hexdigest()[:32]


def markdown_sections(text: str) -> list[tuple[int, str, str]]:
    """Split Markdown into ``(level, title, body)`` on ATX (``#``) headings outside code fences."""
    sections: list[tuple[int, str, str]] = []
    level, title, body = 0, "", []  # type: tuple[int, str, list[str]]
    fence: str | None = None
    for line in text.splitlines():
        f = _FENCE.match(line)
        if f:
            fence = None if fence == f.group(1) else (fence or f.group(1))
        m = _ATX.match(line) if fence is None else None
        if m:
            sections.append((level, title, "\n".join(body)))
            level, title, body = len(m.group(1)), m.group(2).strip(), []
        else:
            body.append(line)
    sections.append((level, title, "\n".join(body)))
    return [s for s in sections if s[1] or s[2].strip()]


def _title_paths(sections: list[tuple[int, str, str]], doc_title: str) -> list[tuple[str, str]]:
    """Turn (level, title, body) into (heading path, body), e.g. "Guide > Install > Linux"."""
    stack: list[tuple[int, str]] = []
    out: list[tuple[str, str]] = []
    for level, title, body in sections:
        if level > 0:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
        path = [t for _, t in stack] if level > 0 else []
        if doc_title and (not path or path[0] != doc_title):
            path.insert(0, doc_title)
        out.append((TITLE_SEP.join(path), body))
    return out


def _pieces(text: str, size: int, seps: tuple[str, ...]) -> list[str]:
    """Cut ``text`` into pieces of at most ``size`` chars at the coarsest separator that works.

    The pieces concatenate back to ``text`` exactly (separators stay attached).
    """
    if len(text) <= size:
        return [text]
    if not seps:
        return [text[i : i + size] for i in range(0, len(text), size)]
    parts = text.split(seps[0])
    out: list[str] = []
    for i, part in enumerate(parts):
        piece = part + seps[0] if i < len(parts) - 1 else part
        out.extend([piece] if len(piece) <= size else _pieces(piece, size, seps[1:]))
    return out


def _tail(text: str, overlap: int) -> str:
    """The last ``overlap`` characters of ``text``, starting at a word boundary."""
    if overlap <= 0 or not text:
        return ""
    start = max(len(text) - overlap, 0)
    if start > 0 and not text[start - 1].isspace():
        space = re.search(r"\s", text[start:])
        if space is None:
            return ""
        start += space.end()
    return text[start:].lstrip()


def split_text(text: str, chunk_size: int, overlap: int) -> list[str]:
    """Split text into stripped pieces of at most ``chunk_size`` chars; neighbours share ~``overlap``.

    Cuts at paragraph breaks when possible, then lines, sentences, words; the overlap starts at a
    word boundary and is dropped when it would not fit with the next piece.
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be positive")
    chunks: list[str] = []
    cur = ""
    for piece in _pieces(text, chunk_size, _SEPARATORS):
        if len(cur) + len(piece) <= chunk_size:
            cur += piece
        elif not cur.strip():
            cur = piece
        else:
            chunks.append(cur)
            stripped = cur.rstrip()
            # Keep the separator the previous piece ended with, so the overlap reads naturally.
            tail = _tail(stripped, overlap) + (cur[len(stripped) :] or " ")
            cur = tail + piece if tail.strip() and len(tail) + len(piece) <= chunk_size else piece
    chunks.append(cur)
    return [c.strip() for c in chunks if c.strip()]


def split_document(
    text: str, fmt: str, chunk_size: int = 700, overlap: int = 100, doc_title: str = ""
) -> list[Chunk]:
    """Split a document into chunks with section titles.

    Args:
        text: The document text.
        fmt: ``"md"``, ``"rst"`` or ``"txt"`` (see :data:`FORMATS`).
        chunk_size: Maximum characters of chunk text (the title comes on top).
        overlap: Characters neighbouring chunks of one section share.
        doc_title: Prefix of every title path when the document's own headings do not start with it.

    Returns:
        Chunks in document order, ``position`` counting from 0.
    """
    if fmt == "rst":
        sections = [(lvl, title, clean_rst(body)) for lvl, title, body in split_rst_sections(text)]
        sections = [(lvl, clean_rst(title), body) for lvl, title, body in sections]
    elif fmt == "md":
        sections = markdown_sections(text)
    elif fmt == "txt":
        sections = [(0, "", text)]
    else:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    chunks: list[Chunk] = []
    for title, body in _title_paths(sections, doc_title):
        for piece in split_text(body, chunk_size, overlap):
            chunks.append(Chunk(text=piece, title=title, position=len(chunks)))
    return chunks


def chunk_ids(source: str, chunks: list[Chunk]) -> list[str]:
    """Ids for all chunks of one document, numbering repeats of identical chunks."""
    seen: dict[tuple[str, str], int] = {}
    ids = []
    for c in chunks:
        n = seen.get((c.title, c.text), 0)
        seen[(c.title, c.text)] = n + 1
        ids.append(chunk_id(source, c, n))
    return ids
