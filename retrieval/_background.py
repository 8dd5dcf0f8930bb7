"""Index the default corpus in two steps: a first slice the chat answers from, then the rest.

``ragloop run`` on a fresh machine used to embed all ~14,500 chunks before the chat answered. Now
:class:`BackgroundIndexer` indexes the first slice (``RAGLOOP_INDEX_FIRST``: the FAQ and the
tutorial) and sets :attr:`BackgroundIndexer.first_ready`; ``ragloop run`` starts serving then,
while the same thread goes on with the whole corpus (unchanged files, the first slice among them,
are skipped by the incremental ingest). Documents are named relative to the corpus root either way.

Progress is one process-wide :class:`IndexProgress`, read with :func:`index_progress` (a plain
dict for ``/healthz`` and the UI). An index built with another embedding variant is re-embedded
from scratch (one log line says so): the corpus and the uploads folder are ingested again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ragloop.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class IndexProgress:
    """Where background indexing is: ``state`` is idle, indexing, ready or failed.

    ``phase`` is "first slice" or "rest"; ``step`` is "reading" or "embedding" with ``done`` of
    ``total`` (files, then chunks); ``chunks_per_s`` is the embedding rate of the current step.
    """

    state: str = "idle"
    phase: str = ""
    step: str = ""
    done: int = 0
    total: int = 0
    first_slice_ready: bool = False
    chunks_added: int = 0
    files_failed: int = 0
    started_at: float | None = None
    first_ready_s: float | None = None
    finished_s: float | None = None
    chunks_per_s: float | None = None
    error: str | None = None
    _step_started: float = field(default=0.0, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (no private fields); ``percent`` of the current step."""
        out = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        out["percent"] = round(100.0 * self.done / self.total, 1) if self.total else None
        return out


_progress = IndexProgress()
_progress_lock = threading.Lock()


def index_progress() -> dict[str, Any]:
    """This process's background indexing progress, for ``/healthz`` and the UI."""
    with _progress_lock:
        return _progress.to_dict()


def _update(**changes: Any) -> None:
    with _progress_lock:
        for key, value in changes.items():
            setattr(_progress, key, value)


def _on_progress(step: str, done: int, total: int) -> None:
    now = time.monotonic()
    with _progress_lock:
        if step != _progress.step or done == 0:
            _progress._step_started = now
        _progress.step, _progress.done, _progress.total = step, done, total
        elapsed = now - _progress._step_started
        if step == "embedding" and done and elapsed > 0:
            _progress.chunks_per_s = round(done / elapsed, 1)


def first_slice(corpus: Path, settings: Settings) -> list[Path]:
    """The folders (or files) of ``corpus`` named by ``RAGLOOP_INDEX_FIRST`` that exist."""
    names = [n.strip() for n in settings.index_first.split(",") if n.strip()]
    return [corpus / n for n in names if (corpus / n).exists()]


def check_index_variant(settings: Settings, embedder: Any = None) -> None:
    """Refuse to serve an index built with another embedding variant (``ragloop serve``).

    Raises:
        VariantMismatch: one line naming both variants and the ways out.
    """
    from retrieval._embedding import check_variant, get_embedder
    from retrieval._ingest import index_variant
    from retrieval._store import open_collection

    collection = open_collection(settings)
    if collection.count() > 0:
        check_variant(index_variant(collection.metadata), embedder or get_embedder(settings), collection.name)


def reset_if_other_variant(settings: Settings, embedder: Any) -> bool:
    """Drop the collection when it holds another embedding variant's vectors; True when dropped."""
    from retrieval._embedding import VariantMismatch, check_variant
    from retrieval._ingest import index_variant
    from retrieval._store import open_client, open_collection

    collection = open_collection(settings)
    if collection.count() == 0:
        return False
    try:
        check_variant(index_variant(collection.metadata), embedder, collection.name)
        return False
    except VariantMismatch:
        old = index_variant(collection.metadata)
    log.warning(
        "collection %r holds embeddings of variant %s; re-embedding it with %s (RAGLOOP_EMBEDDING_BACKEND)",
        settings.collection,
        old,
        embedder.variant,
    )
    open_client(settings).delete_collection(settings.collection)
    return True


class BackgroundIndexer(threading.Thread):
    """Index ``corpus``: the first slice, then :attr:`first_ready` is set, then everything else.

    Args:
        settings: the collection to fill (use the Chroma server's settings under ``ragloop run``).
        corpus: the corpus root (documents are named relative to it).
        extra: further folders indexed after the corpus (e.g. the uploads folder), each its own root.
        listener: also called with ``(step, done, total)`` (a CLI progress bar, a test's gate).
    """

    def __init__(
        self,
        settings: Settings,
        corpus: Path,
        extra: list[Path] | None = None,
        listener: Callable[[str, int, int], None] | None = None,
    ) -> None:
        """Prepare (not start) the indexer thread."""
        super().__init__(name="background-indexer", daemon=True)
        self.settings = settings
        self.corpus = corpus
        self.extra = [p for p in (extra or []) if p.exists()]
        self.first_ready = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.listener = listener

    def _progress(self, step: str, done: int, total: int) -> None:
        _on_progress(step, done, total)
        if self.listener is not None:
            self.listener(step, done, total)

    def run(self) -> None:
        """Index the first slice, signal, index the rest; failures are recorded, never raised."""
        from retrieval._embedding import get_embedder
        from retrieval._ingest import ingest

        start = time.monotonic()
        _update(**{k: v for k, v in vars(IndexProgress()).items() if not k.startswith("_")})
        _update(state="indexing", phase="first slice", started_at=time.time())
        try:
            embedder = get_embedder(self.settings)
            reset_if_other_variant(self.settings, embedder)
            first = first_slice(self.corpus, self.settings)
            if first:
                report = ingest(
                    first, self.settings, False, embedder, root=self.corpus, on_progress=self._progress
                )
                _update(chunks_added=report.chunks_added, files_failed=len(report.files_failed))
            _update(first_slice_ready=True, first_ready_s=round(time.monotonic() - start, 2), phase="rest")
            self.first_ready.set()
            report = ingest(
                [self.corpus], self.settings, False, embedder, root=self.corpus, on_progress=self._progress
            )
            added, failed = report.chunks_added, len(report.files_failed)
            for folder in self.extra:
                more = ingest(
                    [folder], self.settings, False, embedder, root=folder, on_progress=self._progress
                )
                added, failed = added + more.chunks_added, failed + len(more.files_failed)
            with _progress_lock:
                _progress.chunks_added += added
                _progress.files_failed += failed
            _update(state="ready", finished_s=round(time.monotonic() - start, 2))
            log.info("background indexing done in %.0f s", time.monotonic() - start)
        except BaseException as exc:  # noqa: BLE001 - recorded and shown at /healthz; the chat stays up
            self.error = exc
            log.error("background indexing failed: %s", exc, exc_info=True)
            _update(state="failed", error=str(exc) or type(exc).__name__)
        finally:
            self.first_ready.set()
            self.done.set()

    def wait_first(self, timeout: float | None = None) -> None:
        """Block until the first slice is indexed (or indexing failed: then raise its error)."""
        self.first_ready.wait(timeout)
        if self.error is not None and not _progress.first_slice_ready:
            raise self.error
