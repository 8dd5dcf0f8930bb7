"""Documents from the UI, in headless Chromium (Debian ``chromium``): upload, progress, per-file
results, search in the same session, the indexed list with chunk counts, and removal.

The real app runs over HTTP on its own fresh index (real embedder, embedded Chroma, the BM25 index
of hybrid retrieval, SQLite chat log). The model is the instant OpenAI-compatible server
(``monitoring._instant_llm``): the assertions are about retrieval, i.e. the sources shown under
the answer and the turn's logged passages, never about the model's words. Screenshots go to
``bench/results/ui/documents_progress.png`` (mid-ingestion), ``documents_upload.png`` (the results)
and ``documents_list.png`` (after a removal).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import chatlog as cl
from ragloop.settings import Settings
from tests.chatbot.browser import wait_for
from tests.chatbot.conftest import DOCS, _app_settings, serve
from tests.chatbot.test_ui_browser import BOT, ask, new_page, shot
from tests.retrieval.conftest import pdf_bytes

pytestmark = [pytest.mark.browser]

# One document per format, each the only home of its own facts (the base corpus is about Python).
MD = """# Quokka care

## What do quokkas eat?

Quokkas graze at night on grasses, sedges and the leaves of the Guichenotia shrub. A wild quokka
can go for weeks without drinking, getting its water from the succulent plants it chews.
"""
RST = """Lighthouse keeping
==================

The keeper trims the lamp wick every evening and winds the clockwork that turns the lens. A
lighthouse keeper logs fog hours and rings the fog bell when the light cannot be seen.
"""
TXT = """Sourdough starter

Feed a sourdough starter equal weights of rye flour and water every twelve hours. A healthy
starter doubles in size within six hours of feeding and smells pleasantly sour.
"""
HTML = """<html><head><title>Glacier walks</title></head><body>
<h1>Glacier walks</h1><p>Crampons and an ice axe are needed on a glacier walk; guides rope the
group together because crevasses hide under fresh snow.</p></body></html>
"""
PDF_LINES = [
    "Volcano observatory",
    "The observatory measures sulfur dioxide with a spectrometer",
    "and counts small earthquakes under the volcano each hour.",
    "A rising tremor count means magma is moving toward the crater.",
]
JUNK = bytes(range(256)) * 8  # binary data named .md: refused with its reason
UPLOADS = {
    "quokkas.md": MD.encode(),
    "lighthouse.rst": RST.encode(),
    "sourdough.txt": TXT.encode(),
    "glacier.html": HTML.encode(),
    "volcano.pdf": pdf_bytes(PDF_LINES),
    "junk.md": JUNK,
}
GOOD = [n for n in UPLOADS if n != "junk.md"]
RESULTS = "#upload-results"
LISTING = "#documents-list"
#: The ingestion's progress as the results table shows it while it runs, e.g. "embedding (3/5)".
PROGRESS = re.compile(r"(?:reading|embedding) \(\d+/\d+\)")


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, index_docs: Callable[..., Path]
) -> Iterator[dict[str, Any]]:
    """An app over its own small index (uploads change it: no other test shares it)."""
    from monitoring._instant_llm import Behaviour, InstantLLM

    root = tmp_path_factory.mktemp("documents-ui")
    data = index_docs(root, DOCS, _app_settings(root / "data"))
    db = f"sqlite:///{root / 'chatlog.db'}"
    with InstantLLM(Behaviour(pieces=["It ", "is ", "in ", "the ", "documents ", "[1]", "."])) as llm:
        overrides: dict[str, Any] = {
            "openai_base_url": llm.base_url,
            "database_url": db,
            "gate_enabled": False,  # the grounding gate has its own tests
        }
        settings = _app_settings(data, **overrides)
        with serve(settings) as base:
            log = cl.ChatLog(db)
            try:
                yield {"url": base, "log": log, "settings": settings}
            finally:
                log.close()


def _rows(page: Any, table: str) -> list[list[str]]:
    """The rows of a Gradio Dataframe as cell texts (its virtual rows; the table body only sizes)."""
    rows = page.locator(f"{table} .virtual-row")
    out = []
    for i in range(rows.count()):
        cells = [c.strip() for c in rows.nth(i).locator("[role=gridcell]").all_inner_texts()]
        if any(cells):
            out.append(cells)
    return out


def _store_chunks(settings: Settings, name: str) -> int:
    """Chunks of ``uploads/<name>`` in Chroma."""
    from retrieval._store import open_collection

    got = open_collection(settings).get(where={"$and": [{"root": "uploads"}, {"path": name}]}, include=[])
    return len(got["ids"])


def _bm25_ids(settings: Settings) -> set[str]:
    """Chunk ids in the BM25 index on disk (hybrid retrieval's second ranking)."""
    from retrieval._bm25 import Bm25Index
    from retrieval._store import bm25_path

    return set(Bm25Index.load(bm25_path(settings)).ids)


def _chroma_ids(settings: Settings, name: str) -> set[str]:
    from retrieval._store import open_collection

    got = open_collection(settings).get(where={"$and": [{"root": "uploads"}, {"path": name}]}, include=[])
    return set(got["ids"])


def _open_documents_tab(page: Any) -> None:
    page.get_by_role("tab", name="Documents").click()
    page.locator("#upload-button").wait_for(timeout=30_000)


def _upload(page: Any) -> list[str]:
    """Choose every file at once, press the button; returns the progress texts seen meanwhile."""
    files = [
        {"name": name, "mimeType": "application/octet-stream", "buffer": data}
        for name, data in UPLOADS.items()
    ]
    chooser = page.locator("#upload-files")
    chooser.locator("input[type=file]").set_input_files(files)
    stems = [name.rsplit(".", 1)[0] for name in UPLOADS]  # the file list shows stem and ending apart
    wait_for(
        lambda: "Uploading" not in (text := chooser.inner_text()) and all(s in text for s in stems),
        60,
        "the chosen files in the upload area",
    )
    page.locator("#upload-button").click()
    seen: list[str] = []

    def done() -> bool:
        text = page.locator(RESULTS).inner_text()
        new = [m for m in PROGRESS.findall(text) if m not in seen]
        if new and not seen:
            shot(page, "documents_progress")  # the first progress the page showed
        seen.extend(new)
        return len(_rows(page, RESULTS)) == len(UPLOADS)

    wait_for(done, 120, "a result row per uploaded file", interval=0.05)
    return seen


def test_upload_search_list_and_remove_documents(app: dict[str, Any], browser: Any) -> None:
    settings, log = app["settings"], app["log"]
    page = new_page(browser, app["url"])
    _open_documents_tab(page)

    # Upload six files at once: five formats that index, one binary file named .md that fails.
    progress = _upload(page)
    assert progress, "the page showed the ingestion's progress while it ran"
    results = {r[0]: r for r in _rows(page, RESULTS)}
    assert set(results) == set(UPLOADS)
    for name in GOOD:
        _, result, chunks, reason = results[name]
        assert result == "indexed" and int(chunks) == _store_chunks(settings, name) > 0, results[name]
        assert not reason
    assert results["junk.md"][1] == "failed" and "binary" in results["junk.md"][3], results["junk.md"]
    assert _store_chunks(settings, "junk.md") == 0
    assert not (settings.data_dir / "uploads" / "junk.md").exists(), "a failed upload keeps nothing"
    shot(page, "documents_upload")

    # The documents view lists every indexed document by source, with its chunk count.
    listing = wait_for(
        lambda: {r[0]: r for r in _rows(page, LISTING) if r[0].startswith("uploads/")}, 30, "the listing"
    )
    assert set(listing) == {f"uploads/{n}" for n in GOOD}, listing
    for name in GOOD:
        assert int(listing[f"uploads/{name}"][2]) == _store_chunks(settings, name)
    assert listing["uploads/glacier.html"][1] == "Glacier walks"
    assert listing["uploads/quokkas.md"][1] == "Quokka care"
    base_docs = {r[0] for r in _rows(page, LISTING)} - set(listing)
    assert {d.split("/")[-1] for d in base_docs} == set(DOCS), base_docs

    # Searchable in the same browser session, no restart: the answer's sources name the upload.
    page.get_by_role("tab", name="Chat").click()
    turn = ask(page, log, "What does the volcano observatory measure with a spectrometer?")
    assert turn["status"] == cl.STATUS_OK, turn
    top = turn["retrieved"][0]
    assert top["source"].endswith("volcano.pdf"), [r["source"] for r in turn["retrieved"]]
    page.locator("#chat").get_by_text("Sources:").last.click()
    shown = page.locator(BOT).last.inner_text() + page.locator("#chat").inner_text()
    assert "uploads/volcano.pdf" in shown, "the source is named by its path under its root"
    assert "Volcano observatory" in shown
    assert str(settings.data_dir) not in shown and "/tmp/" not in shown and "/.cache/" not in shown
    # Its "Document" link opens the uploaded file itself.
    link = page.locator("#chat a", has_text="Document").last.get_attribute("href")
    assert link == "/documents/uploads/volcano.pdf", link
    assert page.request.get(app["url"] + link).body() == UPLOADS["volcano.pdf"]

    # Remove the PDF from the documents view: gone from the list, Chroma, BM25 and the answers.
    pdf_ids = _chroma_ids(settings, "volcano.pdf")
    assert pdf_ids and pdf_ids <= _bm25_ids(settings)
    _open_documents_tab(page)
    choice = page.locator("#remove-choice input")
    choice.click()
    choice.fill("uploads/volcano.pdf")
    choice.press("Enter")
    wait_for(lambda: choice.input_value() == "uploads/volcano.pdf", 10, "the chosen document")
    page.locator("#remove-button").click()
    wait_for(lambda: "Removed" in page.locator("#remove-result").inner_text(), 30, "the removal message")
    wait_for(
        lambda: all(r[0] != "uploads/volcano.pdf" for r in _rows(page, LISTING)), 30, "the shorter listing"
    )
    assert {r[0] for r in _rows(page, LISTING) if r[0].startswith("uploads/")} == {
        f"uploads/{n}" for n in GOOD if n != "volcano.pdf"
    }
    wait_for(lambda: choice.input_value() == "", 10, "the removed document unchosen")
    assert _store_chunks(settings, "volcano.pdf") == 0
    assert not pdf_ids & _bm25_ids(settings), "the BM25 index still holds the removed chunks"
    assert not os.path.exists(settings.data_dir / "uploads" / "volcano.pdf")
    shot(page, "documents_list")  # the list after the removal, with its message
    page.get_by_role("tab", name="Chat").click()
    again = ask(page, log, "What does the volcano observatory measure with a spectrometer?")
    assert all(not r["source"].endswith("volcano.pdf") for r in again["retrieved"] or [])
    # The other uploads are still searched.
    quokka = ask(page, log, "What do quokkas eat at night?")
    assert quokka["retrieved"][0]["source"].endswith("quokkas.md")
