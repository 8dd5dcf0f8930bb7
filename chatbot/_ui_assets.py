"""What the page carries besides components: favicon, CSS and the keyboard script.

No colour-emoji font is needed anywhere: buttons and marks are plain text or inline SVG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: The product's icon (an SVG "R"), also served at ``/favicon.svg`` for the sign-in page.
FAVICON = Path(__file__).parent / "static" / "favicon.svg"

CSS = """
#history-list button { text-align: left; justify-content: flex-start; white-space: nowrap;
  overflow: hidden; text-overflow: ellipsis; }
#history-list label { max-width: 100%; min-width: 0; box-sizing: border-box; }
#history-list label span { overflow-wrap: anywhere; word-break: break-word; min-width: 0; }
.ragloop-small { font-size: 0.78em; opacity: 0.75; margin-top: 0.4em; }
.ragloop-cited { font-weight: 600; }
#chat .message-wrap a.cite { text-decoration: none; font-weight: 600; }
"""

#: The page's icon link (Gradio's page has none of its own when mounted).
HEAD = '<link rel="icon" type="image/svg+xml" href="/favicon.svg">'


def ui_mount_kwargs(app: Any) -> dict[str, Any]:
    """Keyword arguments for ``gr.mount_gradio_app`` (favicon, CSS, script); adds the UI's own routes."""
    from fastapi.responses import FileResponse

    if not any(getattr(r, "path", None) == "/favicon.svg" for r in app.routes):

        @app.get("/favicon.svg", include_in_schema=False)
        async def favicon() -> FileResponse:
            return FileResponse(FAVICON, media_type="image/svg+xml")

    from chatbot._ui_routes import add_ui_routes

    add_ui_routes(app)
    return {"favicon_path": str(FAVICON), "css": CSS, "head": HEAD}
