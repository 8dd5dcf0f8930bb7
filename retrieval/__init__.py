"""Retrieval: load documents, split them into chunks, embed them and search them in Chroma.

Public API::

    from retrieval import Retriever, get_embedder, ingest, fetch_corpus
    report = ingest([fetch_corpus(settings)], settings)
    hits = Retriever(settings).search("How do I copy a file?").chunks  # hybrid: dense + BM25, fused
"""

from retrieval._background import BackgroundIndexer, check_index_variant, index_progress
from retrieval._chunking import Chunk, split_document, split_text
from retrieval._corpus import FaqItem, fetch_corpus, load_python_faq
from retrieval._documents import (
    FileResult,
    IndexedDocument,
    add_uploads,
    list_documents,
    open_document,
    remove_document,
)
from retrieval._embedding import Embedder, VariantMismatch, get_embedder
from retrieval._hybrid import reciprocal_rank_fusion
from retrieval._ingest import IngestError, IngestReport, ingest
from retrieval._injection import PassageCheck, check_passages, scan_injection
from retrieval._loaders import Document, LoadError, load_document
from retrieval._server import ChromaServer, start_chroma_server
from retrieval._sources import SourceRef, describe_source
from retrieval._store import (
    RetrievalResult,
    RetrievedChunk,
    Retriever,
    chroma_url,
    open_collection,
    sync_bm25,
)

__all__ = [
    "BackgroundIndexer",
    "FileResult",
    "IndexedDocument",
    "SourceRef",
    "VariantMismatch",
    "add_uploads",
    "check_index_variant",
    "describe_source",
    "index_progress",
    "list_documents",
    "open_document",
    "remove_document",
    "ChromaServer",
    "Chunk",
    "Document",
    "Embedder",
    "FaqItem",
    "IngestError",
    "IngestReport",
    "PassageCheck",
    "check_passages",
    "scan_injection",
    "LoadError",
    "RetrievalResult",
    "RetrievedChunk",
    "Retriever",
    "chroma_url",
    "fetch_corpus",
    "get_embedder",
    "ingest",
    "load_document",
    "load_python_faq",
    "open_collection",
    "reciprocal_rank_fusion",
    "split_document",
    "split_text",
    "start_chroma_server",
    "sync_bm25",
]
