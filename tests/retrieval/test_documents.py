"""Documents users manage: names relative to the corpus root, uploads, listing, removal, serving.

Real embedded Chroma, the real embedder of the default settings, real files (a real PDF).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ragloop.settings import Settings
from retrieval import (
    Retriever,
    add_uploads,
    describe_source,
    ingest,
    list_documents,
    open_document,
    remove_document,
)
from retrieval._sources import split_doc_id
from retrieval._store import open_collection

from .conftest import DOCS, pdf_bytes


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    """A private data dir (uploads land in DATA_DIR/uploads)."""
    return Settings(data_dir=tmp_path / "data", collection="docs-tests")


def test_sources_are_named_relative_to_the_corpus_root(settings: Settings, docs_dir: Path) -> None:
    (docs_dir / "sub").mkdir()
    (docs_dir / "sub" / "deep.md").write_text("# Deep notes\n\nOwls hunt at night.\n")
    ingest([docs_dir], settings, progress=False)
    metas = open_collection(settings).get(include=["metadatas"])["metadatas"]
    by_path = {m["path"]: m for m in metas}
    assert set(by_path) == {
        "cooking.md",
        "astronomy.rst",
        "gardening.txt",
        "birds.html",
        "cars.pdf",
        "sub/deep.md",
    }
    assert all(m["root"] == "docs" for m in metas)
    assert by_path["sub/deep.md"]["doc_title"] == "Deep notes"
    assert by_path["birds.html"]["doc_title"] == "Birds"
    ref = describe_source(by_path["sub/deep.md"], settings)
    assert ref.label == "Deep notes (docs/sub/deep.md)" and ref.url == "/documents/docs/sub/deep.md"
    assert str(docs_dir) not in ref.label


def test_old_absolute_sources_are_mapped(settings: Settings) -> None:
    """Chunks of an index built before the root/path fields show no cache path either."""
    corpus = settings.cache_dir / "corpora" / "python-docs"
    legacy = {"source": str(corpus / "faq" / "programming.rst.txt"), "title": "Programming FAQ > Performance"}
    ref = describe_source(legacy, settings)
    assert ref.doc_id == "python-docs/faq/programming.rst.txt"
    assert ref.title == "Programming FAQ" and ".cache" not in ref.label


def test_upload_each_type_and_a_failing_file(settings: Settings, tmp_path: Path) -> None:
    retriever = Retriever(settings)  # opened before the upload: the same session must see it
    files = [(name, text.encode()) for name, text in DOCS.items()]
    files += [
        ("cars.pdf", pdf_bytes(["Electric cars charge their batteries from the grid."])),
        ("broken.pdf", b"%PDF-1.4\nthis is not a pdf at all"),
        ("tool.exe", b"MZ\x90\x00"),
        ("empty.md", b""),
        ("../../escape.md", b"# Escape\n\nZebras have stripes.\n"),
    ]
    results = add_uploads(settings, files)
    by_name = {r.name: r for r in results}
    for name in ("cooking.md", "astronomy.rst", "gardening.txt", "birds.html", "cars.pdf"):
        assert by_name[name].ok and by_name[name].chunks > 0, by_name[name]
        assert by_name[name].doc_id == f"uploads/{name}"
    assert not by_name["broken.pdf"].ok and "PDF" in by_name["broken.pdf"].reason
    assert not by_name["tool.exe"].ok and "unsupported" in by_name["tool.exe"].reason
    assert not by_name["empty.md"].ok and "empty" in by_name["empty.md"].reason
    # A name with directories is stored under its base name, inside the uploads folder only.
    assert by_name["../../escape.md"].ok and by_name["../../escape.md"].doc_id == "uploads/escape.md"
    assert not (tmp_path / "escape.md").exists()
    uploads = settings.data_dir / "uploads"
    assert not (uploads / "broken.pdf").exists()  # a failed upload leaves nothing behind
    hits = retriever.search("Which planet is the largest?", k=1).chunks
    assert "Jupiter" in hits[0].text and hits[0].metadata["path"] == "astronomy.rst"
    hits = retriever.search("How do electric cars charge?", k=1).chunks
    assert hits[0].metadata["path"] == "cars.pdf"
    listed = {d.doc_id: d for d in list_documents(settings)}
    assert set(listed) == {f"uploads/{n}" for n in (*DOCS, "cars.pdf", "escape.md")}
    assert listed["uploads/cooking.md"].chunks == by_name["cooking.md"].chunks
    assert listed["uploads/birds.html"].ref.title == "Birds"


def test_remove_a_document(settings: Settings) -> None:
    add_uploads(settings, [(n, t.encode()) for n, t in DOCS.items()])
    retriever = Retriever(settings)
    assert "Jupiter" in retriever.search("Which planet is the largest?", k=1).chunks[0].text
    before = open_collection(settings).metadata["ragloop_index_version"]
    removed = remove_document(settings, "uploads/astronomy.rst")
    assert removed > 0
    assert "uploads/astronomy.rst" not in {d.doc_id for d in list_documents(settings)}
    assert not (settings.data_dir / "uploads" / "astronomy.rst").exists()
    assert open_collection(settings).metadata["ragloop_index_version"] != before
    for mode in ("dense", "hybrid"):  # gone from Chroma and from the BM25 index
        hits = Retriever(settings).search("Jupiter largest planet moons", k=5, mode=mode).chunks
        assert all("astronomy" not in h.source for h in hits), mode
    with pytest.raises(KeyError):
        remove_document(settings, "uploads/astronomy.rst")


def test_open_document_serves_indexed_files_only(settings: Settings, docs_dir: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret.md"
    secret.write_text("# Secret\n\nThe password is swordfish.\n")
    inside = docs_dir / "inside-link.md"
    os.symlink(docs_dir / "cooking.md", inside)  # a symlink inside the root: indexed, never served
    ingest([docs_dir], settings, progress=False)
    (docs_dir / "later.md").write_text("# Later\n\nNot indexed yet.\n")
    assert open_document(settings, "docs/cooking.md") == docs_dir / "cooking.md"
    for doc_id in (
        "docs/later.md",  # in the folder, not indexed
        "docs/../secret.md",
        "docs/./cooking.md",
        "../secret.md",
        "/etc/passwd",
        "docs//cooking.md",
        "docs/inside-link.md",
        "docs/missing.md",
        "nowhere/cooking.md",
        str(docs_dir / "cooking.md"),
    ):
        assert open_document(settings, doc_id) is None, doc_id


def test_split_doc_id() -> None:
    assert split_doc_id("python-docs/faq/general.rst.txt") == ("python-docs", "faq/general.rst.txt")
    for bad in ("", "a", "a/../b", "/a/b", "a\\b/c", "a/b\x00", "a//b", "./a/b"):
        assert split_doc_id(bad) is None, bad
