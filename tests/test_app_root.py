"""The composition root as users run it: ``ragloop serve`` and ``ragloop ingest`` as real processes.

* ``ragloop serve`` assembles the same application as ``ragloop run`` (``ragloop.app``): a turn
  answered by it gets scored by the online evaluator (an ``evaluations`` row appears). Before the
  composition root only ``run`` started the evaluator, so this failed.
* Issue 9, fault 11: a ``ragloop ingest`` run beside a serving app (embedded Chroma, no server)
  makes new documents searchable within seconds, and no turn fails meanwhile. Before, the next
  question failed with ``internal_error`` ("Error creating hnsw segment reader: Nothing found on
  disk") when the collection was new, or did not see the new documents until a restart.
* ``ragloop ingest`` beside ``ragloop run`` writes through the Chroma server ``run`` started.

The LLM is the session's real local server (``llm_server``); answers are capped at a few tokens.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from ragloop.process import ManagedProcess, free_port, http_ok
from ragloop.settings import Settings

SETS = "# Sets\n\nA set holds unique items; `set.add(x)` inserts one and `set.discard(x)` removes one.\n"
#: A fact no model knows: only retrieval of the new file can bring it into a turn.
ZORBLAX = (
    "# The zorblax protocol\n\nThe zorblax protocol hands quarkle tokens to a vintner daemon on port "
    "4711. The zorblax handshake is called the purple wobble.\n"
)
QUESTION = "What is the zorblax handshake called in the zorblax protocol?"


def _env(tmp: Path, llm: str, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "OPENAI_BASE_URL": llm,
        "RAGLOOP_DATA_DIR": str(tmp / "data"),
        "RAGLOOP_TELEMETRY": "false",
        "RAGLOOP_MAX_TOKENS": "8",
        "RAGLOOP_EVAL_POLL_S": "0.5",
        "RAGLOOP_LABELING_UI": "none",
        "HF_HUB_OFFLINE": "1",
        **extra,
    }


def _ingest(env: dict[str, str], *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ragloop.cli", "ingest", "-q", *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _serve(tmp: Path, env: dict[str, str]) -> tuple[ManagedProcess, str]:
    port = free_port()
    argv = [sys.executable, "-m", "ragloop.cli", "serve", "--port", str(port)]
    proc = ManagedProcess("ragloop-serve", argv, tmp / "serve.log", env=env, cwd=tmp).start()
    base = f"http://127.0.0.1:{port}"
    proc.wait_ready(lambda: http_ok(f"{base}/healthz", timeout=5), timeout=240)
    return proc, base


@pytest.fixture()
def served(tmp_path: Path, llm_server: str) -> Iterator[tuple[str, dict[str, str], Path]]:
    """``ragloop serve`` over an embedded index holding one small file; yields (base URL, env, tmp)."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "sets.md").write_text(SETS)
    env = _env(tmp_path, llm_server)
    done = _ingest(env, corpus)
    assert done.returncode == 0, done.stderr
    proc, base = _serve(tmp_path, env)
    try:
        yield base, env, tmp_path
    finally:
        proc.stop()
        assert proc.proc is not None and proc.proc.returncode is not None


def _ask(base: str, question: str) -> dict:
    resp = httpx.post(f"{base}/api/chat", json={"message": question}, timeout=120)
    body = resp.json()
    assert resp.status_code == 200, body  # no turn may fail
    return body


def _first_ask_that_finds(base: str, ingested: float, within_s: float = 10.0) -> float | None:
    """Ask until a turn retrieves the new file; the seconds after the ingest that turn was ASKED.

    The time the question was sent, not answered: the answer's LLM time (long on a busy machine)
    is not the index's delay. Every turn must succeed meanwhile (:func:`_ask` asserts 200).
    """
    while (asked := time.monotonic() - ingested) < within_s:
        body = _ask(base, QUESTION)
        if any("zorblax" in s["source"] for s in body["sources"]):
            return asked
    return None


@pytest.mark.llm
@pytest.mark.slow
def test_serve_scores_turns_with_the_online_evaluator(served: tuple[str, dict[str, str], Path]) -> None:
    base, _env_, tmp = served
    turn = _ask(base, "How do I add an item to a set?")
    engine = sa.create_engine(f"sqlite:///{tmp / 'data' / 'chatlog.db'}")
    deadline = time.monotonic() + 120
    rows: list = []
    while time.monotonic() < deadline and not rows:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT evaluator, score FROM evaluations WHERE turn_id = :t"), {"t": turn["turn_id"]}
            ).fetchall()
        time.sleep(0.5)
    assert rows, "ragloop serve did not score the turn: the online evaluator is not running"


@pytest.mark.llm
@pytest.mark.slow
def test_documents_ingested_beside_a_serving_app_are_found_within_seconds(
    served: tuple[str, dict[str, str], Path],
) -> None:
    base, env, tmp = served
    before = _ask(base, QUESTION)
    assert not any("zorblax" in s["source"] for s in before["sources"])

    extra = tmp / "extra"
    extra.mkdir()
    (extra / "zorblax.md").write_text(ZORBLAX)
    done = _ingest(env, extra)  # a second OS process writes the index the app has open
    assert done.returncode == 0, done.stderr
    ingested = time.monotonic()
    found = _first_ask_that_finds(base, ingested)
    assert found is not None, "the running app did not see the ingested document within 10 s"


@pytest.mark.llm
@pytest.mark.slow
def test_a_collection_created_beside_a_serving_app_does_not_fail_turns(
    tmp_path: Path, llm_server: str
) -> None:
    # The app starts on an empty data dir (its collection is created empty), then ingest fills it.
    env = _env(tmp_path, llm_server)
    proc, base = _serve(tmp_path, env)
    try:
        first = httpx.post(f"{base}/api/chat", json={"message": QUESTION}, timeout=120)
        assert first.status_code in (200, 503), first.text  # empty index: a clear 503, not a 500
        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "zorblax.md").write_text(ZORBLAX)
        done = _ingest(env, extra)
        assert done.returncode == 0, done.stderr
        ingested = time.monotonic()
        found = _first_ask_that_finds(base, ingested)  # every turn must succeed: no internal_error
        assert found is not None, "documents ingested into a new collection were not found within 10 s"
    finally:
        proc.stop()


def test_ingest_finds_the_chroma_server_that_run_started(tmp_path: Path) -> None:
    from retrieval import Retriever, chroma_url, start_chroma_server

    settings = Settings(data_dir=tmp_path / "data")
    server = start_chroma_server(settings, port=free_port())
    try:
        assert chroma_url(settings) == server.url
        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "zorblax.md").write_text(ZORBLAX)
        env = {**os.environ, "RAGLOOP_DATA_DIR": str(settings.data_dir), "HF_HUB_OFFLINE": "1"}
        env.pop("RAGLOOP_CHROMA_URL", None)
        done = _ingest(env, extra)
        assert done.returncode == 0, done.stderr
        # Had ingest written the folder embedded, the server (which caches its index) would not
        # see the document. The app's view (RAGLOOP_CHROMA_URL as `ragloop run` sets it) has the document at once.
        retriever = Retriever(settings.model_copy(update={"chroma_url": server.url}))
        hits = retriever.search(QUESTION).chunks
        assert hits and "zorblax" in hits[0].source
    finally:
        server.stop()
    assert chroma_url(settings) is None  # the discovery file goes with the server


def test_the_sink_registry_builds_configured_sinks_and_routes(tmp_path: Path) -> None:
    from chatlog import ChatLog
    from ragloop.app import SINKS, load_sinks, routes_of

    settings = Settings(data_dir=tmp_path / "data", langsmith_api_key="lsv2_pt_registry")  # type: ignore[arg-type]
    chatlog = ChatLog(settings.chatlog_url)
    try:
        registry = (*SINKS, "no_such_vendor_module:from_settings", "ragloop.settings:no_such_factory")
        sinks = load_sinks(settings, chatlog, registry)  # unconfigured and missing entries are skipped
        names = [s.name for s in sinks]
        assert "langsmith" in names and len(names) == len(set(names))
        routes = routes_of(sinks)
        for sink in sinks:
            for kind in sink.kinds:
                assert sink.name in routes[kind]
        assert sum(len(v) for v in routes.values()) == sum(len(s.kinds) for s in sinks)
        # Without its key, LangSmith is not a sink.
        assert "langsmith" not in [s.name for s in load_sinks(Settings(data_dir=tmp_path / "data"), chatlog)]
    finally:
        chatlog.close()


def test_ragloop_run_finds_the_labeling_ui() -> None:
    """`ragloop run` looks the labeling UI up on the labeling package: it must be there to be started."""
    import labeling
    from ragloop.run import start_labeling
    from ragloop.settings import Settings

    assert callable(labeling.start_labeling_ui)
    settings = Settings(labeling_ui="none")
    assert start_labeling(settings) == (settings, [])
