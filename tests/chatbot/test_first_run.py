"""The first answer within minutes, and the documents route, over the real app.

- The corpus is indexed by :class:`retrieval.BackgroundIndexer`: the app answers a FAQ question
  from the first slice while the rest is still being indexed, and ``/healthz`` shows the progress.
  A listener holds the rest half-way (deterministic: a real ingest, paused between two files).
- ``GET /documents/{root}/{path}`` serves indexed files read-only and refuses everything else.

Real embedded Chroma, the real embedder, the real local LLM for the one question.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
import pytest

from retrieval import BackgroundIndexer, index_progress, ingest

from .conftest import _app_settings, serve

FAQ = """General FAQ
===========

How do I reverse a list in place?
---------------------------------

Call ``items.reverse()``: the list is reversed in place and the method returns None. Use
``reversed(items)`` for an iterator, or ``items[::-1]`` for a reversed copy.
"""

TUTORIAL = """Tutorial
========

Loops
-----

A ``for`` loop walks over the items of any iterable, in order.
"""


def _corpus(root: Path, rest_files: int) -> Path:
    corpus = root / "python-docs"
    (corpus / "faq").mkdir(parents=True)
    (corpus / "tutorial").mkdir()
    (corpus / "library").mkdir()
    (corpus / "faq" / "general.rst").write_text(FAQ)
    (corpus / "tutorial" / "loops.rst").write_text(TUTORIAL)
    for i in range(rest_files):
        text = f"Module m{i}\n=========\n\n" + "\n\n".join(
            f"Function f{j} of module m{i} returns the number {i * 100 + j}." for j in range(60)
        )
        (corpus / "library" / f"m{i}.rst").write_text(text)
    return corpus


@pytest.mark.llm
def test_answers_from_the_first_slice_while_the_rest_is_indexed(tmp_path: Path, llm_server: str) -> None:
    corpus = _corpus(tmp_path, rest_files=4)
    settings = _app_settings(tmp_path / "data", openai_base_url=llm_server, collection="first-run", top_k=2)
    hold, held = threading.Event(), threading.Event()

    def gate(step: str, done: int, total: int) -> None:
        # Reading the rest, after its first file: wait until the test has asked its question.
        if index_progress()["phase"] == "rest" and step == "reading" and done == 1 and not held.is_set():
            held.set()
            hold.wait(300)

    indexer = BackgroundIndexer(settings, corpus, listener=gate)
    indexer.start()
    try:
        indexer.wait_first(600)
        assert held.wait(600), "the rest was never read"
        with serve(settings) as base, httpx.Client(base_url=base, timeout=180) as client:
            health = client.get("/healthz").json()
            progress = health["indexing"]
            assert progress["state"] == "indexing" and progress["phase"] == "rest"
            assert progress["first_slice_ready"] and progress["step"] == "reading"
            assert 0 < progress["done"] < progress["total"] and progress["percent"] < 100
            reply = client.post("/api/chat", json={"message": "How do I reverse a list in place?"})
            assert reply.status_code == 200, reply.text
            body = reply.json()
            assert body["status"] == "ok" and body["answer"].strip()
            assert any("general.rst" in s["source"] for s in body["sources"])
            hold.set()
            assert indexer.done.wait(600) and indexer.error is None
            done = client.get("/healthz").json()
            assert done["indexing"]["state"] == "ready" and done["chunks"] > health["chunks"]
    finally:
        hold.set()
        indexer.done.wait(600)


def test_documents_route_serves_indexed_files_only(tmp_path: Path) -> None:
    corpus = tmp_path / "notes"
    corpus.mkdir()
    (corpus / "guide.md").write_text("# Guide\n\nRead the manual first.\n")
    (corpus / "page.html").write_text("<html><head><title>P</title></head><body><h1>P</h1><p>Hi</p>"
                                      "<script>alert(1)</script></body></html>")  # fmt: skip
    (corpus / "sub").mkdir()
    (corpus / "sub" / "deep.txt").write_text("Deep text about owls.\n")
    os.symlink(corpus / "guide.md", corpus / "alias.md")
    outside = tmp_path / "private.md"
    outside.write_text("# Private\n\nNot for the app.\n")
    settings = _app_settings(tmp_path / "data", collection="route-tests")
    ingest([corpus], settings, progress=False, root=corpus)
    (corpus / "unindexed.md").write_text("# Later\n\nAdded after indexing.\n")
    with serve(settings) as base, httpx.Client(base_url=base, timeout=60) as client:
        ok = client.get("/documents/notes/guide.md")
        assert ok.status_code == 200 and "Read the manual first." in ok.text
        assert ok.headers["content-security-policy"] == "sandbox"
        assert ok.headers["x-content-type-options"] == "nosniff"
        assert client.get("/documents/notes/sub/deep.txt").status_code == 200
        html = client.get("/documents/notes/page.html")
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/plain")
        for path in (
            "/documents/notes/unindexed.md",
            "/documents/notes/alias.md",
            "/documents/notes/%2e%2e/private.md",
            "/documents/notes/..%2fprivate.md",
            "/documents/notes/sub/..%2f..%2f..%2fprivate.md",
            "/documents/%2e%2e/private.md",
            "/documents/notes//guide.md",
            "/documents/notes/missing.md",
            f"/documents/{outside}",
        ):
            reply = client.get(path)
            assert reply.status_code == 404, (path, reply.status_code)
            assert "manual" not in reply.text and "Not for the app" not in reply.text
