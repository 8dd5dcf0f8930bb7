"""A slow sink (the loop sink: a candidate answer and two judge calls per thumbs-down) has an outbox
worker of its own, so it never holds back the quick sinks' deliveries.

Before, one worker claimed every sink's items in one batch and sent them sink after sink: a
thumbs-down waiting on the judge delayed every LangSmith, Arize and labeling delivery behind it
(and a batch of slow items could outlive the lease). Both sinks here are real HTTP senders to real
loopback receivers; the slow receiver answers after 4 s as the judge would.
"""

from __future__ import annotations

import time
from datetime import timedelta

import chatlog as cl
from chatlog.outbox import enqueue
from ragloop.app import _build_workers
from ragloop.settings import Settings
from tests.chatlog.outbox_harness import HttpSink, Receiver

SLOW_S = 4.0


class SlowHttpSink(HttpSink):
    """The HTTP sink marked as slow, as ``labeling._sink.LoopSink`` is."""

    dedicated_worker = True
    lease_s = 900.0


def test_a_slow_sink_gets_its_own_worker_and_never_delays_the_quick_ones(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(data_dir=tmp_path / "data", outbox_poll_s=0.2)  # type: ignore[call-arg]
    log = cl.ChatLog(settings.chatlog_url)
    with Receiver(delay_s=SLOW_S) as slow_rx, Receiver(delay_s=0.0) as quick_rx:
        slow = SlowHttpSink(slow_rx.url, name="slow")
        quick = HttpSink(quick_rx.url, name="quick")
        workers = _build_workers(settings, log, [slow, quick])
        assert len(workers) == 2
        own = next(w for w in workers if list(w.sinks) == ["slow"])
        assert own.batch_size == 1 and own.lease >= timedelta(seconds=900)
        with log.engine.begin() as conn:
            for i in range(3):  # the slow items first, as a thumbs-down's would be
                enqueue(conn, kind="test", key=f"s{i}", payload={"i": i}, sinks=["slow"])
            for i in range(5):
                enqueue(conn, kind="test", key=f"q{i}", payload={"i": i}, sinks=["quick"])
        started = time.monotonic()
        for w in workers:
            w.start()
        try:
            while len(quick_rx.counts()) < 5 and time.monotonic() - started < 3 * SLOW_S:
                time.sleep(0.05)
            quick_done_s = time.monotonic() - started
            assert sorted(quick_rx.counts()) == [f"q{i}" for i in range(5)]
            assert quick_done_s < SLOW_S, f"quick sink waited {quick_done_s:.1f} s behind the slow one"
            while len(slow_rx.counts()) < 3 and time.monotonic() - started < 6 * SLOW_S:
                time.sleep(0.1)
            assert sorted(slow_rx.counts()) == ["s0", "s1", "s2"]  # all delivered, each once
            assert all(n == 1 for n in slow_rx.counts().values())
        finally:
            for w in workers:
                w.stop(timeout_s=2 * SLOW_S)
            log.close()
