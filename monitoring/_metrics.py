"""Metrics: one OpenTelemetry MeterProvider read by Prometheus (``/metrics``) and pushed over OTLP.

Each :class:`Metrics` owns its Prometheus registry, so the app's ``/metrics`` shows exactly its
own series, and several setups can live in one process (tests, benchmarks).
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from monitoring import semconv as sc
from monitoring._tracing import PAUSE_S, ErrorCounter

log = logging.getLogger(__name__)


def _views() -> list[Any]:
    from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View

    def hist(name: str, bounds: Sequence[float]) -> Any:
        return View(instrument_name=name, aggregation=ExplicitBucketHistogramAggregation(list(bounds)))

    return [
        hist(sc.M_HTTP_DURATION, sc.LATENCY_BUCKETS_S),
        hist(sc.M_TURN_DURATION, sc.LATENCY_BUCKETS_S),
        hist(sc.M_TTFT, sc.LATENCY_BUCKETS_S),
        hist(sc.M_RETRIEVAL_DURATION, sc.LATENCY_BUCKETS_S),
        hist(sc.M_TOKEN_USAGE, sc.TOKEN_BUCKETS),
        hist(sc.M_TOP_SCORE, sc.SCORE_BUCKETS),
        hist(sc.M_SCORE, sc.SCORE_BUCKETS),
    ]


def data_points(metrics_data: Any) -> int:
    """Number of data points in one OTLP metrics export (0 for anything unexpected)."""
    try:
        return sum(
            len(metric.data.data_points)
            for rm in metrics_data.resource_metrics
            for sm in rm.scope_metrics
            for metric in sm.metrics
        )
    except Exception:  # noqa: BLE001 - counting never raises
        return 0


class _GuardedMetricExporter:
    """Builds a MetricExporter subclass around an OTLP exporter that counts failures instead of raising."""

    @staticmethod
    def wrap(inner: Any, errors: ErrorCounter) -> Any:
        from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult

        paused_until = [0.0]

        class Guarded(MetricExporter):
            def __init__(self) -> None:
                super().__init__(
                    preferred_temporality=inner._preferred_temporality,
                    preferred_aggregation=inner._preferred_aggregation,
                )

            def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> Any:
                # Circuit breaker, as for spans: no connection attempts while the collector is down.
                if time.monotonic() < paused_until[0]:
                    errors.dropped("metrics", sc.DROP_CIRCUIT_OPEN, data_points(metrics_data))
                    errors.failed("metrics", "collector unreachable")
                    return MetricExportResult.FAILURE
                try:
                    result = inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)
                except Exception as exc:  # noqa: BLE001 - telemetry never raises
                    result, detail = MetricExportResult.FAILURE, type(exc).__name__
                else:
                    detail = "export rejected or unreachable"
                if result is not MetricExportResult.SUCCESS:
                    paused_until[0] = time.monotonic() + PAUSE_S
                    errors.dropped("metrics", sc.DROP_EXPORT_FAILED, data_points(metrics_data))
                    errors.failed("metrics", detail)
                return result

            def force_flush(self, timeout_millis: float = 10_000) -> bool:
                return bool(inner.force_flush(timeout_millis))

            def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
                inner.shutdown(timeout_millis=timeout_millis)

        return Guarded()


#: One measurement to record later: the instrument's ``record``/``add``, the value, the attributes.
Measurement = tuple[Callable[..., None], float, "dict[str, Any] | None"]


class DeferredMeasurements:
    """Measurements a turn takes, recorded later in bulk by a thread that wakes once a second.

    Why: an OpenTelemetry measurement costs tens of microseconds on the turn's path (attribute
    hashing, view matching, one aggregation per reader), and a turn takes seven or eight. Appending
    to a deque costs well under one, and waking a thread per turn would cost more than it saves
    (the GIL hand-over). Readers drain first (:meth:`drain` before a Prometheus scrape or a flush),
    so nothing recorded is missing from an exposition. Bounded: when full, the oldest are dropped.
    """

    def __init__(
        self,
        interval_s: float = 1.0,
        maxlen: int = 100_000,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        """Start the draining thread; ``on_drop`` is called for each measurement a full queue drops."""
        self._pending: collections.deque[Measurement] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._on_drop = on_drop
        self.dropped = 0
        self._thread = threading.Thread(
            target=self._run, args=(interval_s,), name="ragloop-metrics", daemon=True
        )
        self._thread.start()

    def add(self, measurement: Measurement) -> None:
        """Queue one measurement (never blocks)."""
        if len(self._pending) == self._pending.maxlen:
            self.dropped += 1
            if self._on_drop is not None:
                try:
                    self._on_drop()
                except Exception:  # noqa: BLE001 - counting never breaks a turn
                    pass
        self._pending.append(measurement)

    def drain(self) -> None:
        """Record everything queued so far (any thread; one drainer at a time)."""
        with self._lock:
            while self._pending:
                record, value, attrs = self._pending.popleft()
                try:
                    record(value, attrs)
                except Exception:  # noqa: BLE001 - a bad measurement never stops the others
                    log.debug("metric record failed", exc_info=True)

    def shutdown(self) -> None:
        """Stop the thread and record what is left."""
        self._stop.set()
        self._thread.join(timeout=5)
        self.drain()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self.drain()


def outbox_rows(counts: Any) -> list[tuple[str, str, int]]:
    """Normalise outbox counts to ``(sink, status, n)`` rows (see :meth:`Metrics.observe_outbox`).

    Accepts ``{(sink, status): n}``, ``{sink: {status: n}}``, rows of ``(sink, status, n)`` or
    mappings with ``sink``, ``status`` and ``count``.
    """
    items: list[Any]
    if isinstance(counts, dict):
        items = []
        for k, v in counts.items():
            if isinstance(v, dict):  # {sink: {status: n}}
                items.extend((k, status, n) for status, n in v.items())
            else:  # {(sink, status): n}
                items.append((*k, v))
    else:
        items = [
            (r["sink"], r["status"], r.get("count", r.get("n", 0))) if isinstance(r, dict) else tuple(r)
            for r in counts
        ]
    return [(str(sink), str(status), int(n)) for sink, status, n in items]


class Metrics:
    """The app's instruments, a Prometheus registry and (optionally) an OTLP push reader."""

    def __init__(
        self,
        resource: Any,
        otlp_exporter: Any | None,
        export_interval_s: float,
        errors: ErrorCounter,
    ) -> None:
        """Create the provider and every instrument."""
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from prometheus_client import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=True)
        readers: list[Any] = [PrometheusMetricReader(registry=self.registry)]
        if otlp_exporter is not None:
            readers.append(
                PeriodicExportingMetricReader(
                    _GuardedMetricExporter.wrap(otlp_exporter, errors),
                    export_interval_millis=export_interval_s * 1000,
                    export_timeout_millis=5000,
                )
            )
        # No exemplars: sampling them costs each measurement a third more on the turn's path, and
        # neither the Prometheus text exposition nor our dashboards show them (the chat log links
        # turns to traces instead).
        self.provider = MeterProvider(
            resource=resource,
            metric_readers=readers,
            views=_views(),
            exemplar_filter=AlwaysOffExemplarFilter(),
        )
        meter = self.provider.get_meter("ragloop.monitoring")
        self.http_duration = meter.create_histogram(sc.M_HTTP_DURATION, unit="s", description="HTTP requests")
        self.turn_duration = meter.create_histogram(sc.M_TURN_DURATION, unit="s", description="Turn latency")
        self.ttft = meter.create_histogram(sc.M_TTFT, unit="s", description="Time to first token")
        self.retrieval = meter.create_histogram(sc.M_RETRIEVAL_DURATION, unit="s", description="Retrieval")
        self.tokens = meter.create_histogram(sc.M_TOKEN_USAGE, unit="{token}", description="Tokens per call")
        self.cost = meter.create_counter(sc.M_COST, unit="USD", description="Estimated LLM cost")
        self.feedback = meter.create_counter(
            sc.M_FEEDBACK, description="Ratings given by raters, by value (a rater counts once)"
        )
        self.feedback_retracted = meter.create_counter(
            sc.M_FEEDBACK_RETRACTED, description="Ratings changed or withdrawn by their rater, by old value"
        )
        # Both values exist from the start (at 0): share queries and their differences have data.
        for label in (sc.FEEDBACK_UP, sc.FEEDBACK_DOWN):
            self.feedback.add(0, {sc.FEEDBACK_VALUE_ATTR: label})
            self.feedback_retracted.add(0, {sc.FEEDBACK_VALUE_ATTR: label})
        self._meter = meter
        self.top_score = meter.create_histogram(sc.M_TOP_SCORE, description="Best retrieval score per turn")
        self.score = meter.create_histogram(sc.M_SCORE, description="Evaluation scores by name")
        self.gauge = meter.create_gauge(sc.M_GAUGE, description="Values set by drift and evaluation jobs")
        self.export_errors = meter.create_counter(sc.M_EXPORT_ERRORS, description="Failed exports")
        for signal in (*sc.DROP_SIGNALS, "langsmith"):  # from the start at 0, as the drops below
            self.export_errors.add(0, {sc.SIGNAL: signal})
        errors.listeners.append(lambda signal: self.export_errors.add(1, {sc.SIGNAL: signal}))
        self.dropped = meter.create_counter(
            sc.M_TELEMETRY_DROPPED, description="Telemetry items given up on, by signal and reason"
        )
        # Every (signal, reason) exists from the start at 0: "nothing dropped" is a value, not a gap.
        for signal in sc.DROP_SIGNALS:
            for reason in sc.DROP_REASONS:
                self.dropped.add(0, {sc.SIGNAL: signal, sc.DROP_REASON: reason})
        errors.drop_listeners.append(
            lambda signal, reason, n: self.dropped.add(n, {sc.SIGNAL: signal, sc.DROP_REASON: reason})
        )
        self.deferred = DeferredMeasurements(on_drop=lambda: errors.dropped("metrics", sc.DROP_QUEUE_FULL, 1))

    def observe_outbox(self, counts: Callable[[], Any]) -> None:
        """Register the :data:`~monitoring.semconv.M_OUTBOX_ITEMS` gauge, read at each collection.

        Args:
            counts: returns the outbox counts, ``{(sink, status): n}`` or rows of
                ``(sink, status, n)`` / ``{"sink", "status", "count"}``; an exception yields no
                points for that collection (logged at debug level), never a failed scrape.
        """
        from opentelemetry.metrics import Observation

        def observe(_options: Any) -> list[Any]:
            try:
                rows = outbox_rows(counts())
            except Exception:  # noqa: BLE001 - a scrape never fails because the database did
                log.debug("outbox counts failed", exc_info=True)
                return []
            return [
                Observation(n, {sc.OUTBOX_SINK: sink, sc.OUTBOX_STATUS: status}) for sink, status, n in rows
            ]

        self._meter.create_observable_gauge(
            sc.M_OUTBOX_ITEMS, callbacks=[observe], description="Outbox items by sink and status"
        )

    def defer(self, *measurements: Measurement) -> None:
        """Record ``measurements`` off the caller's path (the turn's hooks use this)."""
        for m in measurements:
            self.deferred.add(m)

    def prometheus_text(self) -> bytes:
        """The Prometheus exposition of this provider's metrics, deferred measurements included."""
        from prometheus_client import generate_latest

        self.deferred.drain()
        return bytes(generate_latest(self.registry))

    def shutdown(self) -> None:
        """Record deferred measurements, flush the OTLP reader and unregister from Prometheus."""
        self.deferred.shutdown()
        try:
            self.provider.shutdown(timeout_millis=5000)
        except Exception:  # noqa: BLE001 - shutting down telemetry never raises
            log.debug("metrics shutdown failed", exc_info=True)
