"""Fixtures for telemetry tests: one real rotel collector + Phoenix pair per session, a small indexed
corpus, a zero-latency OpenAI-compatible endpoint, and apps served over real HTTP."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ragloop.process import ThreadedServer, free_port
from ragloop.settings import Settings

DOCS = {
    "files.md": """# Working with files

## How do I copy a file?

Use `shutil.copy(src, dst)` to copy a file's contents and permission bits, or `shutil.copy2` to
also keep metadata such as modification times.

## How do I delete a file?

Call `os.remove(path)` (or `pathlib.Path(path).unlink()`) to delete a file.
""",
    "lists.md": """# Lists

## How do I sort a list?

`sorted(iterable)` returns a new sorted list; `list.sort()` sorts a list in place.
""",
}


def telemetry_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings for telemetry tests: short answers, a quiet local stack, no LangSmith by default."""
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "collection": "telemetry-tests",
        "max_tokens": 16,
        "llm_timeout_s": 120.0,
        "collector": False,
        "phoenix": False,
        "otlp_endpoint": None,
        "metrics_export_interval_s": 1.0,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture(scope="session")
def indexed_dir(tmp_path_factory: pytest.TempPathFactory, index_docs: Callable[..., Path]) -> Path:
    """A data dir whose embedded Chroma holds a tiny corpus (indexed once per session)."""
    root = tmp_path_factory.mktemp("telemetry-corpus")
    return index_docs(root, DOCS, telemetry_settings(root / "data"))


@pytest.fixture(scope="session")
def shared_retriever(indexed_dir: Path) -> Any:
    """One retriever (embedding model loaded once) for every service built in this package."""
    from retrieval import Retriever

    return Retriever(telemetry_settings(indexed_dir))


@pytest.fixture(scope="session")
def instant_llm() -> Iterator[str]:
    """A zero-latency OpenAI-compatible endpoint (real HTTP, streaming); yields its base URL."""
    from monitoring._instant_llm import InstantLLM

    with InstantLLM() as server:
        yield server.base_url


@pytest.fixture(scope="session")
def otel_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A real rotel collector forwarding traces to a real Phoenix, started as `ragloop run` does."""
    from monitoring import start_local_stack

    settings = Settings(
        data_dir=tmp_path_factory.mktemp("otel-stack"),
        collector_grpc_port=free_port(),
        collector_http_port=free_port(),
        phoenix_port=free_port(),
        phoenix_grpc_port=free_port(),
    )
    procs = start_local_stack(settings)
    try:
        yield {
            "grpc": f"http://127.0.0.1:{settings.collector_grpc_port}",
            "http": f"http://127.0.0.1:{settings.collector_http_port}",
            "phoenix": f"http://127.0.0.1:{settings.phoenix_port}",
            "procs": procs,
        }
    finally:
        for proc in reversed(procs):
            proc.stop()


def phoenix_spans(
    phoenix: str, trace_id: str, min_count: int = 1, timeout: float = 30.0, names: Collection[str] = ()
) -> list[dict]:
    """Spans of one trace read back from Phoenix's REST API, polling until ``min_count`` arrived.

    ``names``: also wait until a span of each of these names is there. The collector forwards a
    trace in batches and Phoenix stores them in the background, so the first ``min_count`` spans
    to arrive need not hold the ones a test picks out.
    """
    deadline = time.monotonic() + timeout
    found: list[dict] = []
    while time.monotonic() < deadline:
        found, cursor = [], None
        while True:
            params: dict[str, Any] = {"limit": 1000}
            if cursor:
                params["cursor"] = cursor
            body = httpx.get(f"{phoenix}/v1/projects/default/spans", params=params, timeout=10).json()
            found += [s for s in body["data"] if s["context"]["trace_id"] == trace_id]
            cursor = body.get("next_cursor")
            if not cursor:
                break
        if len(found) >= min_count and set(names) <= {s["name"] for s in found}:
            return found
        time.sleep(0.5)
    return found


@contextlib.contextmanager
def serve_app(settings: Settings, observer: Any, retriever: Any) -> Iterator[str]:
    """Serve the chat app with ``observer`` under uvicorn in a thread; yield its base URL."""
    from chatbot import build_service, create_app

    service = build_service(settings, observer=observer, retriever=retriever)
    app = create_app(settings, service=service, observer=observer)
    try:
        with ThreadedServer(app, "/healthz", name="chat-app") as server:
            yield server.base
    finally:
        service.chatlog.close()


@pytest.fixture()
def app_with() -> Callable[..., contextlib.AbstractContextManager[str]]:
    """``with app_with(settings, observer, retriever) as url:`` serves an instrumented app."""
    return serve_app
