from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from retrieval import LoadError, load_document
from retrieval._loaders import html_to_markdown, loader_for


def test_markdown_rst_and_text(docs_dir: Path) -> None:
    md = load_document(docs_dir / "cooking.md")
    assert md.fmt == "md" and "## Baking bread" in md.text
    rst = load_document(docs_dir / "astronomy.rst")
    assert rst.fmt == "rst" and "Jupiter" in rst.text
    txt = load_document(docs_dir / "gardening.txt")
    assert txt.fmt == "txt" and txt.text.startswith("Water tomato")


def test_sphinx_sources_are_rst_and_unknown_formats_refused(tmp_path: Path) -> None:
    assert loader_for(Path("library/os.rst.txt")) is loader_for(Path("x.rst"))
    assert loader_for(Path("a.TXT")) is not None and loader_for(Path("a.docx")) is None
    (tmp_path / "a.docx").write_bytes(b"PK\x03\x04")
    with pytest.raises(LoadError, match="unsupported format"):
        load_document(tmp_path / "a.docx")


def test_html_headings_become_sections_and_scripts_vanish(docs_dir: Path) -> None:
    doc = load_document(docs_dir / "birds.html")
    assert doc.fmt == "md" and doc.title == "Birds"
    assert "# Birds" in doc.text and "## Migration" in doc.text and "var x" not in doc.text
    text, _ = html_to_markdown("<ul><li>one <b>bold</b> item</li><li>two</li></ul>")
    assert text == "* one bold item\n* two"


def test_pdf_text(docs_dir: Path) -> None:
    doc = load_document(docs_dir / "cars.pdf")
    assert doc.fmt == "txt"
    assert "Electric cars charge their batteries from the grid." in doc.text and "400 km" in doc.text


def test_corrupt_pdf(tmp_path: Path, make_pdf: Callable[[Path, list[str]], Path]) -> None:
    (tmp_path / "bad.pdf").write_bytes(b"%PDF-1.4\nthis is not a pdf at all")
    with pytest.raises(LoadError, match="PDF"):
        load_document(tmp_path / "bad.pdf")
    good = make_pdf(tmp_path / "cut.pdf", ["some text"]).read_bytes()
    (tmp_path / "cut.pdf").write_bytes(good[: len(good) // 3])
    with pytest.raises(LoadError):
        load_document(tmp_path / "cut.pdf")


def test_unreadable_and_binary_files(tmp_path: Path) -> None:
    (tmp_path / "gone.md").symlink_to(tmp_path / "missing-target.md")
    with pytest.raises(LoadError, match="unreadable"):
        load_document(tmp_path / "gone.md")
    (tmp_path / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    with pytest.raises(LoadError, match="binary"):
        load_document(tmp_path / "blob.txt")
    (tmp_path / "latin.txt").write_bytes("café".encode("latin-1"))
    assert load_document(tmp_path / "latin.txt").text == "café"
