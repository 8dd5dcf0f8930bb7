"""A just-uploaded or rare-term chunk the dense (HNSW) search misses is still found by hybrid retrieval.

The user's case: on the full Python index, an uploaded ``zorblax-notes.md`` (cosine 0.63 to "How
do I restart the Zorblax service?") was not returned by Chroma's approximate search; BM25 ranked it
first on the rare term "Zorblax", but RRF fused three Logging Cookbook chunks (found by both
rankers, cosine 0.32-0.38) above it and the relevance threshold (0.40) refused the question.

Real Chroma (the ``chroma run`` server), the real embedder, the real upload path. Which chunk an
HNSW graph search misses depends on the graph's random levels and insertion order, so no real index
misses a chosen chunk on every run: the miss is made exact by dropping the note's chunks from
Chroma's own ``query()`` answer (what an ANN miss looks like to the app), nothing else is replaced.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import chromadb
import pytest

from ragloop.settings import Settings
from retrieval import Embedder, Retriever, add_uploads, ingest
from retrieval._bm25 import Bm25Index
from retrieval._hybrid import repair_ranking
from retrieval._store import BM25_CHECK_S

NOTES = """# Zorblax notes

## Restarting

The Zorblax service is restarted with the command `zorb cycle --soft`. A hard restart,
`zorb cycle --hard`, also drops the job queue.

## Logs

Zorblax writes its logs to /var/log/zorblax/, one file per day.
"""

#: Distractors that both rankers find for the question (restart, service, command): each gets a
#: dense and a BM25 vote, so before the fix they outvoted a chunk with the BM25 vote alone.
DISTRACTORS = {
    f"ops-{i}.md": f"# Operations note {i}\n\n## Restarting {name}\n\n{text}\n"
    for i, (name, text) in enumerate(
        [
            ("nginx", "Restart the nginx service with the command systemctl restart nginx."),
            ("the database", "The database service restarts after a crash; the restart command is pg_ctl."),
            ("cron", "To restart the cron service, run the command service cron restart."),
            ("docker", "A container restart policy restarts a service when its command exits."),
            ("the mail server", "Restart the mail service with the command postfix reload."),
            ("ssh", "After editing sshd_config, restart the ssh service with the command shown."),
        ]
    )
}

QUESTION = "How do I restart the Zorblax service?"


def test_repair_ranking_known_values() -> None:
    ranked = [("a", 0.5), ("b", 0.4), ("c", 0.3)]
    # "z" was missed by the approximate search but beats them all; "y" is below the depth.
    assert repair_ranking(ranked, {"z": 0.63, "y": 0.1, "b": 0.99}, 3) == [
        ("z", 0.63),
        ("a", 0.5),
        ("b", 0.4),
    ]
    # Ties keep the approximate ranking's items first; nothing to add leaves it as it was.
    assert repair_ranking(ranked, {"t": 0.4}, 5) == [("a", 0.5), ("b", 0.4), ("t", 0.4), ("c", 0.3)]
    assert repair_ranking(ranked, {}, 3) == ranked and repair_ranking([], {"q": 0.2}, 2) == [("q", 0.2)]
    assert repair_ranking(ranked, {"z": 1.0}, 0) == []


@pytest.fixture()
def server_index(tmp_path: Path, chroma_server: str, embedder: Embedder) -> Settings:
    """The distractors ingested into a fresh collection of the real Chroma server."""
    folder = tmp_path / "ops"
    folder.mkdir()
    for name, text in DISTRACTORS.items():
        (folder / name).write_text(text)
    settings = Settings(
        data_dir=tmp_path / "data", chroma_url=chroma_server, collection=f"ann-{uuid.uuid4().hex[:10]}"
    )
    ingest([folder], settings, progress=False, embedder=embedder)
    return settings


def _miss(retriever: Retriever, ids: set[str]) -> None:
    """Make Chroma's ANN answer miss ``ids`` (see the module docstring); the rest is Chroma's answer."""
    real = retriever._query

    def query(vector: Any, k: int) -> dict[str, Any]:
        out = real(vector, k)
        keep = [i for i, cid in enumerate(out["ids"][0]) if cid not in ids]
        return {
            key: [[out[key][0][i] for i in keep]] for key in ("ids", "documents", "metadatas", "distances")
        }

    retriever._query = query  # type: ignore[method-assign]


def test_uploaded_note_missed_by_the_ann_search_is_retrieved_and_relevant(
    server_index: Settings, embedder: Embedder
) -> None:
    retriever = Retriever(server_index, embedder=embedder)
    assert retriever.search(QUESTION).chunks  # the app is up and has searched before the upload
    [result] = add_uploads(server_index, [("zorblax-notes.md", NOTES.encode())], embedder=embedder)
    assert result.ok and result.chunks == 2
    note_ids = set(retriever.collection.get(where={"root": "uploads"}, include=[])["ids"])
    assert len(note_ids) == 2
    # The running retriever's BM25 index holds the upload within its catch-up period.
    deadline = time.monotonic() + 10 * BM25_CHECK_S
    while not note_ids <= set(retriever._bm25_index().ids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert note_ids <= set(retriever._bm25_index().ids)
    lexical = [cid for cid, _ in retriever._bm25_index().search(QUESTION, 5)]
    assert lexical[0] in note_ids  # BM25 ranks the note first on "Zorblax"

    _miss(retriever, note_ids)
    dense = retriever.search(QUESTION, mode="dense").chunks
    assert not note_ids & {c.chunk_id for c in dense}  # the dense side missed it
    result_hybrid = retriever.search(QUESTION)
    top = result_hybrid.chunks[0]
    assert top.chunk_id in note_ids and "zorb cycle --soft" in top.text
    # Its score is its true cosine, so the relevance threshold keeps it (it was refused before).
    assert top.score >= server_index.score_threshold
    assert top.chunk_id in {c.chunk_id for c in result_hybrid.above(server_index.score_threshold)}


def test_collections_are_searched_with_the_configured_ef_search(
    tmp_path: Path, chroma_server: str, embedder: Embedder
) -> None:
    host, port = chroma_server.removeprefix("http://").split(":")
    client = chromadb.HttpClient(host=host, port=int(port))
    old = f"old-{uuid.uuid4().hex[:10]}"
    client.create_collection(old, configuration={"hnsw": {"space": "cosine"}}, embedding_function=None)
    assert (client.get_collection(old).configuration["hnsw"] or {}).get(
        "ef_search"
    ) == 100  # Chroma's default
    for name in (old, f"new-{uuid.uuid4().hex[:10]}"):
        settings = Settings(data_dir=tmp_path / "data", chroma_url=chroma_server, collection=name)
        Retriever(settings, embedder=embedder)
        hnsw = client.get_collection(name).configuration["hnsw"] or {}
        assert hnsw.get("ef_search") == settings.hnsw_ef_search == 500 and hnsw.get("space") == "cosine"


def test_bm25_search_during_an_update_uses_the_last_built_index(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A search while a catch-up rebuilds BM25 (~1 s per 15k chunks) answers from the previous
    build: the update had already swapped in the new id list and grown the vocabulary, so a search
    then mapped scores to the wrong ids (after a removal) or failed on the new term (the upload's
    "zorblax"), and the app fell back to dense hits alone."""
    import threading

    index = Bm25Index(tmp_path / "bm25.npz")
    index.update({"old": "retired notes about alpha", "a": "alpha beta", "b": "gamma alpha"}, [], "v1")
    before = index.search("alpha gamma", 5)
    assert {cid for cid, _ in before} == {"a", "b", "old"}
    building, release = threading.Event(), threading.Event()
    real_build = Bm25Index._build

    def slow_build(self: Bm25Index) -> None:
        building.set()
        assert release.wait(30)
        real_build(self)

    monkeypatch.setattr(Bm25Index, "_build", slow_build)
    worker = threading.Thread(target=index.update, args=({"z": "Zorblax restart notes"}, ["old"], "v2"))
    worker.start()
    try:
        assert building.wait(30)
        assert index.search("alpha gamma", 5) == before  # the previous build, its own ids
        assert index.rank("How do I restart Zorblax?", 5) == index.rank("How do I restart?", 5)
    finally:
        release.set()
        worker.join()
    assert index.search("zorblax", 5)[0][0] == "z" and "old" not in {c for c, _ in index.search("alpha", 5)}
