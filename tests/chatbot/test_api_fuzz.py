"""schemathesis against the app's OpenAPI schema: no 5xx, every error in the documented shape (issue 12).

The app is the one users run (``ragloop.app.create_asgi_app``), served by uvicorn on 127.0.0.1 in
front of a real OpenAI-compatible endpoint that answers at once (:class:`InstantLLM`), so hundreds
of generated turns take seconds. Every operation of ``/openapi.json`` gets up to
``RAGLOOP_FUZZ_EXAMPLES`` generated requests (default 40) over real HTTP.

Checks, on every response:
- the status is below 500;
- a 4xx body is exactly ``{"error": {"code": str, "message": str, "turn_id": str|null, ...}}``
  (``retry_after_s`` may be there too), with ``Retry-After`` on 429.

``bench/bench_api_fuzz.py`` runs this test and records the counts (``RAGLOOP_FUZZ_REPORT``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from monitoring._instant_llm import InstantLLM
from ragloop.process import ThreadedServer

EXAMPLES = int(os.environ.get("RAGLOOP_FUZZ_EXAMPLES", "40"))
COUNTS: dict[str, Any] = {"cases": 0, "server_errors": 0, "bad_error_shape": 0, "by_status": {}}


def _settings(indexed_dir: Path, db: str, llm: str) -> Any:
    from ragloop.settings import Settings

    return Settings(
        data_dir=indexed_dir,
        collection="chatbot-tests",
        openai_base_url=llm,
        database_url=db,
        telemetry=False,
        eval_online=False,
        max_tokens=16,
        max_message_chars=500,
        queue_depth=64,
    )


@pytest.fixture(scope="module")
def served(indexed_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``create_asgi_app`` under uvicorn on a free port, in front of an instant LLM."""
    from ragloop.app import create_asgi_app

    db = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'chatlog.db'}"
    with InstantLLM() as llm:
        app = create_asgi_app(_settings(indexed_dir, db, llm.base_url))
        with ThreadedServer(app, "/healthz", name="fuzz-app", timeout_graceful_shutdown=2) as server:
            yield server.base
    report = os.environ.get("RAGLOOP_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(COUNTS, indent=2))


@pytest.fixture(scope="module")
def api_schema(served: str) -> Any:
    """The app's own OpenAPI document, fetched over HTTP."""
    return schemathesis.openapi.from_url(f"{served}/openapi.json")


def error_shape_problem(status: int, headers: Any, body: Any) -> str | None:
    """What is wrong with an error response, or None when it has the documented shape."""
    if status < 400:
        return None
    if not isinstance(body, dict) or set(body) != {"error"}:
        return f"body is not {{'error': ...}}: {str(body)[:200]}"
    err = body["error"]
    if not isinstance(err, dict) or not {"code", "message", "turn_id"} <= set(err):
        return f"error lacks code/message/turn_id: {err}"
    if not isinstance(err["code"], str) or not isinstance(err["message"], str) or not err["message"]:
        return f"code and message must be non-empty strings: {err}"
    if set(err) - {"code", "message", "turn_id", "retry_after_s"}:
        return f"undocumented error fields: {sorted(err)}"
    if status == 429 and "retry-after" not in {k.lower() for k in headers}:
        return "429 without Retry-After"
    return None


def _check(case: Any, served: str) -> None:
    response = case.call(base_url=served, timeout=30)
    COUNTS["cases"] += 1
    status = response.status_code
    COUNTS["by_status"][str(status)] = COUNTS["by_status"].get(str(status), 0) + 1
    if status >= 500:
        COUNTS["server_errors"] += 1
    assert status < 500, f"{case.method} {case.formatted_path}: {status} {response.text[:300]}"
    try:
        body = response.json()
    except ValueError:
        body = response.text
    problem = error_shape_problem(status, response.headers, body)
    if problem:
        COUNTS["bad_error_shape"] += 1
    assert problem is None, f"{case.method} {case.formatted_path} -> {status}: {problem}"


@pytest.mark.timeout(1200)
def test_no_server_errors_and_every_error_in_the_documented_shape(api_schema: Any, served: str) -> None:
    # schemathesis' pytest plugin (from_fixture) fails under pytest 9 ('Function' has no _nodeid):
    # drive each operation's hypothesis strategy directly instead.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 4
    for operation in operations:

        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            _check(case, served)

        run()
    assert COUNTS["cases"] >= len(operations)


def test_the_shape_check_itself_catches_bad_errors() -> None:
    ok = {"error": {"code": "x", "message": "m", "turn_id": None}}
    assert error_shape_problem(404, {}, ok) is None
    assert error_shape_problem(422, {}, {"detail": [{"msg": "bad"}]}) is not None
    assert error_shape_problem(404, {}, {"error": {"code": "x"}}) is not None
    assert error_shape_problem(429, {}, ok) == "429 without Retry-After"
