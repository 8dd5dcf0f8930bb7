"""The UI's own pages: one retrieved passage in full.

The target of ``[n]`` markers and of "Open passage", shown only to the owner of the conversation
the turn belongs to.
"""

from __future__ import annotations

import asyncio
import html
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from chatbot import _ui_render as render
from chatbot._auth import current_user

_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title} - ragloop</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<style>body{{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;padding:0 1rem;
line-height:1.5}}
pre{{white-space:pre-wrap;background:#f4f4f5;padding:1rem;border-radius:.4rem}}.meta{{color:#52525b}}</style>
</head><body><p><a href="/">ragloop</a></p><h1 id="passage-title">[{n}] {title}</h1>
<p class="meta"><code>{path}</code> - {cited} - score {score:.2f}</p>
<pre id="passage-text">{text}</pre>
<p><a id="document-link" href="{doc}">Open the document</a></p></body></html>"""


def passage_page(source: dict[str, Any], n: int) -> str:
    """The HTML page of passage ``n`` (a ``Source`` dict)."""
    path = render.source_path(source)
    return _PAGE.format(
        n=n,
        title=html.escape(str(source.get("title") or path or "untitled")),
        path=html.escape(path),
        cited="cited by the answer" if source.get("cited") else "not cited",
        score=float(source.get("score") or 0.0),
        text=html.escape(str(source.get("text", ""))),
        doc=html.escape(render.document_url(str(source.get("source", "")), source.get("doc_id")), quote=True),
    )


def add_ui_routes(app: Any) -> None:
    """Add ``GET /ui/passage/{turn_id}/{n}`` (call before the UI is mounted at ``/``)."""
    if any(getattr(r, "path", None) == "/ui/passage/{turn_id}/{n}" for r in app.routes):
        return

    @app.get("/ui/passage/{turn_id}/{n}", response_class=HTMLResponse, include_in_schema=False)
    async def passage(turn_id: str, n: int, request: Request) -> HTMLResponse:
        log = app.state.service.chatlog
        user = current_user(request)
        turn = await asyncio.to_thread(log.get_turn, turn_id)
        conv = await asyncio.to_thread(log.get_conversation, turn["conversation_id"]) if turn else None
        sources = render.sources_from_row(turn) if turn else []
        if conv is None or conv.get("user_id") != user.id or not 1 <= n <= len(sources):
            return HTMLResponse(
                "<!doctype html><title>Not found - ragloop</title><p>No such passage.</p>", 404
            )
        return HTMLResponse(passage_page(sources[n - 1], n))
