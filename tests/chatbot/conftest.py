"""Fixtures for the chatbot app: a small real corpus indexed once, and apps served over real HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from chatlog import ChatLog
from ragloop.process import ThreadedServer
from ragloop.settings import Settings

# Small hand-written documents: fast to embed, and each question below has one clear home.
DOCS = {
    "files.md": """# Working with files

## How do I copy a file?

Use `shutil.copy(src, dst)` to copy a file's contents and permission bits, or `shutil.copy2` to
also keep metadata such as modification times. `shutil.copyfile` copies only the contents.

## How do I delete a file?

Call `os.remove(path)` (or `pathlib.Path(path).unlink()`) to delete a file. Use `shutil.rmtree`
to delete a whole directory tree.
""",
    "lists.md": """# Lists

## How do I sort a list?

`sorted(iterable)` returns a new sorted list; `list.sort()` sorts a list in place. Both accept a
`key` function and `reverse=True`. Sorting is stable.

## How do I remove duplicates from a list?

Build a dict with `dict.fromkeys(items)` and turn it back into a list to keep the first
occurrence of each element in order, or use `set(items)` when order does not matter.
""",
    "strings.md": """# Strings

## How do I convert a string to a number?

Use `int("42")` for integers and `float("3.14")` for floating point numbers. `int` accepts a
`base` argument, e.g. `int("ff", 16)` is 255. Invalid input raises `ValueError`.
""",
}


def _app_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for app tests: a short answer cap and the shared data dir."""
    base: dict[str, object] = {
        "data_dir": data_dir,
        "max_tokens": 32,
        "top_k": 2,
        "llm_timeout_s": 60.0,
        "max_message_chars": 500,
        "collection": "chatbot-tests",
        # Telemetry has its own tests; here it would only add exporter retries to a dead collector.
        "telemetry": False,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def indexed_dir(tmp_path_factory: pytest.TempPathFactory, index_docs: Callable[..., Path]) -> Path:
    """A data dir whose embedded Chroma holds the small corpus (indexed once per session)."""
    root = tmp_path_factory.mktemp("chatbot-app")
    return index_docs(root, DOCS, _app_settings(root / "data"))


@contextlib.contextmanager
def serve(settings: Settings) -> Iterator[str]:
    """Run ``create_app(settings)`` under uvicorn in a thread on a free port; yield its base URL."""
    from chatbot import create_app

    # A browser keeps Gradio's event stream open: do not wait long for it on shutdown.
    with ThreadedServer(
        create_app(settings), "/healthz", name="chat-app", timeout_graceful_shutdown=2
    ) as server:
        yield server.base


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A chat-log URL: a fresh SQLite file, or the session's real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'chatlog.db'}"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture(scope="session")
def app_factory(indexed_dir: Path) -> Iterator[Callable[..., contextlib.AbstractContextManager[str]]]:
    """``with app_factory(**settings_overrides) as base_url:`` serves an app over the indexed corpus."""

    def factory(**overrides: object) -> contextlib.AbstractContextManager[str]:
        return serve(_app_settings(indexed_dir, **overrides))

    yield factory


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def live_app(
    request: pytest.FixtureRequest,
    llm_server: str,
    indexed_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict]:
    """One app against the real LLM per chat-log backend (SQLite, PostgreSQL), shared by a module."""
    if request.param == "sqlite":
        db = f"sqlite:///{tmp_path_factory.mktemp('live') / 'chatlog.db'}"
    else:
        db = str(request.getfixturevalue("postgres_url"))
    settings = _app_settings(indexed_dir, openai_base_url=llm_server, database_url=db)
    with serve(settings) as base:
        yield {"url": base, "db": db, "settings": settings}


@pytest.fixture()
def chatlog_for() -> Iterator[Callable[[str], ChatLog]]:
    """Open chat logs to assert on; closed after the test."""
    opened: list[ChatLog] = []

    def open_log(url: str) -> ChatLog:
        log = ChatLog(url)
        opened.append(log)
        return log

    yield open_log
    for log in opened:
        log.close()


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A real TCP server that accepts connections and never answers (an LLM that hangs); its port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(sock.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        sock.close()


@pytest.fixture()
def browser() -> Iterator[Any]:
    """Headless Debian Chromium (Playwright), one per test (tests/chatbot/browser.py)."""
    from tests.chatbot.browser import chromium

    with chromium() as b:
        yield b
