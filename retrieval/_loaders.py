"""Read files into :class:`Document` s: Markdown, reStructuredText, plain text, HTML and PDF.

Each loader turns bytes into text plus the format :func:`retrieval._chunking.split_document`
understands: HTML becomes Markdown-like text (its headings become ``#`` lines, so sections
survive), PDF becomes plain text. A file that cannot be read or parsed raises :class:`LoadError`
with a reason a user can act on.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class LoadError(Exception):
    """A file could not be turned into text; the message says why."""


@dataclass(frozen=True)
class Document:
    """A loaded file: its text, the format of that text ("md", "rst", "txt") and a title."""

    text: str
    fmt: str
    title: str = ""


def decode_text(data: bytes) -> str:
    """Decode a text file: UTF-8 (with or without BOM), else Latin-1; binary data is refused."""
    if b"\x00" in data[:8192]:
        raise LoadError("looks like a binary file (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        log.warning("not valid UTF-8, decoding as Latin-1")
        return data.decode("latin-1")


def load_markdown(data: bytes) -> Document:
    """A Markdown file."""
    return Document(decode_text(data), "md")


def load_rst(data: bytes) -> Document:
    """A reStructuredText file (including Sphinx ``.rst.txt`` sources)."""
    return Document(decode_text(data), "rst")


def load_text(data: bytes) -> Document:
    """A plain text file."""
    return Document(decode_text(data), "txt")


_BLOCK_TAGS = (
    "p", "div", "li", "pre", "tr", "br", "section", "article", "ul", "ol", "table", "blockquote",
    "dd", "dt", "dl", "main", "h1", "h2", "h3", "h4", "h5", "h6",
)  # fmt: skip
_NOISE_TAGS = ("script", "style", "nav", "noscript", "template", "svg", "head")


def html_to_markdown(html: str) -> tuple[str, str]:
    """Readable text of an HTML page with headings as ``#`` lines; returns ``(text, title)``."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup.find_all(_NOISE_TAGS):
        tag.decompose()
    for tag in soup.find_all(_BLOCK_TAGS):
        if tag.name and tag.name[0] == "h" and tag.name[1:].isdigit():
            text = tag.get_text(" ", strip=True)
            tag.replace_with(f"\n\n{'#' * int(tag.name[1:])} {text}\n\n")
        elif tag.name == "li":
            tag.insert_before("\n* ")
        else:
            tag.insert_before("\n\n" if tag.name != "br" else "\n")
            tag.insert_after("\n\n" if tag.name != "br" else "\n")
    text = soup.get_text()
    text = re.sub(r"[ \t\r\f\v]+", " ", text)
    text = re.sub(r" ?\n ?", "\n", text)
    return re.sub(r"\n{3,}", "\n\n", text).strip(), title


def load_html(data: bytes) -> Document:
    """An HTML page, turned into Markdown-like text."""
    text, title = html_to_markdown(decode_text(data))
    return Document(text, "md", title)


def load_pdf(data: bytes) -> Document:
    """A PDF's extracted text, pages separated by blank lines."""
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted PDF")
        pages = [(page.extract_text() or "").strip() for page in reader.pages]
        title = str(reader.metadata.title or "") if reader.metadata else ""
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise LoadError(f"corrupt PDF: {exc}") from exc
    if not any(pages):
        raise LoadError("PDF has no extractable text (scanned images?)")
    return Document("\n\n".join(p for p in pages if p), "txt", title)


#: File name endings and their loaders; longest ending wins (".rst.txt" is rst, not text).
LOADERS: dict[str, Callable[[bytes], Document]] = {
    ".md": load_markdown,
    ".markdown": load_markdown,
    ".rst": load_rst,
    ".rst.txt": load_rst,
    ".txt": load_text,
    ".text": load_text,
    ".html": load_html,
    ".htm": load_html,
    ".pdf": load_pdf,
}


def loader_for(path: Path) -> Callable[[bytes], Document] | None:
    """The loader for ``path`` by its name's ending, or None when the format is not supported."""
    name = path.name.lower()
    for ending in sorted(LOADERS, key=len, reverse=True):
        if name.endswith(ending):
            return LOADERS[ending]
    return None


def parse_document(path: Path, data: bytes) -> Document:
    """Parse the bytes of ``path`` with the loader for its format."""
    loader = loader_for(path)
    if loader is None:
        raise LoadError(f"unsupported format (supported: {', '.join(sorted(LOADERS))})")
    return loader(data)


def load_document(path: Path) -> Document:
    """Read and parse one file; raises :class:`LoadError` with the reason when that fails."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"unreadable: {exc.strerror or exc}") from exc
    return parse_document(path, data)
