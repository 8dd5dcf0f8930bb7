"""The Chroma adapter: open the collection (embedded or server) and search it.

Embeddings are always passed explicitly: Chroma's default embedding function downloads an ONNX
model, which fails offline. The collection uses cosine space, so ``score = 1 - distance`` is the
cosine similarity of unit vectors.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlparse

import numpy as np

from ragloop.settings import Settings
from retrieval._embedding import Embedder, get_embedder

log = logging.getLogger(__name__)

#: Collection metadata keys written by ingestion.
META_INDEX_VERSION = "ragloop_index_version"
META_EMBEDDING_MODEL = "ragloop_embedding_model"
META_UPDATED_AT = "ragloop_updated_at"
#: Index version of a collection nothing was ever ingested into.
EMPTY_INDEX_VERSION = "empty"


def open_client(settings: Settings) -> Any:
    """A Chroma client: ``HttpClient`` for ``settings.chroma_url``, else embedded at ``chroma_path``."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    # No telemetry: there is no internet here, and users did not ask for it.
    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urlparse(settings.chroma_url)
        if not url.hostname:
            raise ValueError(f"RAGLOOP_CHROMA_URL is not a URL: {settings.chroma_url!r}")
        port = url.port or (443 if url.scheme == "https" else 8000)
        return chromadb.HttpClient(
            host=url.hostname, port=port, ssl=url.scheme == "https", settings=chroma_settings
        )
    settings.chroma_path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_path), settings=chroma_settings)


def open_collection(settings: Settings) -> Any:
    """The Chroma collection ``settings.collection`` (created in cosine space when missing)."""
    client = open_client(settings)
    return client.get_or_create_collection(
        settings.collection, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
    )


@dataclass(frozen=True)
class RetrievedChunk:
    """One search hit. ``score`` is the cosine similarity in [-1, 1]; higher is better."""

    chunk_id: str
    text: str
    score: float
    source: str
    title: str
    metadata: dict[str, Any] = field(default_factory=dict)


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
        self._client = open_client(settings)
        self.collection = self._open()

    def _open(self) -> Any:
        return self._client.get_or_create_collection(
            self.settings.collection, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None
        )

    def search(self, query: str, k: int | None = None) -> RetrievalResult:
        """The ``k`` (default ``settings.top_k``) chunks most similar to ``query``, best first."""
        start = time.perf_counter()
        vector = self.embedder.embed_query(query)
        hits = self.search_embedding(vector, k)
        return RetrievalResult(vector, hits, (time.perf_counter() - start) * 1000.0)

    def search_embedding(self, vector: np.ndarray, k: int | None = None) -> list[RetrievedChunk]:
        """The ``k`` chunks nearest to an already computed query embedding."""
        k = k or self.settings.top_k
        result = self.collection.query(
            query_embeddings=[np.asarray(vector, dtype=np.float32)],
            n_results=k,
            include=["documents", "metadatas", "distances"],
        )
        return hits_from_query(result)

    def count(self) -> int:
        """Number of chunks in the collection."""
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
