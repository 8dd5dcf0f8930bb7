"""Incremental ingestion against embedded Chroma and against a real `chroma run` server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ragloop.settings import Settings
from retrieval import Embedder, Retriever, ingest, open_collection


def _sources(settings: Settings) -> dict[str, int]:
    metas = open_collection(settings).get(include=["metadatas"])["metadatas"]
    counts: dict[str, int] = {}
    for m in metas:
        name = Path(str(m["source"])).name
        counts[name] = counts.get(name, 0) + 1
    return counts


def test_incremental_ingest(docs_dir: Path, store_settings: Settings, embedder: Embedder) -> None:
    first = ingest([docs_dir], store_settings, progress=False, embedder=embedder)
    assert first.files_seen == 5 and first.files_changed == 5 and not first.files_failed
    assert first.chunks_added == sum(_sources(store_settings).values()) > 5
    assert set(_sources(store_settings)) == {
        "cooking.md",
        "astronomy.rst",
        "gardening.txt",
        "birds.html",
        "cars.pdf",
    }
    retriever = Retriever(store_settings, embedder=embedder)
    v1 = retriever.index_version
    assert v1 == first.index_version and v1 != "empty"

    again = ingest([docs_dir], store_settings, progress=False, embedder=embedder)
    assert (again.chunks_added, again.chunks_updated, again.chunks_removed) == (0, 0, 0)
    assert again.chunks_unchanged == first.chunks_added and again.files_unchanged == 5
    assert not again.changed and retriever.index_version == v1

    # Change one section of one file: only that chunk is re-embedded, the file's others stay.
    md = docs_dir / "cooking.md"
    md.write_text(md.read_text().replace("three minutes", "four minutes"))
    (docs_dir / "gardening.txt").unlink()
    third = ingest([docs_dir], store_settings, progress=False, embedder=embedder)
    assert third.files_changed == 1 and third.files_removed == 1
    assert third.chunks_added == 1
    assert third.chunks_removed == 2  # the old tea chunk and the gardening chunk
    assert "gardening.txt" not in _sources(store_settings)
    assert retriever.index_version == third.index_version != v1
    hit = retriever.search("How long should tea steep?", k=1).chunks[0]
    assert "four minutes" in hit.text and hit.source == str(md)
    assert retriever.count() == first.chunks_added - 1


def test_failures_are_reported_and_the_rest_goes_in(
    docs_dir: Path, settings: Settings, embedder: Embedder, make_pdf: Callable[[Path, list[str]], Path]
) -> None:
    (docs_dir / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    (docs_dir / "dangling.md").symlink_to(docs_dir / "nowhere.md")
    report = ingest([docs_dir, docs_dir / "missing.txt"], settings, progress=False, embedder=embedder)
    failed = {Path(p).name: reason for p, reason in report.files_failed}
    assert set(failed) == {"broken.pdf", "dangling.md", "missing.txt"}
    assert "PDF" in failed["broken.pdf"] and "unreadable" in failed["dangling.md"]
    assert failed["missing.txt"] == "not found"
    assert report.files_ok == 5 and len(_sources(settings)) == 5
    assert "failed: " in report.summary() and "broken.pdf" in report.summary()


def test_ingesting_one_folder_leaves_another_alone(
    tmp_path: Path, settings: Settings, embedder: Embedder
) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "one.md").write_text("# One\n\nThe first folder's only document.\n")
    (b / "two.md").write_text("# Two\n\nThe second folder's only document.\n")
    ingest([a], settings, progress=False, embedder=embedder)
    report = ingest([b], settings, progress=False, embedder=embedder)
    assert report.chunks_removed == 0 and set(_sources(settings)) == {"one.md", "two.md"}


def test_incomplete_file_is_repaired(docs_dir: Path, settings: Settings, embedder: Embedder) -> None:
    """A file missing chunks (e.g. an interrupted ingest) is redone; only the missing chunk is embedded."""
    first = ingest([docs_dir], settings, progress=False, embedder=embedder)
    collection = open_collection(settings)
    md_ids = collection.get(where={"source": str(docs_dir / "cooking.md")})["ids"]
    assert len(md_ids) == 3
    collection.delete(ids=[md_ids[0]])
    repaired = ingest([docs_dir], settings, progress=False, embedder=embedder)
    assert (repaired.chunks_added, repaired.chunks_removed, repaired.files_changed) == (1, 0, 1)
    assert repaired.chunks_unchanged == first.chunks_added - 1
    assert repaired.index_version == first.index_version
