"""Backpressure: a bounded admission queue in front of the LLM (issue 12, "Load and backpressure").

The unit tests drive :class:`chatbot._admission.Admission` on an event loop; the app test sends
concurrent turns over real HTTP to the app, in front of a real OpenAI-compatible server whose
answers are slow (a delay between streamed tokens), and checks the statuses, the ``Retry-After``
header, the JSON error shape and the chat log's rows.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from chatbot._admission import MAX_RETRY_AFTER_S, Admission, Refused, retry_after
from chatlog import ChatLog
from chatlog._store import turns
from monitoring._instant_llm import Behaviour, InstantLLM


def test_retry_after_is_the_queue_ahead_drained_at_the_concurrency() -> None:
    assert retry_after(waiting=0, concurrency=1, mean_turn_s=4.0) == 4
    assert retry_after(waiting=3, concurrency=2, mean_turn_s=4.0) == 8
    assert retry_after(waiting=0, concurrency=4, mean_turn_s=0.01) == 1
    assert retry_after(waiting=1000, concurrency=1, mean_turn_s=30.0) == MAX_RETRY_AFTER_S


def test_full_queue_refuses_at_once_and_a_slot_passes_to_the_first_waiter() -> None:
    async def scenario() -> None:
        adm = Admission(concurrency=1, depth=1, max_wait_s=5)
        assert await adm.acquire() == 0.0
        waiter = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        with pytest.raises(Refused) as refused:
            await adm.acquire()
        assert refused.value.code == "server_busy" and refused.value.status_code == 429
        assert refused.value.retry_after_s >= 1
        adm.release(0.5)
        waited = await waiter
        assert waited > 0 and adm.stats.running == 1 and adm.stats.waiting == 0
        adm.release(0.5)
        assert adm.stats.running == 0
        assert adm.stats.admitted == 2 and adm.stats.refused["server_busy"] == 1

    asyncio.run(scenario())


def test_a_turn_waits_at_most_max_wait_then_is_refused() -> None:
    async def scenario() -> None:
        adm = Admission(concurrency=1, depth=4, max_wait_s=0.2)
        await adm.acquire()
        with pytest.raises(Refused) as refused:
            await adm.acquire()
        assert refused.value.code == "queue_timeout" and refused.value.status_code == 503
        assert refused.value.waited_s >= 0.2
        # The refused waiter left the queue: the next release frees the slot.
        adm.release(None)
        assert adm.stats.running == 0 and adm.stats.waiting == 0

    asyncio.run(scenario())


def test_a_cancelled_waiter_gives_its_place_back_and_close_refuses_the_queue() -> None:
    async def scenario() -> None:
        adm = Admission(concurrency=1, depth=4, max_wait_s=5)
        await adm.acquire()
        gone = asyncio.create_task(adm.acquire())
        stays = asyncio.create_task(adm.acquire())
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        assert adm.stats.waiting == 1
        assert adm.close() == 1
        with pytest.raises(Refused) as refused:
            await stays
        assert refused.value.code == "shutting_down"
        with pytest.raises(Refused):
            await adm.acquire()

    asyncio.run(scenario())


def _count(db: str) -> dict[str, int]:
    """Turns in the chat log by status."""
    log = ChatLog(db)
    try:
        with log.engine.connect() as conn:
            rows = conn.execute(select(turns.c.status, func.count()).group_by(turns.c.status)).all()
        return {str(status): int(n) for status, n in rows}
    finally:
        log.close()


@pytest.mark.timeout(180)
def test_the_app_queues_then_refuses_with_retry_after_and_logs_exactly_the_accepted_turns(
    app_factory: Callable[..., contextlib.AbstractContextManager[str]], tmp_path: Path
) -> None:
    """One slot, one queue place, 1 s wait: of 6 simultaneous turns of ~6 s each, one runs,
    one queues (then runs or times out), the rest are refused at once with 429 and Retry-After."""
    # 6 pieces: ~6 s per answer, so the slot is still taken when the last of the burst arrives,
    # however slowly a busy machine gets the 6 requests through (at ~1.5 s it could be free again).
    slow = Behaviour(token_delay_s=1.0)
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    with (
        InstantLLM(slow) as llm,
        app_factory(
            openai_base_url=llm.base_url,
            database_url=db,
            llm_concurrency=1,
            queue_depth=1,
            queue_max_wait_s=1.0,
        ) as base,
    ):

        async def send(i: int) -> httpx.Response:
            async with httpx.AsyncClient(base_url=base, timeout=60) as client:
                return await client.post("/api/chat", json={"message": f"How do I copy a file? ({i})"})

        async def burst() -> list[httpx.Response]:
            return list(await asyncio.gather(*(send(i) for i in range(6))))

        responses = asyncio.run(burst())
    statuses = sorted(r.status_code for r in responses)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert len(ok) >= 1 and statuses.count(429) >= 3, statuses
    for r in refused:
        assert r.status_code in (429, 503), r.text
        body = r.json()
        assert set(body) == {"error"}, body
        err = body["error"]
        assert err["code"] in ("server_busy", "queue_timeout"), err
        assert err["turn_id"] and "try again in" in err["message"]
        assert int(r.headers["Retry-After"]) == err["retry_after_s"] >= 1
    for r in ok:
        assert r.json()["status"] == "ok" and r.json()["queue_ms"] is not None
    counts = _count(db)
    accepted = sum(n for status, n in counts.items() if status != "rejected")
    assert accepted == len(ok), (counts, statuses)
    assert counts.get("rejected", 0) == len(refused), (counts, statuses)
