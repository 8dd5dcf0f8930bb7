"""Documents from the UI: upload, ingestion progress, per-file results, the indexed list, removal.

Two things for the app (the chat UI mounts the tab; the composition adds the route):

- :func:`build_documents_tab` builds the tab's blocks inside the caller's ``gr.Blocks`` (wrap it
  in ``with gr.Tab("Documents"):``). Uploads are ingested into the app's own index through
  :mod:`retrieval._documents`: searchable at once, no restart.
- :func:`add_document_routes` adds ``GET /documents/{root}/{path}``, which serves the indexed
  documents read-only, and only those (404 for anything else, symlinks and traversal included).
  Every response is sent with ``Content-Security-Policy: sandbox`` and ``nosniff``: an uploaded
  HTML page cannot run script on the app's origin.

:func:`indexing_status` is the one-line progress text of background indexing the UI can show.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: File types the upload area accepts (the loaders' formats).
UPLOAD_TYPES = [".md", ".markdown", ".rst", ".txt", ".html", ".htm", ".pdf"]
#: Media types documents are served with; everything textual is plain text (never rendered HTML
#: from an upload), PDF is PDF.
_MEDIA = {".pdf": "application/pdf"}
_SERVE_HEADERS = {"Content-Security-Policy": "sandbox", "X-Content-Type-Options": "nosniff"}


def indexing_status(progress: dict[str, Any] | None = None) -> str:
    """One line of Markdown on background indexing (empty when nothing is or was indexing).

    Args:
        progress: :func:`retrieval.index_progress` (read when omitted).
    """
    if progress is None:
        from retrieval import index_progress

        progress = index_progress()
    state = progress.get("state")
    if state in (None, "idle"):
        return ""
    if state == "failed":
        return f"**Indexing failed:** {progress.get('error')}"
    if state == "ready":
        return f"Index ready ({progress.get('finished_s')} s)."
    what = "the first documents" if progress.get("phase") == "first slice" else "the rest of the corpus"
    pct = progress.get("percent")
    rate = progress.get("chunks_per_s")
    detail = f"{progress.get('step')} {progress.get('done')}/{progress.get('total')}"
    detail += f" ({pct}%)" if pct is not None else ""
    detail += f", {rate} chunks/s" if rate else ""
    ready = " Answers use what is indexed so far." if progress.get("first_slice_ready") else ""
    return f"Indexing {what}: {detail}.{ready}"


def _settings_and_embedder(service_or_ingestor: Any, settings: Settings | None) -> tuple[Settings, Any]:
    settings = settings or service_or_ingestor.settings
    embedder = getattr(getattr(service_or_ingestor, "retriever", None), "embedder", None)
    return settings, embedder


def documents_rows(settings: Settings) -> list[list[Any]]:
    """``[document id, title, chunks]`` rows of every indexed document."""
    from retrieval._documents import list_documents

    return [[d.doc_id, d.ref.title, d.chunks] for d in list_documents(settings)]


def matching_rows(rows: list[list[Any]], query: str | None) -> list[list[Any]]:
    """The ``rows`` whose document id or title contains every word of ``query`` (any case)."""
    words = (query or "").lower().split()
    if not words:
        return rows
    return [r for r in rows if all(w in f"{r[0]} {r[1]}".lower() for w in words)]


def results_rows(results: list[Any]) -> list[list[Any]]:
    """``[file, result, chunks, reason]`` rows of upload results."""
    return [[r.name, "indexed" if r.ok else "failed", r.chunks, r.reason] for r in results]


def build_documents_tab(service_or_ingestor: Any, settings: Settings | None = None) -> None:
    """Build the documents tab's blocks in the current ``gr.Blocks`` context.

    Args:
        service_or_ingestor: the chat service (its ``settings`` and ``retriever.embedder`` are
            used, so uploads land in the index it searches, embedded by the same model variant).
        settings: overrides the service's settings.
    """
    import gradio as gr

    settings, embedder = _settings_and_embedder(service_or_ingestor, settings)
    status = gr.Markdown(indexing_status(), elem_id="indexing-status")
    with gr.Row():
        files = gr.File(
            label="Add documents (md, rst, txt, html, pdf)",
            file_count="multiple",
            file_types=UPLOAD_TYPES,
            type="filepath",
            elem_id="upload-files",
        )
    add = gr.Button("Add to index", variant="primary", elem_id="upload-button")
    results = gr.Dataframe(
        headers=["file", "result", "chunks", "reason"],
        value=[],
        label="Upload results",
        interactive=False,
        wrap=True,
        elem_id="upload-results",
    )
    find = gr.Textbox(
        label="Find a document",
        placeholder="part of its path or title (filters the list and the choices below)",
        elem_id="documents-filter",
    )
    docs = gr.Dataframe(
        headers=["document", "title", "chunks"],
        value=[],
        label="Indexed documents",
        interactive=False,
        wrap=True,
        column_widths=["52%", "36%", "12%"],  # the chunk counts stay in view beside long paths
        elem_id="documents-list",
    )
    with gr.Row():
        # Every matching document is a choice (Gradio shows only the first 100 by default), and
        # typing in the box filters them; "Find a document" narrows them on the server.
        choice = gr.Dropdown(
            label="Document to remove",
            choices=[],
            allow_custom_value=True,
            filterable=True,
            num_choices_shown=1_000_000,  # None still showed 100 (Gradio 6.31)
            elem_id="remove-choice",
        )
        remove = gr.Button("Remove document", variant="stop", elem_id="remove-button")
    removed = gr.Markdown(elem_id="remove-result")

    def _listing(query: str | None = None) -> tuple[Any, Any]:
        rows = matching_rows(documents_rows(settings), query)
        return rows, gr.update(choices=[r[0] for r in rows])

    async def on_find(query: str | None) -> tuple[Any, Any]:
        return await asyncio.to_thread(_listing, query)

    async def on_upload(
        paths: list[str] | None, query: str | None, progress: gr.Progress = gr.Progress()
    ) -> tuple[Any, ...]:
        if not paths:
            return [["(none)", "failed", 0, "choose one or more files first"]], *_listing(query), None
        uploads = [(Path(p).name, Path(p).read_bytes()) for p in paths]
        out = await asyncio.to_thread(upload_files, settings, uploads, embedder, progress)
        return results_rows(out), *await asyncio.to_thread(_listing, query), None

    async def on_remove(doc_id: str | None, query: str | None) -> tuple[Any, ...]:
        message = await asyncio.to_thread(remove_message, settings, doc_id or "")
        rows, _ = await asyncio.to_thread(_listing, query)
        return message, rows, gr.update(choices=[r[0] for r in rows], value=None)  # removed: unchosen

    def on_tick(query: str | None, seen: str | None) -> tuple[Any, ...]:
        """The progress line; the list again whenever indexing moved on (a phase ended, ready)."""
        from retrieval import index_progress

        progress = index_progress()
        stage = _stage(progress)
        if stage == seen:
            return indexing_status(progress), gr.skip(), gr.skip(), seen
        return indexing_status(progress), *_listing(query), stage

    # The progress bar goes on the results table only: the list and the rest stay readable.
    add.click(on_upload, [files, find], [results, docs, choice, files], show_progress_on=[results])
    remove.click(on_remove, [choice, find], [removed, docs, choice], show_progress_on=[removed])
    find.change(on_find, [find], [docs, choice], show_progress="hidden")
    stage = gr.State(None)
    timer = gr.Timer(3.0)
    timer.tick(on_tick, [find, stage], [status, docs, choice, stage], show_progress="hidden")
    from gradio.context import Context

    def on_load() -> tuple[Any, ...]:
        from retrieval import index_progress

        stage_now = _stage(index_progress())
        return *_listing(), stage_now

    ctx = Context.root_block
    if ctx is not None:
        ctx.load(on_load, None, [docs, choice, stage])


def _stage(progress: dict[str, Any]) -> str:
    """Background indexing's stage: the list is read again each time it changes."""
    return f"{progress.get('state')}:{progress.get('phase')}:{progress.get('first_slice_ready')}"


def upload_files(
    settings: Settings, uploads: list[tuple[str, bytes]], embedder: Any, progress: Any
) -> list[Any]:
    """Ingest uploaded ``(name, bytes)`` files, reporting progress to a ``gr.Progress``."""
    from retrieval._documents import add_uploads

    def report(step: str, done: int, total: int) -> None:
        if total:
            progress((done, total), desc=f"{step} ({done}/{total})")

    return add_uploads(settings, uploads, on_progress=report, embedder=embedder)


def remove_message(settings: Settings, doc_id: str) -> str:
    """Remove a document and say what happened, in one line of Markdown."""
    from retrieval._documents import remove_document

    if not doc_id.strip():
        return "Choose a document to remove."
    try:
        n = remove_document(settings, doc_id.strip())
    except KeyError:
        return f"**Not removed:** no indexed document is named `{doc_id}`."
    return f"Removed `{doc_id}` ({n} chunk{'' if n == 1 else 's'}): it is no longer searched."


def add_document_routes(app: Any, settings: Settings) -> None:
    """``GET /documents/{doc_id}``: an indexed document, read-only; 404 for anything else."""
    from fastapi.responses import FileResponse, JSONResponse
    from starlette.responses import Response

    from retrieval._documents import open_document

    @app.get("/documents/{doc_id:path}", response_model=None)
    async def document(doc_id: str) -> Response:
        """Serve one indexed document (plain text, or PDF) with a sandboxing CSP."""
        path = await asyncio.to_thread(open_document, settings, doc_id)
        if path is None:
            body = {
                "error": {
                    "code": "not_found",
                    "message": "No indexed document has that path.",
                    "turn_id": None,
                }
            }
            return JSONResponse(body, status_code=404)
        media = _MEDIA.get(path.suffix.lower(), "text/plain; charset=utf-8")
        return FileResponse(path, media_type=media, headers=_SERVE_HEADERS, content_disposition_type="inline")
