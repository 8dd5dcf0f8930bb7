"""The indexed documents as users manage them: upload, list, remove, and open one read-only.

- :func:`add_uploads` copies uploaded files into ``DATA_DIR/uploads`` and ingests them (root
  ``uploads``): they are searchable as soon as it returns (same Chroma, BM25 caught up). A file
  that fails keeps nothing behind and is reported with its reason.
- :func:`list_documents` groups the index by document: id, title, chunk count.
- :func:`remove_document` deletes a document's chunks from Chroma, catches the BM25 index up and
  re-stamps the index version (so caches see the change); an uploaded file is deleted too.
- :func:`open_document` resolves a requested ``root/path`` to the file the index holds, and only
  that: the id must name an indexed document exactly, and the file must be a regular file that is
  not reached through a symlink. Anything else is None (the route answers 404).
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ragloop.settings import Settings
from retrieval._sources import UPLOADS, SourceRef, describe, known_roots, split_doc_id, uploads_dir

log = logging.getLogger(__name__)

_SAFE_NAME = re.compile(r"[^\w.\- ]+")
_PAGE = 5000
_write_lock = threading.Lock()


@dataclass(frozen=True)
class FileResult:
    """What happened to one uploaded file: ``ok``, its document id, chunks added, or the reason."""

    name: str
    ok: bool
    doc_id: str = ""
    chunks: int = 0
    reason: str = ""


@dataclass(frozen=True)
class IndexedDocument:
    """One indexed document: how users see it, its chunk count and its source file."""

    ref: SourceRef
    chunks: int
    source: str

    @property
    def doc_id(self) -> str:
        """``root/path``."""
        return self.ref.doc_id


def safe_name(name: str) -> str:
    """The base name of an uploaded file, without directories or odd characters (never empty)."""
    base = os.path.basename(name.replace("\\", "/")).strip().lstrip(".")
    return _SAFE_NAME.sub("_", base)[:200] or "upload"


def add_uploads(
    settings: Settings,
    files: list[tuple[str, bytes]],
    on_progress: Callable[[str, int, int], None] | None = None,
    embedder: Any = None,
) -> list[FileResult]:
    """Store and ingest uploaded files; one :class:`FileResult` per file, in order.

    Args:
        settings: the index to add to (the app's settings).
        files: ``(file name, content)`` pairs; the name's ending picks the loader (md, rst, txt,
            html, pdf).
        on_progress: ``(step, done, total)`` from the ingestion (reading files, embedding chunks).
        embedder: the app's embedder (default :func:`retrieval.get_embedder`).
    """
    from retrieval._ingest import ingest
    from retrieval._loaders import loader_for

    folder = uploads_dir(settings)
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[int, FileResult] = {}
    stored: dict[int, Path] = {}
    for i, (name, data) in enumerate(files):
        clean = safe_name(name)
        if loader_for(Path(clean)) is None:
            results[i] = FileResult(name, False, reason="unsupported format (use md, rst, txt, html or pdf)")
            continue
        if not data:
            results[i] = FileResult(name, False, reason="the file is empty")
            continue
        target = folder / clean
        target.write_bytes(data)
        stored[i] = target
    if stored:
        with _write_lock:
            report = ingest(
                list(stored.values()), settings, False, embedder, root=folder, on_progress=on_progress
            )
        failed = dict(report.files_failed)
        counts = _chunk_counts(settings, [str(p) for p in stored.values()])
        for i, path in stored.items():
            reason = failed.get(str(path))
            if reason is not None:
                path.unlink(missing_ok=True)  # nothing of a failed upload stays behind
                results[i] = FileResult(files[i][0], False, reason=reason)
            else:
                results[i] = FileResult(files[i][0], True, f"{UPLOADS}/{path.name}", counts.get(str(path), 0))
    return [results[i] for i in range(len(files))]


def _chunk_counts(settings: Settings, sources: list[str]) -> dict[str, int]:
    from retrieval._store import open_collection

    collection = open_collection(settings)
    got = (
        collection.get(where={"source": {"$in": sources}}, include=["metadatas"]) if sources else {"ids": []}
    )
    counts: dict[str, int] = {}
    for meta in got.get("metadatas") or []:
        src = str((meta or {}).get("source", ""))
        counts[src] = counts.get(src, 0) + 1
    return counts


def list_documents(settings: Settings) -> list[IndexedDocument]:
    """Every indexed document with its chunk count, sorted by id."""
    from retrieval._store import open_collection

    collection = open_collection(settings)
    roots = known_roots(settings)
    by_source: dict[str, tuple[dict[str, Any], int]] = {}
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], limit=_PAGE, offset=offset)
        for meta in page.get("metadatas") or []:
            meta = dict(meta or {})
            src = str(meta.get("source", ""))
            first, n = by_source.get(src, (meta, 0))
            by_source[src] = (first, n + 1)
        if len(page["ids"]) < _PAGE:
            break
        offset += _PAGE
    docs = [IndexedDocument(describe(meta, roots), n, src) for src, (meta, n) in by_source.items()]
    return sorted(docs, key=lambda d: d.doc_id)


def find_source(settings: Settings, doc_id: str, collection: Any = None) -> str | None:
    """The ``source`` (absolute path) of the indexed document ``doc_id`` (``root/path``), or None."""
    from retrieval._store import open_collection

    parts = split_doc_id(doc_id)
    if parts is None:
        return None
    root, rel = parts
    collection = collection or open_collection(settings)
    got = collection.get(where={"$and": [{"root": root}, {"path": rel}]}, limit=1, include=["metadatas"])
    if got["ids"]:
        return str((got["metadatas"] or [{}])[0].get("source", "")) or None
    folder = known_roots(settings).get(root)  # an index that predates the root/path metadata
    if folder is None:
        return None
    candidate = str(folder / rel)
    got = collection.get(where={"source": candidate}, limit=1, include=[])
    return candidate if got["ids"] else None


def open_document(settings: Settings, doc_id: str) -> Path | None:
    """The file of the indexed document ``doc_id``, or None: not indexed, a symlink, not a file."""
    source = find_source(settings, doc_id)
    if source is None:
        return None
    path = Path(source)
    if os.path.realpath(path) != os.path.abspath(path) or not path.is_file():
        return None  # reached through a symlink (or gone): never served
    return path


def remove_document(settings: Settings, doc_id: str) -> int:
    """Remove a document from Chroma and the BM25 index (and its uploaded file); chunks removed.

    Raises:
        KeyError: no indexed document has that id.
    """
    from retrieval._ingest import META_INDEX_VERSION, META_UPDATED_AT, index_version, read_index
    from retrieval._store import open_collection

    with _write_lock:
        collection = open_collection(settings)
        source = find_source(settings, doc_id, collection)
        if source is None:
            raise KeyError(doc_id)
        ids = collection.get(where={"source": source}, include=[])["ids"]
        for i in range(0, len(ids), _PAGE):
            collection.delete(ids=ids[i : i + _PAGE])
        remaining = {cid for old in read_index(collection).values() for cid in old.ids}
        meta = dict(collection.metadata or {})
        meta[META_INDEX_VERSION] = index_version(remaining)
        meta[META_UPDATED_AT] = datetime.now(UTC).isoformat(timespec="seconds")
        collection.modify(metadata=meta)
        _sync_other_indexes(settings, collection)
        uploaded = uploads_dir(settings)
        if Path(source).parent == uploaded:
            Path(source).unlink(missing_ok=True)
    log.info("removed %s (%d chunks)", doc_id, len(ids))
    return len(ids)


def _sync_other_indexes(settings: Settings, collection: Any) -> None:
    """Catch up the indexes that follow Chroma (BM25, when hybrid retrieval is there)."""
    from retrieval import _store

    sync = getattr(_store, "sync_bm25", None)
    if callable(sync):
        sync(settings, collection)
