"""Retrieval: load documents, split them into chunks, embed them and search them in Chroma.

Public API::

    from retrieval import Retriever, get_embedder, ingest, fetch_corpus
    report = ingest([fetch_corpus(settings)], settings)
    hits = Retriever(settings).search("How do I copy a file?").chunks
"""

from retrieval._chunking import Chunk, split_document, split_text
from retrieval._corpus import FaqItem, fetch_corpus, load_python_faq
from retrieval._embedding import Embedder, get_embedder
from retrieval._ingest import IngestError, IngestReport, ingest
from retrieval._loaders import Document, LoadError, load_document
from retrieval._store import RetrievalResult, RetrievedChunk, Retriever, open_collection

__all__ = [
    "Chunk",
    "Document",
    "Embedder",
    "FaqItem",
    "IngestError",
    "IngestReport",
    "LoadError",
    "RetrievalResult",
    "RetrievedChunk",
    "Retriever",
    "fetch_corpus",
    "get_embedder",
    "ingest",
    "load_document",
    "load_python_faq",
    "open_collection",
    "split_document",
    "split_text",
]
