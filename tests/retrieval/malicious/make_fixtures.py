"""Malicious and accidental bad documents for ingestion tests (issue 12, "Bad input").

Run ``python tests/retrieval/malicious/make_fixtures.py`` to (re)write the small committed fixtures
beside this file. The large ones (a file over the size cap, a PDF bomb that inflates past pypdf's
limit) are made at test time by :func:`write_large` into a temp folder, so no big binary is committed.

Every function is deterministic (fixed seeds, fixed ZIP timestamps).
"""

from __future__ import annotations

import io
import random
import sys
import zipfile
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Windows-1252 text: "€" is byte 0x80 there, U+0080 (a C1 control) under a Latin-1 fallback.
CP1252_TEXT = (
    "# Tarifs\n\nLe café coûte 2 € et le thé 3 €. Voilà « tout » : l'abonnement annuel revient à 120 €.\n"
)


def pdf(objects: list[bytes]) -> bytes:
    """A PDF file of ``objects`` (object 1 is the catalog) with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n".encode() + obj + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    out.write(b"".join(f"{o:010d} 00000 n \n".encode() for o in offsets))
    trailer = f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    out.write(trailer.encode())
    return out.getvalue()


def _stream(content: bytes, compress: bool = False) -> bytes:
    if compress:
        data = zlib.compress(content, 9)
        return f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream"
    return f"<< /Length {len(content)} >>\nstream\n".encode() + content + b"\nendstream"


_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def pdf_pages(n: int) -> bytes:
    """A valid PDF of ``n`` pages, each with one line of text (pages share one font object)."""
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    font_id = 3 + 2 * n
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode()]
    for i in range(n):
        page = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>"
        )
        objects.append(page.encode())
        objects.append(_stream(f"BT /F1 12 Tf 72 720 Td (Page {i + 1} of a long report) Tj ET".encode()))
    objects.append(_FONT)
    return pdf(objects)


def pdf_nested(depth: int = 20_000) -> bytes:
    """A one-page PDF whose page dictionary holds an array nested ``depth`` levels deep."""
    deep = b"[" * depth + b"]" * depth
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Deep " + deep
    page += b" /Resources << /Font << /F1 5 0 R >> >> >>"
    return pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            page,
            _stream(b"BT /F1 12 Tf 72 720 Td (nested) Tj ET"),
            _FONT,
        ]
    )


def pdf_bomb(inflated_mb: int = 260) -> bytes:
    """A one-page PDF whose content stream inflates to ``inflated_mb`` MB (about 0.2% of it compressed)."""
    content = b"BT (a) Tj ET\n" * (inflated_mb * 2**20 // 13)
    return pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
            b"/Resources << /Font << /F1 5 0 R >> >> >>",
            _stream(content, compress=True),
            _FONT,
        ]
    )


def binary_junk(n: int = 4096, seed: int = 12) -> bytes:
    """Bytes with no NUL that no text encoding fits (what a renamed binary looks like past its header)."""
    rng = random.Random(seed)
    return bytes(rng.randrange(1, 256) for _ in range(n))


def zip_archive() -> bytes:
    """A ZIP holding one Markdown file (fixed timestamp, so the bytes never change)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo("inside.md", date_time=(2026, 1, 1, 0, 0, 0))
        zf.writestr(info, "# Inside\n\nText that only an unpacker would see.\n" * 20)
    return out.getvalue()


def small() -> dict[str, bytes]:
    """The small fixtures, by file name."""
    return {
        "cp1252.md": CP1252_TEXT.encode("cp1252"),
        "junk.md": binary_junk(),
        "archive.md": zip_archive(),
        "archive.zip": zip_archive(),
        "nested.pdf": pdf_nested(),
        "pages-40.pdf": pdf_pages(40),
    }


def write_large(folder: Path, max_file_mb: float) -> dict[str, Path]:
    """Write the large fixtures into ``folder``; returns kind -> path.

    ``huge.md`` is valid Markdown just over ``max_file_mb``; ``bomb.pdf`` inflates past pypdf's limit.
    """
    folder.mkdir(parents=True, exist_ok=True)
    huge = folder / "huge.md"
    line = "Plain words repeated to make a large but valid Markdown file.\n"
    huge.write_text("# Huge\n\n" + line * (int(max_file_mb * 2**20) // len(line) + 100))
    bomb = folder / "bomb.pdf"
    bomb.write_bytes(pdf_bomb())
    return {"huge": huge, "pdf_bomb_inflate": bomb}


def main() -> None:
    """Write :func:`small` beside this file."""
    for name, data in small().items():
        (HERE / name).write_bytes(data)
        print(f"{name}: {len(data)} bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
