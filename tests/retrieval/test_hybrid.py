"""Hybrid retrieval: RRF and tokenisation known values, BM25 kept in step with Chroma, exact identifiers.

The Chroma tests use the real embedder and real Chroma (embedded, and the `chroma run` server).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from ragloop.settings import Settings
from retrieval import Embedder, Retriever, fetch_corpus, ingest, open_collection, reciprocal_rank_fusion
from retrieval._bm25 import Bm25Index, exact_tokens, tokenize
from retrieval._store import bm25_path

# --- fusion (pure) ------------------------------------------------------------------------------


def test_rrf_known_values() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "a", "d"]], k=60)
    assert [item for item, _ in fused] == ["a", "c", "b", "d"]
    scores = dict(fused)
    assert scores["a"] == pytest.approx(1 / 61 + 1 / 62) == pytest.approx(0.0325224749)
    assert scores["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert scores["b"] == pytest.approx(1 / 62) and scores["d"] == pytest.approx(1 / 63)


def test_rrf_k_weights_ties_and_duplicates() -> None:
    # k=1: 1/(1+rank); "y" ranks 2nd and 1st -> 1/3 + 1/2.
    assert dict(reciprocal_rank_fusion([["x", "y"], ["y"]], k=1)) == pytest.approx(
        {"x": 0.5, "y": 1 / 3 + 1 / 2}
    )
    # Equal scores: the item with the better best rank wins, then the earlier ranking.
    assert [i for i, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]
    assert [i for i, _ in reciprocal_rank_fusion([["p", "q", "r"], ["r", "s"]], k=2)][:2] == ["r", "p"]
    # A repeated id counts once, at its best rank.
    assert dict(reciprocal_rank_fusion([["a", "a", "b"]], k=10)) == pytest.approx({"a": 1 / 11, "b": 1 / 13})
    weighted = dict(reciprocal_rank_fusion([["a"], ["b"]], k=10, weights=[1.0, 3.0]))
    assert weighted == pytest.approx({"a": 1 / 11, "b": 3 / 11})
    assert reciprocal_rank_fusion([]) == [] and reciprocal_rank_fusion([[], []]) == []
    with pytest.raises(ValueError, match="positive"):
        reciprocal_rank_fusion([["a"]], k=0)
    with pytest.raises(ValueError, match="weights"):
        reciprocal_rank_fusion([["a"], ["b"]], weights=[1.0])


# --- tokenisation (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        ("Set http.postBuffer", ["set", "http.postbuffer", "postbuffer", "http", "post", "buffer"]),
        ("os.path.join()", ["os.path.join", "os", "path", "join"]),
        ("chunk_size", ["chunk_size", "chunk", "size"]),
        ("settings.chunk_size", ["settings.chunk_size", "chunk_size", "set", "chunk", "size"]),
        ("error E0425", ["error", "e0425", "0425"]),
        ("ERR_SSL_PROTOCOL_ERROR", ["err_ssl_protocol_error", "err", "ssl", "protocol", "error"]),
        ("std::vector utf-8", ["std::vector", "std", "vector", "utf-8", "utf", "8"]),
        ("How do I sort the dictionaries?", ["how", "do", "sort", "dictionari"]),
        ("HTTP 404", ["http", "404"]),
        ("", []),
    ],
)
def test_tokenize_known_values(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_exact_tokens() -> None:
    assert exact_tokens("What does http.postBuffer do? And __init__?") == [
        "http.postbuffer",
        "postbuffer",
        "__init__",
    ]
    assert exact_tokens("How do I sort a list?") == []


def test_bm25_known_score_update_and_persistence(tmp_path: Path) -> None:
    index = Bm25Index(tmp_path / "bm25.npz")
    index.update({"d1": "alpha beta", "d2": "gamma delta"}, [], version="v1")
    # Lucene BM25, N=2, df=1: idf = ln(1 + (2 - 1 + 0.5) / (1 + 0.5)) = ln 2; tf=1, |d| = avgdl:
    # tf / (tf + k1) = 1 / 2.5 -> ln(2) * 0.4.
    assert index.search("alpha", 5) == [("d1", pytest.approx(math.log(2) * 0.4, abs=1e-6))]
    assert index.search("unknown words", 5) == [] and index.search("", 5) == []
    index.save()
    again = Bm25Index.load(tmp_path / "bm25.npz")
    assert (again.ids, again.version, again.count) == (["d1", "d2"], "v1", 2)
    assert again.search("gamma", 5) == index.search("gamma", 5)
    again.update({"d3": "alpha gamma"}, ["d2"], version="v2")
    assert again.ids == ["d1", "d3"] and [cid for cid, _ in again.search("gamma", 5)] == ["d3"]
    # A damaged file is an empty index (rebuilt by the catch-up), not an error.
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    assert Bm25Index.load(tmp_path / "bad.npz").count == 0
    assert Bm25Index.load(tmp_path / "missing.npz").count == 0


# --- real Chroma + BM25 -------------------------------------------------------------------------

GIT_CONFIG = """# git config: HTTP settings

## http.postBuffer

Maximum size in bytes of the buffer used by smart HTTP transports when POSTing data to the remote
system. For requests larger than this buffer size, HTTP/1.1 and Transfer-Encoding: chunked is used
to avoid creating a massive pack file locally. Default is 1 MiB, which is sufficient for most
requests.

## http.lowSpeedLimit, http.lowSpeedTime

If the HTTP transfer speed, in bytes per second, is less than http.lowSpeedLimit for longer than
http.lowSpeedTime seconds, the transfer is aborted.
"""


@pytest.fixture(scope="module")
def http_index(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Settings:
    """Python's http.client and http.server pages (distractors, ~80 chunks) and a git-config page."""
    library = fetch_corpus(Settings(corpus="python-docs")) / "library"
    folder = tmp_path_factory.mktemp("http-docs")
    for name in ("http.client.rst.txt", "http.server.rst.txt"):
        shutil.copy(library / name, folder / name)
    (folder / "git-config-http.md").write_text(GIT_CONFIG)
    settings = Settings(data_dir=tmp_path_factory.mktemp("data"))
    ingest([folder], settings, progress=False, embedder=embedder)
    return settings


@pytest.mark.parametrize("question", ["What is http.postBuffer?", "How do I set http.postBuffer?"])
def test_exact_identifier_found_by_hybrid_missed_by_dense(
    http_index: Settings, embedder: Embedder, question: str
) -> None:
    retriever = Retriever(http_index, embedder=embedder)
    dense = retriever.search(question, k=3, mode="dense").chunks
    hybrid = retriever.search(question, k=3, mode="hybrid").chunks
    # Dense alone answers with Python's http.client: the page defining the key is not in its top 3.
    assert not any(c.source.endswith("git-config-http.md") for c in dense)
    assert hybrid[0].source.endswith("git-config-http.md") and hybrid[0].title.endswith("http.postBuffer")
    # The fused hit still carries its dense cosine (the threshold's input) and its RRF score.
    assert hybrid[0].score == pytest.approx(
        float(
            embedder.embed_query(question) @ embedder.embed_query(f"{hybrid[0].title}\n\n{hybrid[0].text}")
        ),
        abs=1e-3,
    )
    assert all(c.rrf_score is not None for c in hybrid) and all(c.rrf_score is None for c in dense)
    rrf = [c.rrf_score or 0.0 for c in hybrid]
    assert rrf == sorted(rrf, reverse=True)


def test_default_mode_is_hybrid(http_index: Settings, embedder: Embedder) -> None:
    assert Settings().retrieval_mode == "hybrid"
    top = Retriever(http_index, embedder=embedder).search("What is http.postBuffer?").chunks[0]
    assert top.source.endswith("git-config-http.md")
    dense = Retriever(http_index.model_copy(update={"retrieval_mode": "dense"}), embedder=embedder)
    assert not dense.search("What is http.postBuffer?").chunks[0].source.endswith("git-config-http.md")


def _bm25_state(settings: Settings) -> tuple[int, str, set[str]]:
    index = Bm25Index.load(bm25_path(settings))
    return index.count, index.version, set(index.ids)


def _chroma_state(settings: Settings) -> tuple[int, str, set[str]]:
    collection = open_collection(settings)
    version = str((collection.metadata or {}).get("ragloop_index_version"))
    return collection.count(), version, set(collection.get(include=[])["ids"])


def test_incremental_ingest_keeps_bm25_in_step(
    docs_dir: Path, store_settings: Settings, embedder: Embedder
) -> None:
    ingest([docs_dir], store_settings, progress=False, embedder=embedder)
    count, version, ids = _chroma_state(store_settings)
    assert count > 5 and _bm25_state(store_settings) == (count, version, ids)

    (docs_dir / "octopus.md").write_text("# Octopus\n\nThe octopus has three hearts and blue blood.\n")
    ingest([docs_dir], store_settings, progress=False, embedder=embedder)
    added = _chroma_state(store_settings)
    assert added[0] == count + 1 and _bm25_state(store_settings) == added
    retriever = Retriever(store_settings, embedder=embedder)
    assert (
        retriever.search("How many hearts does an octopus have?", k=1).chunks[0].source.endswith("octopus.md")
    )

    (docs_dir / "octopus.md").unlink()
    (docs_dir / "gardening.txt").unlink()
    ingest([docs_dir], store_settings, progress=False, embedder=embedder)
    removed = _chroma_state(store_settings)
    assert removed[0] < count and _bm25_state(store_settings) == removed
    assert not any("octopus" in cid for cid in Bm25Index.load(bm25_path(store_settings)).ids)


def test_missing_or_stale_bm25_is_caught_up_at_open(
    docs_dir: Path, settings: Settings, embedder: Embedder
) -> None:
    ingest([docs_dir], settings, progress=False, embedder=embedder)
    bm25_path(settings).unlink()  # lost (or built by an older ragloop)
    retriever = Retriever(settings, embedder=embedder)
    assert retriever.search("What do dwarf planets orbit?", mode="hybrid").chunks
    assert _bm25_state(settings) == _chroma_state(settings)

    # A writer that bypasses ingestion (no version stamp): the count check catches it.
    vector = embedder.embed_documents(["Zebras have black and white stripes."])
    open_collection(settings).add(
        ids=["zebra-1"], embeddings=vector, documents=["Zebras have black and white stripes."],
        metadatas=[{"source": "zebra.txt", "title": "Zebras"}],
    )  # fmt: skip
    fresh = Retriever(settings, embedder=embedder)
    hits = fresh.search("zebra stripes", k=3, mode="hybrid").chunks
    assert hits[0].chunk_id == "zebra-1"
    assert "zebra-1" in _bm25_state(settings)[2] and _bm25_state(settings)[0] == _chroma_state(settings)[0]


def test_bm25_failure_falls_back_to_dense(docs_dir: Path, settings: Settings, embedder: Embedder) -> None:
    ingest([docs_dir], settings, progress=False, embedder=embedder)
    retriever = Retriever(settings, embedder=embedder)

    def broken() -> Bm25Index:
        raise OSError("disk gone")

    retriever._bm25_index = broken  # type: ignore[method-assign]
    hybrid = retriever.search("What do dwarf planets orbit?", k=2, mode="hybrid").chunks
    dense = retriever.search("What do dwarf planets orbit?", k=2, mode="dense").chunks
    assert [c.chunk_id for c in hybrid] == [c.chunk_id for c in dense]


# --- refusals -----------------------------------------------------------------------------------


def test_refusal_threshold_on_a_small_real_index(tmp_path: Path, embedder: Embedder) -> None:
    """The default threshold keeps an FAQ question's passages and refuses off-corpus questions."""
    docs = fetch_corpus(Settings(corpus="python-docs")) / "faq"
    folder = tmp_path / "faq"
    folder.mkdir()
    for name in ("general.rst.txt", "library.rst.txt"):
        shutil.copy(docs / name, folder / name)
    settings = Settings(data_dir=tmp_path / "data")
    ingest([folder], settings, progress=False, embedder=embedder)
    retriever = Retriever(settings, embedder=embedder)
    threshold = settings.score_threshold
    answerable = ["Why is it called Python?", "How do I generate random numbers in Python?"]
    off_corpus = [
        "Which country won the 1998 FIFA World Cup?",
        "Who directed the film Jaws?",
        "What is the capital city of Australia?",
    ]
    for question in answerable:
        assert retriever.search(question).above(threshold), question
    for question in off_corpus:
        result = retriever.search(question)
        assert result.chunks and not result.above(threshold), (question, [c.score for c in result.chunks])
    assert np.isfinite(threshold) and 0 < threshold < 1
