"""Incremental ingestion: files -> chunks -> embeddings -> Chroma, doing only what changed.

Every chunk stores its file (``source``), the hash of the file's bytes and of the chunking
parameters (``doc_hash``) and how many chunks the file has (``n_chunks``). The index itself is
therefore the manifest: a file whose chunks all carry its current hash, and are all there, is
unchanged and is not even parsed. A changed file keeps the chunks whose content hash (the chunk
id) still exists, gets new ones embedded and loses the rest. Files under an ingested folder that
disappeared lose their chunks. A file that cannot be read or parsed is reported and left as it
was in the index.

Embedding (torch, both cores) runs in the calling thread; Chroma writes run in a writer thread,
so storing hides behind embedding.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ragloop.settings import Settings
from retrieval import _guard as guard
from retrieval._chunking import Chunk, chunk_ids, split_document
from retrieval._embedding import Embedder, check_variant, get_embedder
from retrieval._loaders import loader_for, parse_document
from retrieval._sources import doc_title, locate
from retrieval._store import (
    META_EMBEDDING_MODEL,
    META_INDEX_VERSION,
    META_UPDATED_AT,
    open_collection,
    sync_bm25,
)

log = logging.getLogger(__name__)

#: Bump when chunking changes in a way that should re-chunk unchanged files.
CHUNKER_VERSION = "1"
#: Texts handed to the model per pipeline step (the writer stores one step while the next embeds).
EMBED_STEP = 256
_PAGE = 5000


#: ``on_progress(phase, done, total)``: phase "reading" (files) or "embedding" (chunks).
Progress = Callable[[str, int, int], None]
#: Collection metadata key naming the embedding variant (see :mod:`retrieval._embedding`).
META_EMBEDDING_VARIANT = "ragloop_embedding_variant"


class IngestError(RuntimeError):
    """Ingestion cannot proceed at all (e.g. the collection was built with another model)."""


@dataclass
class IngestReport:
    """What one ingest did. ``chunks_updated`` counts kept chunks whose metadata (position) changed."""

    files_seen: int = 0
    files_unchanged: int = 0
    files_changed: int = 0
    files_removed: int = 0
    chunks_added: int = 0
    chunks_updated: int = 0
    chunks_removed: int = 0
    chunks_unchanged: int = 0
    files_failed: list[tuple[str, str]] = field(default_factory=list)
    index_version: str = ""
    seconds: float = 0.0

    @property
    def files_ok(self) -> int:
        """Files that are in the index as they are now (ingested or unchanged)."""
        return self.files_changed + self.files_unchanged

    @property
    def changed(self) -> bool:
        """True when the index content changed."""
        return bool(self.chunks_added or self.chunks_removed or self.chunks_updated)

    def summary(self) -> str:
        """A few human-readable lines: files, chunk counts, failures with reasons."""
        lines = [
            f"files: {self.files_seen} seen, {self.files_changed} new or changed, "
            f"{self.files_unchanged} unchanged, {self.files_removed} removed, "
            f"{len(self.files_failed)} failed",
            f"chunks: {self.chunks_added} added, {self.chunks_updated} updated, "
            f"{self.chunks_removed} removed, {self.chunks_unchanged} unchanged "
            f"({self.seconds:.1f}s, index version {self.index_version or '-'})",
        ]
        lines += [f"failed: {path}: {reason}" for path, reason in self.files_failed]
        return "\n".join(lines)


@dataclass
class _Indexed:
    """What the index holds for one file."""

    ids: dict[str, dict[str, Any]] = field(default_factory=dict)  # chunk id -> metadata

    def complete(self, doc_hash: str) -> bool:
        metas = self.ids.values()
        return all(
            m.get("doc_hash") == doc_hash and m.get("n_chunks") == len(self.ids) and "path" in m
            for m in metas
        )


@dataclass
class _Plan:
    """Writes one ingest needs."""

    add: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)  # id, embed, doc, meta
    update: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    delete: list[str] = field(default_factory=list)


def doc_hash(data: bytes, settings: Settings, model_name: str) -> str:
    """Hash of a file's bytes and everything that shapes its chunks and embeddings."""
    h = hashlib.sha256(data)
    h.update(f"|{CHUNKER_VERSION}|{settings.chunk_size}|{settings.chunk_overlap}|{model_name}".encode())
    return h.hexdigest()[:32]


def index_version(ids: Iterable[str]) -> str:
    """A short hash of a set of chunk ids: equal sets, equal versions."""
    h = hashlib.sha256()
    for cid in sorted(ids):
        h.update(cid.encode())
    return h.hexdigest()[:16]


def collect_files(paths: list[Path]) -> tuple[list[Path], list[Path], list[tuple[str, str]]]:
    """Expand paths into supported files; returns ``(files, roots, failures)``.

    Folders are walked recursively (hidden folders skipped, unsupported formats ignored); a file
    named explicitly is always attempted, so an unsupported one is reported. Under a folder,
    archives and symlinks that resolve outside it are reported, not read (:mod:`retrieval._guard`).
    """
    files: list[Path] = []
    roots: list[Path] = []
    failed: list[tuple[str, str]] = []
    for raw in paths:
        path = Path(os.path.abspath(raw.expanduser()))
        roots.append(path)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                rel = f.relative_to(path).parts
                if any(p.startswith(".") for p in rel[:-1]):
                    continue
                if f.is_symlink() and (reason := guard.outside_root(f, path)):
                    failed.append((str(f), reason))
                elif f.is_dir():
                    continue
                elif loader_for(f) is None and guard.archive_kind(f.name):
                    failed.append((str(f), "archive, not unpacked: extract it to index its contents"))
                elif loader_for(f) is not None and (f.is_file() or f.is_symlink()):
                    files.append(f)
        elif path.exists() or path.is_symlink():
            files.append(path)
        else:
            failed.append((str(path), "not found"))
    return list(dict.fromkeys(files)), roots, failed


def _under(source: str, roots: list[Path]) -> bool:
    return any(source == str(r) or source.startswith(str(r) + os.sep) for r in roots)


def read_index(collection: Any) -> dict[str, _Indexed]:
    """The index's chunks grouped by source file."""
    indexed: dict[str, _Indexed] = {}
    offset = 0
    while True:
        page = collection.get(include=["metadatas"], limit=_PAGE, offset=offset)
        for cid, meta in zip(page["ids"], page["metadatas"] or [], strict=True):
            meta = dict(meta or {})
            indexed.setdefault(str(meta.get("source", "")), _Indexed()).ids[cid] = meta
        if len(page["ids"]) < _PAGE:
            return indexed
        offset += _PAGE


def plan_file(
    source: str,
    chunks: list[Chunk],
    dhash: str,
    old: _Indexed | None,
    plan: _Plan,
    report: IngestReport,
    naming: dict[str, str] | None = None,
) -> None:
    """Add to ``plan`` what turns the file's indexed chunks (``old``) into ``chunks``.

    ``naming`` (``root``, ``path``, ``doc_title``: :mod:`retrieval._sources`) is stored on every chunk.
    """
    old_ids = old.ids if old else {}
    ids = chunk_ids(source, chunks)
    for cid, chunk in zip(ids, chunks, strict=True):
        meta = {
            "source": source,
            "title": chunk.title,
            "position": chunk.position,
            "doc_hash": dhash,
            "n_chunks": len(chunks),
            **(naming or {}),
        }
        if cid not in old_ids:
            plan.add.append((cid, chunk.embed_text, chunk.text, meta))
        elif old_ids[cid] != meta:
            plan.update.append((cid, meta))
        else:
            report.chunks_unchanged += 1
    keep = set(ids)
    plan.delete.extend(cid for cid in old_ids if cid not in keep)


def _plan(
    files: list[Path],
    indexed: dict[str, _Indexed],
    settings: Settings,
    model: str,
    progress: bool,
    roots: list[Path] | None = None,
    on_progress: Progress | None = None,
) -> tuple[_Plan, IngestReport]:
    """Read and chunk the files that changed; decide every write (names relative to ``roots``)."""
    plan, report = _Plan(), IngestReport(files_seen=len(files))
    limits = guard.limits_from(settings)
    for done, path in enumerate(tqdm(files, desc="reading", unit="file", disable=not progress)):
        if on_progress is not None:
            on_progress("reading", done, len(files))
        source = str(path)
        try:
            guard.check_size(path, limits)  # before reading: a huge file is never loaded
            data = path.read_bytes()
        except guard.RefusedFile as exc:
            report.files_failed.append((source, str(exc)))
            continue
        except OSError as exc:
            report.files_failed.append((source, f"unreadable: {exc.strerror or exc}"))
            continue
        dhash = doc_hash(data, settings, model)
        old = indexed.get(source)
        if old is not None and old.complete(dhash):
            report.files_unchanged += 1
            report.chunks_unchanged += len(old.ids)
            continue
        try:
            doc = parse_document(path, data, limits)
            # Plain text has no headings: the file name is the best title there is.
            title = doc.title or (path.name.split(".")[0] if doc.fmt == "txt" else "")
            chunks = split_document(doc.text, doc.fmt, settings.chunk_size, settings.chunk_overlap, title)
        except Exception as exc:  # noqa: BLE001 - one bad file must not stop the others
            log.debug("failed to parse %s", source, exc_info=True)
            report.files_failed.append((source, str(exc) or type(exc).__name__))
            continue
        if not chunks and old is None:
            log.info("%s has no text to index", source)  # e.g. a page that is only a table of contents
            report.files_unchanged += 1
            continue
        report.files_changed += 1
        root, rel = locate(path, roots or [])
        naming = {
            "root": root,
            "path": rel,
            "doc_title": doc_title(chunks[0].title if chunks else "", doc.title, path.name),
        }
        plan_file(source, chunks, dhash, old, plan, report, naming)
    return plan, report


class _Writer(threading.Thread):
    """Stores embedded batches in Chroma while the next batch is being embedded."""

    def __init__(self, collection: Any) -> None:
        super().__init__(name="chroma-writer", daemon=True)
        self.collection = collection
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=2)
        self.error: BaseException | None = None

    def run(self) -> None:
        while (item := self.queue.get()) is not None:
            if self.error is None:
                try:
                    self.collection.upsert(**item)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    self.error = exc

    def put(self, item: dict[str, Any] | None) -> None:
        if self.error is not None:
            raise IngestError(f"writing to Chroma failed: {self.error}") from self.error
        self.queue.put(item)


def _write(
    collection: Any, plan: _Plan, embedder: Embedder, progress: bool, on_progress: Progress | None = None
) -> None:
    """Embed and add new chunks (pipelined), then update moved chunks and delete stale ones."""
    # Longest first: batches of similar lengths waste little padding, as encode() does internally.
    adds = sorted(plan.add, key=lambda a: len(a[1]), reverse=True)
    writer = _Writer(collection)
    writer.start()
    try:
        with tqdm(total=len(adds), desc="embedding", unit="chunk", disable=not progress) as bar:
            for i in range(0, len(adds), EMBED_STEP):
                step = adds[i : i + EMBED_STEP]
                vectors = embedder.embed_documents([a[1] for a in step])
                writer.put(
                    {
                        "ids": [a[0] for a in step],
                        "embeddings": vectors,
                        "documents": [a[2] for a in step],
                        "metadatas": [a[3] for a in step],
                    }
                )
                bar.update(len(step))
                if on_progress is not None:
                    on_progress("embedding", i + len(step), len(adds))
    finally:
        writer.queue.put(None)
        writer.join()
    if writer.error is not None:
        raise IngestError(f"writing to Chroma failed: {writer.error}") from writer.error
    # Updates and deletes come last: an interrupted ingest leaves files incomplete, so redone.
    for i in range(0, len(plan.update), _PAGE):
        moved = plan.update[i : i + _PAGE]
        collection.update(ids=[u[0] for u in moved], metadatas=[u[1] for u in moved])
    for i in range(0, len(plan.delete), _PAGE):
        collection.delete(ids=plan.delete[i : i + _PAGE])


def _check_model(collection: Any, model: str, embedder: Embedder | None = None) -> None:
    meta = collection.metadata or {}
    built_with = meta.get(META_EMBEDDING_MODEL)
    if built_with and built_with != model and collection.count() > 0:
        raise IngestError(
            f"collection {collection.name!r} holds embeddings of {built_with!r}, not {model!r}: "
            "set RAGLOOP_COLLECTION to a new collection name"
        )
    if embedder is not None and collection.count() > 0:
        check_variant(index_variant(meta), embedder, collection.name)


def index_variant(metadata: dict[str, Any] | None) -> str | None:
    """The embedding variant a collection was built with (``torch`` for stamped pre-variant indexes)."""
    meta = metadata or {}
    if META_EMBEDDING_VARIANT in meta:
        return str(meta[META_EMBEDDING_VARIANT])
    return "torch" if META_EMBEDDING_MODEL in meta else None


def _stamp(
    collection: Any,
    indexed: dict[str, _Indexed],
    plan: _Plan,
    report: IngestReport,
    model: str,
    variant: str = "torch",
) -> None:
    """Record the new index version (a hash of all chunk ids) and the model in the collection."""
    final_ids = {cid for old in indexed.values() for cid in old.ids} - set(plan.delete)
    final_ids |= {a[0] for a in plan.add}
    report.index_version = index_version(final_ids)
    meta = dict(collection.metadata or {})
    if report.changed or meta.get(META_INDEX_VERSION) != report.index_version:
        meta[META_INDEX_VERSION] = report.index_version
        meta[META_EMBEDDING_MODEL] = model
        meta[META_EMBEDDING_VARIANT] = variant
        meta[META_UPDATED_AT] = datetime.now(UTC).isoformat(timespec="seconds")
        collection.modify(metadata=meta)


def ingest(
    paths: list[Path],
    settings: Settings,
    progress: bool = True,
    embedder: Embedder | None = None,
    *,
    root: Path | None = None,
    on_progress: Progress | None = None,
) -> IngestReport:
    """Index files and folders into the collection of ``settings``, doing only what changed.

    Args:
        paths: Files and folders (walked recursively).
        settings: Chroma location, collection, chunk size and overlap, embedding model.
        progress: Show tqdm progress bars.
        embedder: An embedder to use instead of :func:`get_embedder`.
        root: The folder documents are named relative to (default: each folder in ``paths``).
        on_progress: Called with ``(phase, done, total)`` as files are read and chunks embedded.

    Returns:
        An :class:`IngestReport`; files that failed are listed in ``files_failed`` with the reason.

    Raises:
        VariantMismatch: the collection holds embeddings of another model variant.
    """
    start = time.perf_counter()
    files, roots, failed = collect_files(paths)
    embedder = embedder or get_embedder(settings)
    collection = open_collection(settings)
    _check_model(collection, embedder.model_name, embedder)
    indexed = read_index(collection)
    plan, report = _plan(
        files, indexed, settings, embedder.model_name, progress, [root] if root else roots, on_progress
    )
    report.files_failed[:0] = failed
    seen = {str(f) for f in files}
    for source, old in indexed.items():
        if source not in seen and _under(source, roots):
            report.files_removed += 1
            plan.delete.extend(old.ids)
    report.chunks_added, report.chunks_updated = len(plan.add), len(plan.update)
    report.chunks_removed = len(plan.delete)
    _write(collection, plan, embedder, progress, on_progress)
    _stamp(collection, indexed, plan, report, embedder.model_name, getattr(embedder, "variant", "torch"))
    sync_bm25(settings, collection)  # the BM25 index follows Chroma (issue 13, hybrid retrieval)
    report.seconds = time.perf_counter() - start
    log.info("ingest done: %s", report.summary().replace("\n", "; "))
    return report
