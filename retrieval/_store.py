"""The Chroma adapter: open the collection (embedded or server) and search it.

Embeddings are always passed explicitly: Chroma's default embedding function downloads an ONNX
model, which fails offline. The collection uses cosine space, so ``score = 1 - distance`` is the
cosine similarity of unit vectors.

Which Chroma (issue 9, fault 11: a running app must see documents ingested beside it):

1. ``RAGLOOP_CHROMA_URL`` when set: a Chroma server, shared by the app and ``ragloop ingest``.
2. Else the Chroma server that ``ragloop run`` started for this data dir, found through
   ``DATA_DIR/chroma-server.json`` (see :mod:`retrieval._server`), if it answers: so
   ``ragloop ingest`` beside ``ragloop run`` writes through the same server the app reads.
3. Else embedded Chroma at ``DATA_DIR/chroma``. An embedded client caches the HNSW index of the
   process that opened it, and another process writing the same folder (``ragloop ingest`` beside
   ``ragloop serve``) is invisible to it, or breaks it ("Error creating hnsw segment reader:
   Nothing found on disk" when the collection was new). So :class:`Retriever` watches the folder's
   SQLite file and reopens its client when another process changed it (one ``stat`` per search),
   and a search that fails while a writer is half-way is retried on a fresh client; if that fails
   too the search returns no hits (the turn answers "no context") instead of failing.

Hybrid retrieval (issue 13; ``RAGLOOP_RETRIEVAL_MODE=hybrid``, the default): BM25
(:mod:`retrieval._bm25`) ranks the chunks beside the dense search and reciprocal rank fusion
(:mod:`retrieval._hybrid`) merges the two top-``RAGLOOP_HYBRID_CANDIDATES`` lists, plus a third
when the question names compound identifiers (``http.postBuffer``): the chunks that contain them
(see ``Bm25Index.rank``); without it a chunk only BM25 finds is always outvoted by chunks both
rankers find, which is exactly the exact-identifier case. Chroma's dense search is approximate
(HNSW, searched with ``RAGLOOP_HNSW_EF_SEARCH`` candidates): a BM25 candidate it did not return gets
its exact cosine from its stored embedding and is put back into the dense ranking where that
cosine places it, before fusion, so a chunk the ANN search missed (a just-uploaded note found by
BM25 on a rare name) is not outvoted for lack of a dense vote. Each fused hit
keeps its dense cosine as ``score`` (a hit only BM25 found gets its cosine from its stored
embedding), so ``RAGLOOP_SCORE_THRESHOLD`` means the same in both modes; the fused score is
``rrf_score``. The BM25 index lives at ``DATA_DIR/bm25/<collection>/bm25.npz``, next to the
embedded Chroma folder (and beside a Chroma server's collection too); it records the collection's
index version and chunk count, and is caught up with Chroma (only the chunks it lacks are
tokenised) by ingestion, at the first hybrid search, and whenever a check (at most every
:data:`BM25_CHECK_S` seconds) finds the version or the count changed.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ragloop.settings import Settings
from retrieval._bm25 import Bm25Index, catch_up
from retrieval._embedding import Embedder, get_embedder
from retrieval._hybrid import reciprocal_rank_fusion, repair_ranking

log = logging.getLogger(__name__)

#: Collection metadata keys written by ingestion.
META_INDEX_VERSION = "ragloop_index_version"
META_EMBEDDING_MODEL = "ragloop_embedding_model"
META_UPDATED_AT = "ragloop_updated_at"
#: Index version of a collection nothing was ever ingested into.
EMPTY_INDEX_VERSION = "empty"


#: Seconds between two checks that the BM25 index still matches the collection (version, count).
BM25_CHECK_S = 1.0

#: File in the data dir naming the Chroma server ``ragloop run`` started for it.
SERVER_FILE = "chroma-server.json"


def _server_file(settings: Settings) -> Path:
    return settings.data_dir / SERVER_FILE


def _answers(host: str, port: int, timeout: float = 0.5) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def local_server_url(settings: Settings) -> str | None:
    """The URL of the Chroma server ``ragloop run`` started for ``settings.data_dir``, if it answers."""
    path = _server_file(settings)
    try:
        url = str(json.loads(path.read_text())["url"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    parsed = urlparse(url)
    if parsed.hostname and parsed.port and _answers(parsed.hostname, parsed.port):
        return url
    return None


def chroma_url(settings: Settings) -> str | None:
    """The Chroma server to use: ``RAGLOOP_CHROMA_URL``, else ``ragloop run``'s, else None (embedded)."""
    return settings.chroma_url or local_server_url(settings)


def open_client(settings: Settings) -> Any:
    """A Chroma client: ``HttpClient`` for :func:`chroma_url`, else embedded at ``chroma_path``.

    Raises:
        UserError: ``RAGLOOP_CHROMA_URL`` is not a URL, or no Chroma server answers there.
    """
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from ragloop.errors import UserError

    # No telemetry: there is no internet here, and users did not ask for it.
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    server = chroma_url(settings)
    if server:
        url = urlparse(server)
        if not url.hostname or url.scheme not in ("http", "https"):
            raise UserError(f"RAGLOOP_CHROMA_URL is not an http(s) URL: {server!r}")
        port = url.port or (443 if url.scheme == "https" else 8000)
        try:
            return chromadb.HttpClient(
                host=url.hostname, port=port, ssl=url.scheme == "https", settings=chroma_settings
            )
        except ValueError as exc:  # chromadb's "Could not connect to a Chroma server"
            raise UserError(f"no Chroma server answers at {server} (RAGLOOP_CHROMA_URL): {exc}") from exc
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)


def _fresh_embedded_client(settings: Settings, old: Any) -> Any:
    """A new embedded client that re-reads the folder from disk (Chroma caches one per path).

    Chroma keeps one "system" per persist directory in a process-wide cache, so a second
    ``PersistentClient`` for the same path would share the stale HNSW readers. Dropping the cache
    entry (without stopping the old system: a search in another thread may still be using it; it
    is freed when its last client goes) makes the next client load the index afresh.
    """
    from chromadb.api.shared_system_client import SharedSystemClient

    identifier = getattr(old, "_identifier", None)
    if identifier is not None:
        SharedSystemClient._identifier_to_system.pop(identifier, None)
        SharedSystemClient._identifier_to_refcount.pop(identifier, None)
    return open_client(settings)


def open_collection(settings: Settings) -> Any:
    """The Chroma collection ``settings.collection`` (created in cosine space when missing)."""
    return get_or_create(open_client(settings), settings)


def get_or_create(client: Any, settings: Settings) -> Any:
    """``settings.collection`` from ``client``: created in cosine space, searched with ``hnsw_ef_search``.

    Chroma's HNSW search explores ``ef_search`` candidates (default 100) and can miss a chunk whose
    cosine beats every hit it returns (issue 13). A collection created before the setting, or with
    another value, is modified; Chroma applies the new value when it next loads the HNSW index
    (a server at its start, an embedded client when it opens the folder).
    """
    ef = settings.hnsw_ef_search
    collection = client.get_or_create_collection(
        settings.collection,
        configuration={"hnsw": {"space": "cosine", "ef_search": ef}},
        embedding_function=None,
    )
    hnsw = (getattr(collection, "configuration", None) or {}).get("hnsw") or {}
    if hnsw and hnsw.get("ef_search") != ef:
        try:
            collection.modify(configuration={"hnsw": {"ef_search": ef}})
            log.info("collection %r: HNSW ef_search %s -> %d", settings.collection, hnsw.get("ef_search"), ef)
        except Exception:  # noqa: BLE001 - searching with Chroma's own value beats not searching
            log.warning("could not set HNSW ef_search on %r", settings.collection, exc_info=True)
    return collection


def _mtime(path: Path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return None


def bm25_path(settings: Settings) -> Path:
    """Where the BM25 index of ``settings.collection`` lives: ``DATA_DIR/bm25/<collection>/bm25.npz``."""
    return settings.data_dir / "bm25" / settings.collection / "bm25.npz"


def collection_version(collection: Any) -> str:
    """The index version ingestion stamped on ``collection`` (:data:`EMPTY_INDEX_VERSION` if none)."""
    return str((collection.metadata or {}).get(META_INDEX_VERSION, EMPTY_INDEX_VERSION))


def sync_bm25(settings: Settings, collection: Any, progress: bool = False) -> Bm25Index:
    """Load the BM25 index of ``settings`` and catch it up with ``collection``; returns it."""
    index = Bm25Index.load(bm25_path(settings))
    catch_up(index, collection, collection_version(collection), progress)
    return index


@dataclass(frozen=True)
class RetrievedChunk:
    """One search hit. ``score`` is the cosine similarity in [-1, 1]; higher is better.

    In hybrid mode ``rrf_score`` is the hit's reciprocal-rank-fusion score (the ranking key) and
    ``score`` stays the dense cosine (the relevance threshold's input); None in dense mode.
    """

    chunk_id: str
    text: str
    score: float
    source: str
    title: str
    metadata: dict[str, Any] = field(default_factory=dict)
    rrf_score: float | None = None


@dataclass(frozen=True)
class RetrievalResult:
    """The hits of one search, best first, with the query embedding and the time it all took."""

    query_embedding: np.ndarray
    chunks: list[RetrievedChunk]
    retrieval_ms: float

    def above(self, threshold: float) -> list[RetrievedChunk]:
        """The chunks whose score reaches ``threshold``."""
        return [c for c in self.chunks if c.score >= threshold]


def hits_from_query(result: dict[str, Any]) -> list[RetrievedChunk]:
    """Turn the first query of a Chroma ``query()`` answer into :class:`RetrievedChunk` s."""
    ids = (result.get("ids") or [[]])[0]
    docs = (result.get("documents") or [[]])[0]
    metas = (result.get("metadatas") or [[]])[0]
    dists = (result.get("distances") or [[]])[0]
    hits = []
    for cid, doc, meta, dist in zip(ids, docs, metas, dists, strict=True):
        meta = dict(meta or {})
        hits.append(
            RetrievedChunk(
                chunk_id=cid,
                text=doc or "",
                score=1.0 - float(dist),
                source=str(meta.get("source", "")),
                title=str(meta.get("title", "")),
                metadata=meta,
            )
        )
    return hits


class Retriever:
    """Embed a query and fetch the top-k chunks from the Chroma collection."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None) -> None:
        """Open the collection named by ``settings``; the embedder defaults to :func:`get_embedder`."""
        self.settings = settings
        self.embedder = embedder or get_embedder(settings)
        self._lock = threading.Lock()
        self._client = open_client(settings)
        self.embedded = chroma_url(settings) is None
        self.collection = self._open()
        self._disk_stamp = self._stamp()  # after _open: creating the collection writes the file
        self._bm25: Bm25Index | None = None
        self._bm25_file: int | None = None  # mtime ns of the BM25 file this process last read/wrote
        self._bm25_checked = float("-inf")
        self._bm25_lock = threading.Lock()

    def _open(self) -> Any:
        return get_or_create(self._client, self.settings)

    def _stamp(self) -> tuple[int, int] | None:
        """(mtime ns, size) of the embedded index's SQLite file: every write by any process moves it."""
        if not self.embedded:
            return None
        try:
            st = os.stat(self.settings.chroma_path / "chroma.sqlite3")
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def refresh(self, force: bool = False) -> bool:
        """Reopen the embedded client if another process wrote the index since (or ``force``).

        Returns:
            True when the client was reopened.
        """
        if not self.embedded:
            return False
        stamp = self._stamp()
        if not force and stamp == self._disk_stamp:
            return False
        with self._lock:
            if not force and stamp == self._disk_stamp:
                return False
            log.info("the embedded index changed on disk: reopening it")
            self._client = _fresh_embedded_client(self.settings, self._client)
            self.collection = self._open()
            self._disk_stamp = self._stamp()
        return True

    def search(self, query: str, k: int | None = None, mode: str | None = None) -> RetrievalResult:
        """The ``k`` (default ``settings.top_k``) best chunks for ``query``, best first.

        Args:
            query: The question.
            k: Hits wanted (default ``settings.top_k``).
            mode: ``"hybrid"`` or ``"dense"`` (default ``settings.retrieval_mode``).
        """
        start = time.perf_counter()
        vector = self.embedder.embed_query(query)
        if (mode or self.settings.retrieval_mode) == "hybrid":
            hits = self.search_hybrid(query, vector, k)
        else:
            hits = self.search_embedding(vector, k)
        return RetrievalResult(vector, hits, (time.perf_counter() - start) * 1000.0)

    def search_hybrid(self, query: str, vector: np.ndarray, k: int | None = None) -> list[RetrievedChunk]:
        """Dense and BM25 top candidates (and exact-identifier matches) fused by RRF.

        Each hit's ``score`` is its dense cosine, ``rrf_score`` its fused score.

        A BM25 failure (say, an unreadable index file) degrades to the dense hits, logged.
        """
        k = k or self.settings.top_k
        n = max(k, self.settings.hybrid_candidates)
        dense = self.search_embedding(vector, n)
        try:
            lexical, exact = self._bm25_index().rank(query, n)
        except Exception:  # noqa: BLE001 - a chat never fails because the BM25 side did
            log.warning("BM25 search failed: dense hits only", exc_info=True)
            return dense[:k]
        by_id = {h.chunk_id: h for h in dense}
        # The dense search is approximate (HNSW): a BM25 candidate it did not return gets its exact
        # cosine from its stored embedding, and the dense ranking is repaired with it before fusion,
        # so a chunk the ANN search missed is not outvoted for lack of a dense vote (issue 13).
        unseen = [cid for cid in dict.fromkeys([cid for cid, _ in lexical] + exact) if cid not in by_id]
        exact_cos = self._cosines(unseen, vector) if unseen else {}  # embeddings only: ~20 small rows
        dense_ranking = repair_ranking([(h.chunk_id, h.score) for h in dense], exact_cos, n)
        rankings = [[cid for cid, _ in dense_ranking], [cid for cid, _ in lexical]]
        if exact:  # the query names identifiers: the chunks holding them get a vote of their own
            rankings.append(exact)
        fused = reciprocal_rank_fusion(rankings, k=self.settings.rrf_k)[:k]
        missing = [cid for cid, _ in fused if cid not in by_id]
        if missing:  # every one is a BM25 or identifier candidate: its cosine is in exact_cos
            by_id.update(self._fetch(missing, exact_cos))
        return [replace(by_id[cid], rrf_score=score) for cid, score in fused if cid in by_id]

    def _cosines(self, ids: list[str], vector: np.ndarray) -> dict[str, float]:
        """The cosine to ``vector`` of the chunks ``ids`` (from their stored embeddings; gone ids absent)."""
        got = self.collection.get(ids=ids, include=["embeddings"])
        if not got["ids"]:
            return {}
        embeddings = np.asarray(got["embeddings"], dtype=np.float32).reshape(len(got["ids"]), -1)
        query = np.asarray(vector, dtype=np.float32)
        norms = np.linalg.norm(embeddings, axis=1) * (np.linalg.norm(query) or 1.0)
        cosines = embeddings @ query / np.where(norms > 0, norms, 1.0)
        return {cid: float(c) for cid, c in zip(got["ids"], cosines, strict=True)}

    def _fetch(self, ids: list[str], cosines: dict[str, float]) -> dict[str, RetrievedChunk]:
        """Chunks by id, scored with their cosines from :meth:`_cosines` (ids without one are left out)."""
        got = self.collection.get(ids=ids, include=["documents", "metadatas"])
        out = {}
        for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True):
            if cid not in cosines:
                continue
            meta = dict(meta or {})
            out[cid] = RetrievedChunk(
                chunk_id=cid,
                text=doc or "",
                score=cosines[cid],
                source=str(meta.get("source", "")),
                title=str(meta.get("title", "")),
                metadata=meta,
            )
        return out

    def _bm25_index(self) -> Bm25Index:
        """The BM25 index, checked against the collection at most every :data:`BM25_CHECK_S` s."""
        now = time.monotonic()
        if self._bm25 is not None and now - self._bm25_checked < BM25_CHECK_S:
            return self._bm25
        with self._bm25_lock:
            if self._bm25 is not None and now - self._bm25_checked < BM25_CHECK_S:
                return self._bm25
            path = bm25_path(self.settings)
            stamp = _mtime(path)
            if self._bm25 is None or (stamp is not None and stamp != self._bm25_file):
                self._bm25 = Bm25Index.load(path)  # another process (ragloop ingest) saved a newer one
            version = self.index_version  # re-reads the collection's metadata
            catch_up(self._bm25, self.collection, version)
            self._bm25_file = _mtime(path)
            self._bm25_checked = time.monotonic()
            return self._bm25

    def search_embedding(self, vector: np.ndarray, k: int | None = None) -> list[RetrievedChunk]:
        """The ``k`` chunks nearest to an already computed query embedding."""
        k = k or self.settings.top_k
        self.refresh()
        try:
            return hits_from_query(self._query(vector, k))
        except Exception as exc:  # noqa: BLE001 - chromadb raises InternalError for a half-written index
            if not self.embedded:
                raise
            log.warning("embedded index search failed (%s); reopening the index", exc)
        for delay in (0.2, 1.0):
            time.sleep(delay)  # a writer in another process may be half-way through a batch
            try:
                self.refresh(force=True)
                return hits_from_query(self._query(vector, k))
            except Exception as exc:  # noqa: BLE001
                last = exc
        log.warning("embedded index unreadable (%s): this search returns no hits", last)
        return []

    def _query(self, vector: np.ndarray, k: int) -> dict[str, Any]:
        return dict(
            self.collection.query(
                query_embeddings=[np.asarray(vector, dtype=np.float32)],
                n_results=k,
                include=["documents", "metadatas", "distances"],
            )
        )

    def count(self) -> int:
        """Number of chunks in the collection."""
        self.refresh()
        return int(self.collection.count())

    @property
    def index_version(self) -> str:
        """An id of the index content; it changes whenever an ingest changes the collection."""
        from chromadb.errors import NotFoundError

        # Re-read: another process (``ragloop ingest``) may have updated the collection. A plain
        # get is 0.6 ms here (get_or_create 1.5 ms), and this runs once per chat turn.
        try:
            self.collection = self._client.get_collection(self.settings.collection, embedding_function=None)
        except NotFoundError:
            self.collection = self._open()
        return str((self.collection.metadata or {}).get(META_INDEX_VERSION, EMPTY_INDEX_VERSION))
