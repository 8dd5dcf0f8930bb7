"""The documents view with more than a hundred documents, in headless Chromium (Debian ``chromium``).

The real app over its own index of 105 documents (real embedder, embedded Chroma): an upload
made in the page is among the "Document to remove" choices (Gradio showed only the first 100,
alphabetically), "Find a document" narrows the list and the choices, the chunks column is in
view at 1400 px, and a document that background indexing adds appears in the list when that
indexing finishes, without a reload. Screenshot: ``bench/results/ui/documents_find.png``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chatbot.browser import chromium, wait_for
from tests.chatbot.conftest import _app_settings, serve
from tests.chatbot.test_documents_browser import _rows
from tests.chatbot.test_ui_browser import shot

pytestmark = [pytest.mark.browser]

N = 105
DOCS = {
    f"note-{i:03d}-on-the-keeping-of-registers-and-ledgers.md": (
        f"# Register keeping, part {i}: ledgers, journals and the annual audit\n\n"
        f"Part {i} says the ledger of year {1900 + i} is kept in cabinet {i}.\n"
    )
    for i in range(N)
}
UPLOAD = "zebra-crossings.md"
LISTING = "#documents-list"


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, index_docs: Callable[..., Path]
) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("documents-find")
    data = index_docs(root, DOCS, _app_settings(root / "data"))
    settings = _app_settings(
        data, openai_base_url="http://127.0.0.1:9/v1", database_url=f"sqlite:///{root / 'chatlog.db'}"
    )
    with serve(settings) as base:
        yield {"url": base, "settings": settings}


def _choices(page: Any) -> list[str]:
    """The options the "Document to remove" dropdown shows now (opened by a click)."""
    box = page.locator("#remove-choice input")
    box.click()
    page.wait_for_timeout(500)
    listbox = box.get_attribute("aria-controls")  # the options are drawn outside the component
    out = [t.strip() for t in page.locator(f"[id='{listbox}'] li").all_inner_texts()]
    page.keyboard.press("Escape")
    page.keyboard.press("Tab")  # leave the box: the next click opens it again
    return out


def test_every_document_can_be_found_and_removed(app: dict[str, Any]) -> None:
    from retrieval import _background

    with chromium() as browser:
        page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.goto(app["url"] + "/")
        page.get_by_role("tab", name="Documents").click()
        page.locator("#upload-button").wait_for(timeout=60_000)
        wait_for(lambda: _rows(page, LISTING), 60, "the indexed documents")

        # The chunks column is in view at 1400 px.
        header = page.locator(f"{LISTING} [role=columnheader]").filter(has_text="chunks").first
        box = header.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1400, box
        assert header.is_visible()

        # Upload one file in the page; it is among the choices, with every other document.
        page.locator("#upload-files input[type=file]").set_input_files(
            [{"name": UPLOAD, "mimeType": "text/markdown", "buffer": b"# Zebra crossings\n\nStripes.\n"}]
        )
        wait_for(lambda: "zebra" in page.locator("#upload-files").inner_text(), 30, "the chosen file")
        page.locator("#upload-button").click()
        wait_for(lambda: _rows(page, "#upload-results"), 120, "the upload's result")
        choices = wait_for(lambda: (c := _choices(page)) and f"uploads/{UPLOAD}" in c and c, 30, "the upload")
        assert len(choices) == N + 1, len(choices)

        # Find a document: the list and the choices narrow to the matches.
        page.locator("#documents-filter textarea, #documents-filter input").first.fill("zebra")
        wait_for(
            lambda: [r[0] for r in _rows(page, LISTING)] == [f"uploads/{UPLOAD}"], 30, "the filtered list"
        )
        assert _choices(page) == [f"uploads/{UPLOAD}"]
        shot(page, "documents_find")
        box = page.locator("#remove-choice input")
        box.click()
        box.press_sequentially("zebra")  # typing in the box filters its choices too
        page.locator(f"[id='{box.get_attribute('aria-controls')}'] li").filter(has_text=UPLOAD).first.click()
        page.locator("#remove-button").click()
        wait_for(lambda: "Removed" in page.locator("#remove-result").inner_text(), 60, "the removal")
        page.locator("#documents-filter textarea, #documents-filter input").first.fill("")
        wait_for(lambda: len(_choices(page)) == N, 30, "the list without the upload")

        # Background indexing adds a document: the list shows it once that indexing finishes.
        from retrieval._documents import add_uploads

        find = page.locator("#documents-filter textarea, #documents-filter input").first
        find.fill("late")
        wait_for(lambda: not _rows(page, LISTING), 30, "no match yet")
        before = _background.index_progress()
        try:
            _background._update(state="indexing", phase="rest", first_slice_ready=True)
            page.wait_for_timeout(4000)  # a timer tick sees the indexing
            assert add_uploads(app["settings"], [("late-arrival.md", b"# Late arrival\n\nLate.\n")])[0].ok
            page.wait_for_timeout(4000)
            assert not _rows(page, LISTING), "the list is read again when indexing moves on, not each tick"
            _background._update(state="ready", finished_s=1.0)
            wait_for(
                lambda: any(r[0] == "uploads/late-arrival.md" for r in _rows(page, LISTING)),
                30,
                "the list refreshed when indexing finished",
            )
        finally:
            _background._update(
                **{k: before[k] for k in ("state", "phase", "first_slice_ready", "finished_s")}
            )
