"""Requests a user gets wrong: each gets the API's JSON error with the right status, over the real app.

Found by trying the product: ``{"message": 5}`` was called empty, ``"stream": "yes"`` was taken
as true, ``GET /api/chat`` said there was no such route, and ``POST /healthz`` got the UI's
``{"detail": "Not Found"}``. No LLM is needed: each request stops before a model call.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx


def test_wrong_types_and_methods_get_clear_json_errors(
    app_factory: Callable[..., Any], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    with app_factory(database_url=db, openai_base_url="http://127.0.0.1:9/v1") as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            typed = client.post("/api/chat", json={"message": 5})
            assert typed.status_code == 422 and typed.json()["error"]["code"] == "invalid_message", typed.text
            assert "not int" in typed.json()["error"]["message"]
            loose = client.post("/api/chat", json={"message": "hi", "stream": "yes"})
            assert loose.status_code == 422 and loose.json()["error"]["code"] == "invalid_request", loose.text
            assert "stream" in loose.json()["error"]["message"]
            for method, path, allow in (
                ("GET", "/api/chat", "POST"),
                ("GET", "/api/feedback", "POST"),
                ("POST", "/healthz", "GET"),
                ("DELETE", "/readyz", "GET"),
            ):
                resp = client.request(method, path)
                assert resp.status_code == 405, (method, path, resp.text)
                assert resp.json()["error"]["code"] == "method_not_allowed" and resp.headers["allow"] == allow
            unknown = client.get("/api/nothing-here")
            assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
