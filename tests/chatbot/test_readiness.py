"""Readiness apart from liveness: ``/readyz`` names the dependency that is down (issue 12)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from chatbot._readiness import Probe, Readiness
from monitoring._instant_llm import InstantLLM
from ragloop.process import free_port


def _fails() -> str:
    raise ConnectionRefusedError("connection refused")


def test_required_down_is_not_ready_optional_down_is_degraded() -> None:
    ok = Probe("llm", lambda: "HTTP 200")
    assert asyncio.run(Readiness([ok]).check())["status"] == "ready"
    degraded = asyncio.run(Readiness([ok, Probe("collector", _fails, required=False)]).check())
    assert degraded["status"] == "degraded" and degraded["down"] == ["collector"]
    assert "ConnectionRefusedError" in degraded["checks"]["collector"]["detail"]
    down = asyncio.run(Readiness([ok, Probe("chatlog", _fails)]).check())
    assert down["status"] == "not_ready" and down["down"] == ["chatlog"]


def test_a_hanging_probe_is_down_after_the_timeout_and_answers_are_cached() -> None:
    calls: list[float] = []
    release = threading.Event()

    def hangs() -> str:
        calls.append(time.monotonic())
        release.wait(60)  # hangs until the scenario is over (a fixed 1 s hang left 0.4 s of slack)
        return "late"

    async def scenario() -> None:
        ready = Readiness([Probe("chroma", hangs)], cache_s=30, timeout_s=0.1)
        started = time.perf_counter()
        try:
            first = await ready.check()
            assert time.perf_counter() - started < 10, "the check waited for the hanging probe"
            assert (
                first["status"] == "not_ready"
                and "no answer within 0.1 s" in first["checks"]["chroma"]["detail"]
            )
            for _ in range(5):
                await ready.check()
            assert ready.probe_runs == 1 and len(calls) == 1
        finally:
            release.set()

    asyncio.run(scenario())


def test_readyz_names_the_llm_when_it_goes_down_while_healthz_stays_live(
    app_factory: Callable[..., contextlib.AbstractContextManager[str]], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    llm = InstantLLM().start()
    try:
        with app_factory(
            # Probes of live servers may take seconds on a busy machine; a dead one is refused at once.
            openai_base_url=llm.base_url,
            database_url=db,
            ready_cache_s=0,
            ready_timeout_s=15.0,
        ) as base:
            up = httpx.get(f"{base}/readyz", timeout=60)
            assert up.status_code == 200, up.text
            body = up.json()
            assert body["status"] == "ready" and body["down"] == []
            assert set(body["checks"]) >= {"llm", "chatlog", "chroma"}
            assert body["admission"]["concurrency"] >= 1
            llm.stop()
            down = httpx.get(f"{base}/readyz", timeout=10)
            assert down.status_code == 503 and down.json()["down"] == ["llm"], down.text
            alias = httpx.get(f"{base}/healthz", params={"ready": "1"}, timeout=10)
            assert alias.status_code == 503 and alias.json()["down"] == ["llm"]
            live = httpx.get(f"{base}/healthz", timeout=10)
            assert live.status_code == 200 and live.json()["status"] == "ok"
    finally:
        with contextlib.suppress(Exception):
            llm.stop()


def test_readyz_reports_an_unreachable_labeling_backend_as_degraded(
    app_factory: Callable[..., contextlib.AbstractContextManager[str]], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    dead = f"http://127.0.0.1:{free_port()}"
    with (
        InstantLLM() as llm,
        app_factory(  # every live probe may take seconds on a busy machine (default bound: 2 s)
            openai_base_url=llm.base_url, database_url=db, label_studio_url=dead, ready_timeout_s=15.0
        ) as base,
    ):
        body = httpx.get(f"{base}/readyz", timeout=60).json()
    assert body["status"] == "degraded" and body["down"] == ["labeling"], body
