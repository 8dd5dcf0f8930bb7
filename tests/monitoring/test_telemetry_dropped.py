"""What the app's exporters drop, and when, is a Prometheus metric (issue 12, telemetry outage).

The collector is unreachable (nothing listens on the OTLP port): every span the app makes is lost
for the backend, and ``ragloop_telemetry_dropped_total`` on ``/metrics`` must say so, span for
span. A second, in-memory exporter next to OTLP sees every span the app made, so the two counts
can be compared exactly. The queue-full path runs the real SDK batch processor with a tiny queue.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from monitoring import Telemetry
from monitoring import semconv as sc
from monitoring._tracing import CountingBatchSpanProcessor, ErrorCounter
from ragloop.process import free_port
from tests.monitoring.conftest import telemetry_settings

pytestmark = pytest.mark.slow


def _dropped(text: str) -> dict[tuple[str, str], float]:
    """``{(signal, reason): value}`` of the drop counter in a Prometheus exposition."""
    out: dict[tuple[str, str], float] = {}
    for line in text.splitlines():
        if not line.startswith(sc.PROM_TELEMETRY_DROPPED + "{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line[: line.rindex("}")]))
        out[(labels[sc.PROM_LABEL_SIGNAL], labels[sc.PROM_LABEL_DROP_REASON])] = float(line.split()[-1])
    return out


def test_spans_dropped_for_a_dead_collector_are_on_metrics(
    instant_llm: str, indexed_dir: Path, shared_retriever: Any, tmp_path: Path, app_with: Any
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    settings = telemetry_settings(
        indexed_dir,
        openai_base_url=instant_llm,
        database_url=f"sqlite:///{tmp_path / 'chatlog.db'}",
        otlp_endpoint=dead,
    )
    seen = InMemorySpanExporter()
    tel = Telemetry(settings, span_exporters=[seen])
    try:
        with app_with(settings, tel, shared_retriever) as base:
            before = _dropped(httpx.get(f"{base}/metrics", timeout=10).text)
            # Every (signal, reason) is there from the start, at 0.
            assert {(s, r) for s in sc.DROP_SIGNALS for r in sc.DROP_REASONS} <= set(before)
            # No turn yet: no span lost (metric exports already fail each second: counted apart).
            assert sum(v for (signal, _), v in before.items() if signal == "traces") == 0
            assert before[("metrics", sc.DROP_EXPORT_FAILED)] >= 0
            # A metric export to a dead port fails only once the exporter's own retries give up
            # (seconds, more on a busy machine): wait for the first before the turns.
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                now = _dropped(httpx.get(f"{base}/metrics", timeout=10).text)
                if now[("metrics", sc.DROP_EXPORT_FAILED)] + now[("metrics", sc.DROP_CIRCUIT_OPEN)] > 0:
                    break
                time.sleep(0.5)
            for i in range(3):
                resp = httpx.post(
                    f"{base}/api/chat", json={"message": f"How do I copy file {i}?"}, timeout=60
                )
                assert resp.status_code == 200, resp.text  # the chat never fails because telemetry did
            flushed_at = time.time_ns()  # the spans' clock (end_time)
            tel.force_flush(timeout_s=20)  # every queued span goes to its exporter (and fails)
            after = _dropped(httpx.get(f"{base}/metrics", timeout=10).text)
    finally:
        tel.shutdown()
    spans = seen.get_finished_spans()
    made = len(spans)
    assert made >= 3 * 5, made  # HTTP, turn, chain, retrieval, LLM ... spans per turn
    lost = after[("traces", sc.DROP_EXPORT_FAILED)] + after[("traces", sc.DROP_CIRCUIT_OPEN)]
    # Every span made before the flush is counted as lost, none twice (the in-memory exporter got
    # them all; the OTLP one got none). A span may end after the client has its response (the last
    # turn's HTTP span): then it is still queued after the flush and the counter need not hold it,
    # so the lower bound counts the spans that had ended when the flush began.
    before_flush = sum(1 for s in spans if s.end_time is not None and s.end_time <= flushed_at)
    assert lost >= before_flush and lost <= made, (lost, before_flush, made, after)
    # The first failed batch opens the circuit: later batches are dropped without a connection.
    assert after[("traces", sc.DROP_EXPORT_FAILED)] >= 1
    assert after[("traces", sc.DROP_QUEUE_FULL)] == 0
    # Failed metric exports are counted in data points too.
    assert after[("metrics", sc.DROP_EXPORT_FAILED)] + after[("metrics", sc.DROP_CIRCUIT_OPEN)] > 0
    assert tel.errors.drops[("traces", sc.DROP_EXPORT_FAILED)] >= 1


class _Blocking(SpanExporter):
    """Holds the first batch until released, so the real processor's queue fills up behind it."""

    def __init__(self) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.exported: list[str] = []

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.started.set()
        self.release.wait(10)
        self.exported += [s.name for s in spans]
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self.release.set()


def test_a_full_span_queue_counts_each_span_it_pushes_out() -> None:
    errors = ErrorCounter()
    exporter = _Blocking()
    processor = CountingBatchSpanProcessor(
        exporter, errors, max_queue_size=4, max_export_batch_size=1, schedule_delay_millis=10_000
    )
    provider = TracerProvider()
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("test")
    try:
        tracer.start_span("first").end()  # the worker takes it and blocks in export
        assert exporter.started.wait(5)
        time.sleep(0.05)
        for i in range(10):
            tracer.start_span(f"s{i}").end()
        assert errors.drops == {("traces", sc.DROP_QUEUE_FULL): 6}  # 4 fit, 6 pushed the oldest out
    finally:
        exporter.release.set()
        provider.shutdown()
    assert exporter.exported[0] == "first" and len(exporter.exported) == 5
