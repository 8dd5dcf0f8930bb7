"""Malicious or accidental bad input at ingestion: refuse it early, with a reason, in bounded time.

Pure checks on paths, sizes and leading bytes; the loaders and the ingest call them:

- a file larger than ``RAGLOOP_INGEST_MAX_FILE_MB`` is refused before it is read;
- a symlink (or any path) that resolves outside the folder being ingested is not followed;
- archives (ZIP, gzip, tar, 7-Zip, RAR, bzip2, xz, zstd) are refused, by name or by content
  whatever their name: they are not unpacked;
- binary data under a text name (NUL bytes, or bytes no text encoding fits) is refused;
- UTF-16 and UTF-32 text (with a byte-order mark, or UTF-16 without one) is decoded as such, not
  refused for its NUL bytes;
- text that is not UTF-8 is decoded with the encoding charset-normalizer detects (ties between
  equally plausible single-byte encodings go to the most common one, Windows-1252 first, as
  browsers do for Latin-1), never by a Latin-1 fallback that turns a Windows-1252 euro sign into
  the control character U+0080;
- a PDF with more than ``RAGLOOP_INGEST_MAX_PDF_PAGES`` pages, objects nested too deeply, a stream
  that inflates past pypdf's decompression limit, or text extraction past
  ``RAGLOOP_INGEST_MAX_PARSE_S`` seconds is refused (the time is checked between pages).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Leading bytes of archive and compressed formats, and what to call them.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"PK\x03\x04", "ZIP archive"),
    (0, b"PK\x05\x06", "ZIP archive"),
    (0, b"\x1f\x8b", "gzip-compressed file"),
    (0, b"7z\xbc\xaf\x27\x1c", "7-Zip archive"),
    (0, b"Rar!\x1a\x07", "RAR archive"),
    (0, b"BZh", "bzip2-compressed file"),
    (0, b"\xfd7zXZ\x00", "xz-compressed file"),
    (0, b"\x28\xb5\x2f\xfd", "zstd-compressed file"),
    (257, b"ustar", "tar archive"),
)
#: Name endings of archives: reported when a folder holds them (they are never unpacked).
ARCHIVE_ENDINGS = (
    ".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".gz", ".bz2", ".xz",
    ".7z", ".rar", ".zst", ".jar", ".whl",
)  # fmt: skip
#: Single-byte encodings preferred, in order, among candidates charset-normalizer finds equally good.
_PREFERRED = ("utf_8", "cp1252", "iso8859_15", "cp1250", "cp1251", "cp1253", "cp1254", "latin_1")
#: C0/C1 control characters other than tab, line feed, form feed and carriage return.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
#: Share of control characters above which decoded "text" is binary data.
_MAX_CONTROL_SHARE = 0.01


class RefusedFile(Exception):
    """A file refused at ingestion; the message is the reason shown to the user."""


@dataclass(frozen=True)
class Limits:
    """Ingestion limits (from settings): bytes per file, PDF pages, parse seconds per file."""

    max_bytes: int = 50 * 2**20
    max_pdf_pages: int = 2000
    max_parse_s: float = 60.0


def limits_from(settings: Any) -> Limits:
    """The :class:`Limits` of ``settings`` (``ingest_max_file_mb``, ``..._pdf_pages``, ``..._parse_s``)."""
    return Limits(
        max_bytes=int(settings.ingest_max_file_mb * 2**20),
        max_pdf_pages=int(settings.ingest_max_pdf_pages),
        max_parse_s=float(settings.ingest_max_parse_s),
    )


def check_size(path: Path, limits: Limits) -> None:
    """Refuse a file larger than ``limits.max_bytes`` without reading it.

    Raises:
        RefusedFile: too large (the message gives both sizes and the setting).
    """
    size = path.stat().st_size
    if size > limits.max_bytes:
        raise RefusedFile(
            f"file is {size:,} bytes, over the {limits.max_bytes:,}-byte limit (RAGLOOP_INGEST_MAX_FILE_MB)"
        )


def outside_root(path: Path, root: Path) -> str | None:
    """Why ``path`` (found under ``root``) must not be read, or None when it stays inside.

    A symlink whose target, resolved, lies outside ``root`` would index files the user did not
    point at (``/etc/passwd``, another user's home): it is not followed.
    """
    real, real_root = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if real == real_root or real_root in real.parents:
        return None
    kind = "symlink" if path.is_symlink() else "path"
    return f"{kind} resolves to {real}, outside the folder {real_root}: not followed"


def archive_kind(name: str, head: bytes = b"") -> str | None:
    """``"ZIP archive"`` etc. when the leading bytes (or else the name) say archive; else None."""
    for offset, magic, kind in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return kind
    lower = name.lower()
    if any(lower.endswith(e) for e in ARCHIVE_ENDINGS):
        return "archive"
    return None


def refuse_archive(name: str, head: bytes) -> None:
    """Refuse archive content whatever the file is called.

    Raises:
        RefusedFile: the bytes are an archive or a compressed file.
    """
    kind = archive_kind("", head)
    if kind is not None:
        raise RefusedFile(f"is a {kind}, not a document: archives are not unpacked; extract it first")


def detect_encoding(data: bytes) -> str | None:
    """The most plausible text encoding of ``data`` (not UTF-8), or None when none fits (binary).

    charset-normalizer ranks candidates by "chaos" (mess in the decoded text) and coherence
    (language fit). Short texts often tie between single-byte code pages; a tie goes to the
    first of :data:`_PREFERRED` that produced the same decoding.
    """
    from charset_normalizer import from_bytes

    matches = list(from_bytes(data))
    if not matches:
        return None
    least = min(m.chaos for m in matches)
    near = [m for m in matches if m.chaos <= least + 0.01]
    best = max(m.coherence for m in near)
    near = [m for m in near if m.coherence >= best - 0.05]
    for preferred in _PREFERRED:
        for m in near:
            if preferred == m.encoding or preferred in m.could_be_from_charset:
                return preferred
    return str(near[0].encoding)


#: Byte-order marks of the wide Unicode encodings, UTF-32 first (its LE mark starts like UTF-16's).
_BOMS = (
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


def wide_unicode(data: bytes) -> str | None:
    """``"utf-16"``/``"utf-32"`` (BOM) or ``"utf-16-le"``/``"utf-16-be"`` (no BOM), else None.

    Windows editors save "Unicode" text as UTF-16 with a byte-order mark; without one, text that
    is mostly ASCII shows as a NUL byte in every other position (odd positions for little endian).
    Such text has NUL bytes by design, so it is recognised before the NUL check refuses binaries.
    """
    for bom, name in _BOMS:
        if data.startswith(bom):
            return name
    sample = data[:4096]
    half = len(sample) // 2
    if half < 4:
        return None
    even_nul = sample[0::2].count(0) / half
    odd_nul = sample[1::2].count(0) / half
    if odd_nul > 0.3 and even_nul < 0.02:
        return "utf-16-le"
    if even_nul > 0.3 and odd_nul < 0.02:
        return "utf-16-be"
    return None


def decode(data: bytes) -> str:
    """Text of a file: UTF-8 (BOM or not), UTF-16/32 (:func:`wide_unicode`), else the detected encoding.

    Raises:
        RefusedFile: binary data (NUL bytes, no encoding fits, or mostly control characters),
            or an archive.
    """
    refuse_archive("", data[:512])
    wide = wide_unicode(data)
    if wide is None and b"\x00" in data[:8192]:
        raise RefusedFile("looks like a binary file (NUL bytes), not text")
    try:
        text = data.decode(wide or "utf-8-sig")
        text = text.removeprefix("\ufeff")
    except UnicodeDecodeError:
        if wide is not None:
            raise RefusedFile(f"binary data, not text: it is not valid {wide}") from None
        encoding = detect_encoding(data)
        if encoding is None:
            raise RefusedFile("binary data, not text: no text encoding fits its bytes") from None
        text = data.decode(encoding, errors="replace")
    sample = text[:100_000]
    if sample and len(_CONTROL.findall(sample)) > _MAX_CONTROL_SHARE * len(sample):
        raise RefusedFile("binary data, not text: it is full of control characters")
    return text
