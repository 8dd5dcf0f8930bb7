"""App -> real rotel collector -> real Phoenix with content tracing on: no PII or key reaches the backend.

Redaction (``RAGLOOP_REDACT``) is on by default; the question and the feedback comment carry every
kind the exporters mask (tests/pii.py). The chat log keeps the original text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitoring import ChatLog, Telemetry
from tests.monitoring.conftest import phoenix_spans, telemetry_settings
from tests.pii import ORDER_NUMBER, PII_TEXT, leaked

pytestmark = pytest.mark.slow


def test_pii_in_question_and_comment_never_reaches_the_trace_backend(
    otel_stack: dict,
    instant_llm: str,
    indexed_dir: Path,
    shared_retriever: Any,
    app_with: Any,
    tmp_path: Path,
) -> None:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    settings = telemetry_settings(
        indexed_dir,
        openai_base_url=instant_llm,
        database_url=db,
        otlp_endpoint=otel_stack["http"],
        otlp_protocol="http/protobuf",
    )
    assert settings.redact and settings.trace_content  # the defaults
    tel = Telemetry(settings)
    try:
        with app_with(settings, tel, shared_retriever) as base:
            resp = httpx.post(f"{base}/api/chat", json={"message": PII_TEXT, "stream": False}, timeout=300)
            assert resp.status_code == 200, resp.text
            turn_id = resp.json()["turn_id"]
            fb = httpx.post(
                f"{base}/api/feedback", json={"turn_id": turn_id, "value": -1, "comment": f"see {PII_TEXT}"}
            )
            assert fb.status_code == 201, fb.text
            assert tel.force_flush()
    finally:
        tel.shutdown()
    row = ChatLog(db).get_turn(turn_id)
    assert row is not None and row["user_message"] == PII_TEXT  # the chat log keeps the original
    spans = phoenix_spans(otel_stack["phoenix"], row["trace_id"], min_count=8, timeout=180)
    assert len(spans) >= 8, f"{len(spans)} spans reached Phoenix"  # an empty dump would prove nothing
    dump = json.dumps(spans)
    assert leaked(dump) == []
    assert "copy a file" in dump and ORDER_NUMBER in dump  # the rest of the text is traced
    assert "[EMAIL]" in dump and "[CARD]" in dump and "[API_KEY]" in dump
