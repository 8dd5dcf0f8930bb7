from __future__ import annotations

import pytest

from retrieval import split_document, split_text
from retrieval._chunking import Chunk, chunk_id, chunk_ids, markdown_sections


def test_split_text_known_values_with_word_overlap() -> None:
    assert split_text("aaa bbb ccc ddd eee fff", 11, 4) == ["aaa bbb", "bbb ccc", "ccc ddd", "ddd eee fff"]


def test_split_text_without_overlap_never_exceeds_size() -> None:
    assert split_text("x" * 25, 10, 0) == ["x" * 10, "x" * 10, "x" * 5]
    text = "Lorem ipsum dolor sit amet. " * 80
    chunks = split_text(text, 120, 30)
    assert all(len(c) <= 120 for c in chunks)
    assert chunks[0].startswith("Lorem") and len(chunks) > 15


def test_split_text_short_and_empty() -> None:
    assert split_text("  short  ", 700, 100) == ["short"]
    assert split_text("\n\n  \n", 700, 100) == []
    with pytest.raises(ValueError):
        split_text("x", 0, 0)


def test_split_text_prefers_paragraph_breaks() -> None:
    para = "word " * 30  # 150 chars
    chunks = split_text(f"{para}\n\n{para}\n\n{para}", 200, 0)
    assert chunks == [para.strip()] * 3


def test_markdown_headings_ignore_code_fences() -> None:
    md = "Intro.\n\n# Guide\n\nText A.\n\n## Install\n\n```\n# not a heading\n```\n\nText B.\n\n# Other\n\nText C.\n"
    assert split_document(md, "md", 100, 10) == [
        Chunk("Intro.", "", 0),
        Chunk("Text A.", "Guide", 1),
        Chunk("```\n# not a heading\n```\n\nText B.", "Guide > Install", 2),
        Chunk("Text C.", "Other", 3),
    ]
    assert [s[:2] for s in markdown_sections(md)] == [(0, ""), (1, "Guide"), (2, "Install"), (1, "Other")]


def test_rst_sections_titles_and_cleanup() -> None:
    rst = (
        "Guide\n=====\n\nText A.\n\nInstall\n-------\n\nUse :func:`~os.path.join` and ``pip``.\n\n"
        ".. index:: pip\n\n.. note:: Be careful.\n\nOther\n=====\n\nText C.\n"
    )
    assert split_document(rst, "rst", 100, 10) == [
        Chunk("Text A.", "Guide", 0),
        Chunk("Use join and pip.\n\nNote: Be careful.", "Guide > Install", 1),
        Chunk("Text C.", "Other", 2),
    ]


def test_txt_uses_document_title_and_sizes() -> None:
    chunks = split_document("alpha beta gamma delta", "txt", 11, 0, doc_title="notes")
    assert [(c.title, c.text, c.position) for c in chunks] == [
        ("notes", "alpha beta", 0),
        ("notes", "gamma delta", 1),
    ]
    assert chunks[0].embed_text == "notes\n\nalpha beta"
    with pytest.raises(ValueError):
        split_document("x", "docx", 10, 0)


def test_chunk_ids_are_content_hashes() -> None:
    a, b = Chunk("same", "T", 0), Chunk("same", "T", 5)
    assert chunk_id("f.md", a) == chunk_id("f.md", b)  # position is not content
    assert chunk_id("f.md", a) != chunk_id("g.md", a)
    assert chunk_id("f.md", a) != chunk_id("f.md", Chunk("other", "T", 0))
    ids = chunk_ids("f.md", [a, b])
    assert len(set(ids)) == 2 and ids[0] == chunk_id("f.md", a) and len(ids[0]) == 32
