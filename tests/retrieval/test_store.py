"""Embedding and search on a small real corpus: a few pages of the Python FAQ."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ragloop.settings import Settings
from retrieval import Embedder, Retriever, fetch_corpus, get_embedder, ingest, load_python_faq

FAQ_PAGES = ("gui.rst.txt", "installed.rst.txt", "extending.rst.txt")


def test_embedder_contract(embedder: Embedder) -> None:
    vectors = embedder.embed_documents(["a cat", "a dog", "quantum chromodynamics"])
    assert vectors.shape == (3, embedder.dim) == (3, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    query = embedder.embed_query("a cat")
    assert query.shape == (384,) and np.allclose(query, vectors[0], atol=1e-5)
    assert embedder.embed_documents([]).shape == (0, 384)
    assert get_embedder(Settings()) is embedder and embedder.model_name.endswith("all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def faq_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    """An embedded index of three FAQ pages (about 30 chunks)."""
    docs = fetch_corpus(Settings(corpus="python-docs")) / "faq"
    folder = tmp_path_factory.mktemp("faq")
    for name in FAQ_PAGES:
        shutil.copy(docs / name, folder / name)
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    report = ingest([folder], settings, progress=False, embedder=embedder)
    assert report.files_ok == 3 and report.chunks_added > 20
    return settings


def test_faq_questions_find_their_answers(faq_index: Settings, embedder: Embedder) -> None:
    retriever = Retriever(faq_index, embedder=embedder)
    items = [i for i in load_python_faq(Settings()) if Path(i.source).name in FAQ_PAGES]
    assert len(items) >= 15
    found = 0
    for item in items:
        result = retriever.search(item.question, k=3)
        assert len(result.chunks) == 3 and result.retrieval_ms > 0
        scores = [c.score for c in result.chunks]
        assert all(-1.0 <= s <= 1.0 + 1e-6 for s in scores)
        # Hybrid (the default) ranks by the fused score; dense by the cosine.
        fused = [c.rrf_score or 0.0 for c in result.chunks]
        assert fused == sorted(fused, reverse=True)
        dense = [c.score for c in retriever.search(item.question, k=3, mode="dense").chunks]
        assert dense == sorted(dense, reverse=True)
        found += any(c.title.endswith(item.question) for c in result.chunks)
    assert found / len(items) >= 0.9


def test_paraphrased_question(faq_index: Settings, embedder: Embedder) -> None:
    result = Retriever(faq_index, embedder=embedder).search("Which GUI toolkits can I use from Python?")
    top = result.chunks[0]
    assert Path(top.source).name == "gui.rst.txt" and top.score > 0.4
    assert top.metadata["position"] >= 0 and top.chunk_id and result.query_embedding.shape == (384,)
    assert top.score == pytest.approx(
        float(result.query_embedding @ embedder.embed_query(top.title + "\n\n" + top.text)), abs=1e-3
    )


def test_empty_index(settings: Settings, embedder: Embedder) -> None:
    retriever = Retriever(settings, embedder=embedder)
    assert retriever.count() == 0 and retriever.index_version == "empty"
    assert retriever.search("anything").chunks == []
