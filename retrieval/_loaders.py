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
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from retrieval import _guard as guard

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
    """Decode a text file: UTF-8 (with or without BOM), else the encoding charset-normalizer detects.

    Binary data and archives are refused (:func:`retrieval._guard.decode`).
    """
    try:
        return guard.decode(data)
    except guard.RefusedFile as exc:
        raise LoadError(str(exc)) from None


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


def load_pdf(data: bytes, limits: guard.Limits | None = None) -> Document:
    """A PDF's extracted text, pages separated by blank lines, within ``limits`` (pages, seconds)."""
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError, PdfReadError

    limits = limits or guard.Limits()
    started = time.monotonic()
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError("encrypted PDF")
        if len(reader.pages) > limits.max_pdf_pages:
            raise LoadError(
                f"PDF has {len(reader.pages)} pages, over the limit of {limits.max_pdf_pages} "
                "(RAGLOOP_INGEST_MAX_PDF_PAGES)"
            )
        pages = []
        for page in reader.pages:
            pages.append((page.extract_text() or "").strip())
            if time.monotonic() - started > limits.max_parse_s:
                raise LoadError(
                    f"PDF text extraction took over {limits.max_parse_s:g} s "
                    f"(RAGLOOP_INGEST_MAX_PARSE_S) after {len(pages)} page(s): refused"
                )
        title = str(reader.metadata.title or "") if reader.metadata else ""
    except LoadError:
        raise
    except (LimitReachedError, RecursionError, PdfReadError, ValueError, KeyError, TypeError,
            AttributeError, OSError) as exc:  # fmt: skip
        raise LoadError(_pdf_reason(exc)) from exc
    if not any(pages):
        raise LoadError("PDF has no extractable text (scanned images?)")
    return Document("\n\n".join(p for p in pages if p), "txt", title)


def _pdf_reason(exc: BaseException) -> str:
    """Why pypdf failed, in words: a bomb (inflation, nesting) apart from plain corruption."""
    from pypdf.errors import LimitReachedError

    cause: BaseException | None = exc
    while cause is not None:  # pypdf wraps the root cause (PdfReadError from RecursionError)
        if isinstance(cause, LimitReachedError):
            return f"PDF stream inflates past the decompression limit (a PDF bomb?): {cause}"
        if isinstance(cause, RecursionError):
            return "PDF objects are nested too deeply (a PDF bomb?)"
        cause = cause.__cause__ or cause.__context__
    return f"corrupt PDF: {exc}"


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


def parse_document(path: Path, data: bytes, limits: guard.Limits | None = None) -> Document:
    """Parse the bytes of ``path`` with the loader for its format; archives are refused by content.

    PDFs are read within ``limits`` (pages, seconds; defaults of :class:`retrieval._guard.Limits`).
    """
    loader = loader_for(path)
    # A supported name with archive bytes (a ZIP renamed .md), or an archive's own name.
    if loader is None:  # by name, then said more precisely by content
        kind = guard.archive_kind(path.name, data[:512]) if guard.archive_kind(path.name) else None
    else:
        kind = guard.archive_kind("", data[:512])
    if kind is not None:
        what = "an archive" if kind == "archive" else f"a {kind}"
        raise LoadError(f"is {what}, not a document: archives are not unpacked; extract it first")
    if loader is None:
        raise LoadError(f"unsupported format (supported: {', '.join(sorted(LOADERS))})")
    if loader is load_pdf:
        return load_pdf(data, limits)
    return loader(data)


def load_document(path: Path, limits: guard.Limits | None = None) -> Document:
    """Read and parse one file; raises :class:`LoadError` with the reason when that fails."""
    limits = limits or guard.Limits()
    try:
        guard.check_size(path, limits)
        data = path.read_bytes()
    except guard.RefusedFile as exc:
        raise LoadError(str(exc)) from None
    except OSError as exc:
        raise LoadError(f"unreadable: {exc.strerror or exc}") from exc
    return parse_document(path, data, limits)
