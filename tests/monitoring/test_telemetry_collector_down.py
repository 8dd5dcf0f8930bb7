"""Collector down: turns go on, chat-log rows are complete, failures are counted, memory stays flat."""

from __future__ import annotations

import asyncio
import gc
import resource
import time
from pathlib import Path
from typing import Any

import pytest

from chatbot import build_service
from monitoring import Telemetry
from ragloop.process import free_port
from tests.monitoring.conftest import telemetry_settings

pytestmark = pytest.mark.slow


def _rss_mb() -> float:
    """Current resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def test_turns_survive_a_dead_collector(
    instant_llm: str, indexed_dir: Path, shared_retriever: Any, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    settings = telemetry_settings(
        indexed_dir,
        openai_base_url=instant_llm,
        database_url=f"sqlite:///{tmp_path / 'chatlog.db'}",
        otlp_endpoint=dead,
    )
    tel = Telemetry(settings)
    service = build_service(settings, observer=tel, retriever=shared_retriever)

    async def turns(n: int) -> list[Any]:
        return [await service.run_turn(f"How do I copy file number {i}?") for i in range(n)]

    async def scenario() -> tuple[list[Any], list[Any], float, float]:
        # One event loop: the chat model's HTTP client belongs to the loop it first ran on.
        warm = await turns(20)
        gc.collect()
        before = _rss_mb()
        started = time.perf_counter()
        results = await turns(200)
        elapsed = time.perf_counter() - started
        gc.collect()
        return warm, results, _rss_mb() - before, elapsed

    try:
        warm, results, growth, elapsed = asyncio.run(scenario())
        tel.force_flush(timeout_s=15)
    finally:
        tel.shutdown()
        service.chatlog.close()

    assert all(r.status == "ok" for r in warm + results)
    from monitoring import ChatLog

    log = ChatLog(settings.chatlog_url)
    for r in results[::40]:
        row = log.get_turn(r.turn_id)
        assert row is not None and row["status"] == "ok" and row["completed_at"] is not None
        assert row["answer"] and row["output_tokens"] and row["trace_id"] and row["retrieved"]
    assert log.count_turns() == 220
    log.close()
    # Failures were counted (and logged once a minute, not per batch).
    assert tel.errors.counts.get("traces", 0) >= 1
    # Bounded queues: 200 turns x ~15 spans overflow the 2048-span queue; memory must not follow.
    assert growth < 40, f"RSS grew {growth:.1f} MiB over 200 turns ({elapsed:.1f}s)"
