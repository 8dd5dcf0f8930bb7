"""Deferred measurements: recorded off the turn's path, yet never missing from a scrape."""

from __future__ import annotations

import time

from opentelemetry.sdk.resources import Resource
from prometheus_client.parser import text_string_to_metric_families

from monitoring import semconv as sc
from monitoring._metrics import DeferredMeasurements, Metrics
from monitoring._tracing import ErrorCounter


def _samples(text: str) -> dict[str, float]:
    """Sample name -> value of the series whose turn status is "ok"."""
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.labels.get("ragloop_turn_status") == "ok"
    }


def test_a_scrape_sees_every_deferred_measurement() -> None:
    metrics = Metrics(Resource.create({}), None, 60.0, ErrorCounter())
    try:
        before = metrics.prometheus_text().decode()
        assert "ragloop_turn_duration_seconds_count" not in before
        # The draining thread (1 s period) is held off while the test looks at the queue, so it
        # cannot drain it in between however the threads are scheduled.
        with metrics.deferred._lock:
            for seconds in (0.5, 1.5, 2.5):
                metrics.defer((metrics.turn_duration.record, seconds, {sc.TURN_STATUS: "ok"}))
            # Nothing recorded yet on the caller's path; the scrape drains first.
            assert len(metrics.deferred._pending) == 3
        samples = _samples(metrics.prometheus_text().decode())
        assert samples["ragloop_turn_duration_seconds_count"] == 3.0
        assert samples["ragloop_turn_duration_seconds_sum"] == 4.5
    finally:
        metrics.shutdown()


def test_the_thread_drains_and_a_full_queue_drops_the_oldest() -> None:
    seen: list[float] = []
    deferred = DeferredMeasurements(interval_s=0.05, maxlen=3)
    try:
        # Held off while the five go in: at a 0.05 s period the thread could otherwise drain
        # between two adds on a busy machine, and nothing would be dropped.
        with deferred._lock:
            for value in range(5):
                deferred.add((lambda v, _attrs: seen.append(v), float(value), None))
            assert deferred.dropped == 2
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert seen == [2.0, 3.0, 4.0]
    finally:
        deferred.shutdown()


def test_a_failing_measurement_does_not_stop_the_others() -> None:
    seen: list[float] = []

    def broken(_value: float, _attrs: object) -> None:
        raise ValueError("bad instrument")

    deferred = DeferredMeasurements(interval_s=60)
    deferred.add((broken, 1.0, None))
    deferred.add((lambda v, _attrs: seen.append(v), 2.0, None))
    deferred.shutdown()  # drains what is left
    assert seen == [2.0]
