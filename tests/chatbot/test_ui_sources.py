"""How the chat UI names a source: its document id ``root/path``, never a cache path."""

from __future__ import annotations

from chatbot._ui_render import document_url, source_path, sources_from_row, sources_markdown
from chatbot._ui_routes import passage_page

UPLOAD = {
    "index": 1,
    "text": "The observatory measures sulfur dioxide.",
    "score": 0.8,
    "source": "/root/.cache/ragloop/data/uploads/volcano.pdf",
    "doc_id": "uploads/volcano.pdf",
    "title": "Volcano observatory",
    "cited": True,
}


def test_a_source_is_named_and_linked_by_its_document_id() -> None:
    assert source_path(UPLOAD) == "uploads/volcano.pdf"
    assert document_url(UPLOAD["source"], UPLOAD["doc_id"]) == "/documents/uploads/volcano.pdf"
    text = sources_markdown([UPLOAD], "t1")
    assert "`uploads/volcano.pdf`" in text and "(/documents/uploads/volcano.pdf)" in text
    assert ".cache" not in text
    page = passage_page(UPLOAD, 1)
    assert 'href="/documents/uploads/volcano.pdf"' in page and ".cache" not in page


def test_sources_logged_before_the_id_fall_back_to_the_path_below_the_corpus() -> None:
    old = {"source": "/root/.cache/ragloop/corpora/python-docs/faq/library.rst.txt", "title": "Library FAQ"}
    assert source_path(old) == "faq/library.rst.txt"
    row = {"retrieved": [{**old, "chunk_id": "c1", "score": 0.5, "text": "x"}], "cited": [1]}
    assert sources_from_row(row)[0]["doc_id"] == ""
    row["retrieved"][0]["doc_id"] = "python-docs/faq/library.rst.txt"
    assert source_path(sources_from_row(row)[0]) == "python-docs/faq/library.rst.txt"
