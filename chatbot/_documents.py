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
    docs = gr.Dataframe(
        headers=["document", "title", "chunks"],
        value=[],
        label="Indexed documents",
        interactive=False,
        wrap=True,
        elem_id="documents-list",
    )
    with gr.Row():
        choice = gr.Dropdown(
            label="Document to remove", choices=[], allow_custom_value=True, elem_id="remove-choice"
        )
        remove = gr.Button("Remove document", variant="stop", elem_id="remove-button")
    removed = gr.Markdown(elem_id="remove-result")

    def _listing() -> tuple[Any, Any]:
        rows = documents_rows(settings)
        return rows, gr.update(choices=[r[0] for r in rows])

    async def on_upload(paths: list[str] | None, progress: gr.Progress = gr.Progress()) -> tuple[Any, ...]:
        if not paths:
            return [["(none)", "failed", 0, "choose one or more files first"]], *_listing(), None
        uploads = [(Path(p).name, Path(p).read_bytes()) for p in paths]
        out = await asyncio.to_thread(upload_files, settings, uploads, embedder, progress)
        return results_rows(out), *await asyncio.to_thread(_listing), None

    async def on_remove(doc_id: str | None) -> tuple[Any, ...]:
        message = await asyncio.to_thread(remove_message, settings, doc_id or "")
        rows = await asyncio.to_thread(documents_rows, settings)
        return message, rows, gr.update(choices=[r[0] for r in rows], value=None)  # removed: unchosen

    # The progress bar goes on the results table only: the list and the rest stay readable.
    add.click(on_upload, [files], [results, docs, choice, files], show_progress_on=[results])
    remove.click(on_remove, [choice], [removed, docs, choice], show_progress_on=[removed])
    timer = gr.Timer(3.0)
    timer.tick(indexing_status, None, status)
    from gradio.context import Context

    ctx = Context.root_block
    if ctx is not None:
        ctx.load(_listing, None, [docs, choice])


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
