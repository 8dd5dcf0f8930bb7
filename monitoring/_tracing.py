"""Trace pipeline: OpenLLMetry instrumentation, privacy filtering, guarded OTLP exporters.

OpenTelemetry allows one global tracer provider per process and OpenLLMetry instruments LangChain
once, so :func:`ensure_instrumented` does both once and installs a :class:`SpanDispatcher`; each
:class:`monitoring.Telemetry` then plugs its own processors (privacy filter -> batch -> exporter)
into the dispatcher and unplugs them on shutdown. Tests can build several telemetry setups with
different privacy settings in one process this way.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from monitoring._attributes import filter_attributes
from monitoring.semconv import DROP_CIRCUIT_OPEN, DROP_EXPORT_FAILED, DROP_QUEUE_FULL

log = logging.getLogger(__name__)

#: Seconds exports are skipped after a failure (circuit breaker for a down collector).
PAUSE_S = 15.0

_lock = threading.Lock()
_dispatcher: SpanDispatcher | None = None

# Loggers of the OpenTelemetry SDK/exporters that repeat one failure per batch and per retry.
_NOISY_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.grpc.exporter",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.proto.http.metric_exporter",
    "opentelemetry.exporter.otlp.proto.http._log_exporter",
    "opentelemetry.sdk._shared_internal",
    "opentelemetry.sdk.metrics._internal.export",
    "opentelemetry.sdk._logs._internal.export",
)


class RateLimitFilter(logging.Filter):
    """Let a logger's records through at most once per ``interval_s`` (a down collector is one event)."""

    def __init__(self, interval_s: float = 60.0) -> None:
        """Allow one record per ``interval_s`` seconds."""
        super().__init__()
        self.interval_s = interval_s
        self._last = -float("inf")
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        """True for the first record of each interval."""
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            self._last = now
            return True
        self.suppressed += 1
        return False


def quiet_exporter_logs(interval_s: float = 60.0) -> None:
    """Rate-limit the OpenTelemetry exporter loggers (idempotent)."""
    for name in _NOISY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RateLimitFilter) for f in logger.filters):
            logger.addFilter(RateLimitFilter(interval_s))


class ErrorCounter:
    """Counts export failures by signal and logs the first of each minute per signal."""

    def __init__(self, interval_s: float = 60.0) -> None:
        """Start with no failures."""
        self.counts: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self.interval_s = interval_s
        self.listeners: list[Callable[[str], None]] = []
        #: Items given up on, by (signal, reason); see :data:`~monitoring.semconv.M_TELEMETRY_DROPPED`.
        self.drops: dict[tuple[str, str], int] = {}
        self.drop_listeners: list[Callable[[str, str, int], None]] = []

    def dropped(self, signal: str, reason: str, n: int) -> None:
        """Record ``n`` items of ``signal`` lost for ``reason`` (export_failed, circuit_open, queue_full)."""
        if n <= 0:
            return
        key = (signal, reason)
        self.drops[key] = self.drops.get(key, 0) + n
        for listener in self.drop_listeners:
            try:
                listener(signal, reason, n)
            except Exception:  # noqa: BLE001 - counting must never raise
                pass

    def failed(self, signal: str, detail: str) -> None:
        """Record one failed export of ``signal`` (traces, metrics, logs, langsmith)."""
        self.counts[signal] = self.counts.get(signal, 0) + 1
        now = time.monotonic()
        if now - self._last.get(signal, -float("inf")) >= self.interval_s:
            self._last[signal] = now
            log.warning(
                "%s export failed (%s); %d failures so far, logged at most once a minute",
                signal,
                detail,
                self.counts[signal],
            )
        for listener in self.listeners:
            try:
                listener(signal)
            except Exception:  # noqa: BLE001 - counting must never raise
                pass


class GuardedSpanExporter(SpanExporter):
    """Wraps an exporter: failures and exceptions are counted and rate-limit-logged, never raised."""

    def __init__(self, inner: SpanExporter, errors: ErrorCounter, pause_s: float = PAUSE_S) -> None:
        """Guard ``inner``."""
        self.inner = inner
        self.errors = errors
        self.pause_s = pause_s
        self._paused_until = 0.0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export, converting any error into a counted FAILURE.

        After a failure, batches are dropped without a connection attempt for ``pause_s`` seconds
        (a circuit breaker): a down collector then costs neither retries nor their memory churn.
        """
        if time.monotonic() < self._paused_until:
            self.errors.dropped("traces", DROP_CIRCUIT_OPEN, len(spans))
            self.errors.failed("traces", f"{len(spans)} spans dropped (collector unreachable)")
            return SpanExportResult.FAILURE
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - telemetry never raises
            result, detail = SpanExportResult.FAILURE, type(exc).__name__
        else:
            detail = f"{len(spans)} spans dropped"
        if result is not SpanExportResult.SUCCESS:
            self._paused_until = time.monotonic() + self.pause_s
            self.errors.dropped("traces", DROP_EXPORT_FAILED, len(spans))
            self.errors.failed("traces", detail)
        return result

    def shutdown(self) -> None:
        """Shut the inner exporter down."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the inner exporter."""
        return bool(self.inner.force_flush(timeout_millis))


class CountingBatchSpanProcessor(BatchSpanProcessor):
    """The SDK's batch span processor, counting the spans its full queue pushes out.

    Why: the SDK drops the oldest span when its bounded queue is full and only logs it (its own
    ``otel.sdk.processor.span.processed`` metric is off unless an environment switch is set, and
    goes to the global meter provider); this records each drop as ``queue_full`` in ``errors``.
    """

    def __init__(self, exporter: SpanExporter, errors: ErrorCounter, **kwargs: Any) -> None:
        """Batch spans to ``exporter``; ``kwargs`` go to :class:`BatchSpanProcessor`."""
        super().__init__(exporter, **kwargs)
        self._errors = errors
        # The SDK's queue (a bounded deque); None if a later SDK moves it: then nothing is counted.
        self._queue = getattr(getattr(self, "_batch_processor", None), "_queue", None)

    def on_end(self, span: ReadableSpan) -> None:
        """Queue ``span``; count one drop when the queue is already full."""
        queue = self._queue
        if queue is not None and queue.maxlen is not None and len(queue) >= queue.maxlen:
            if span.context is not None and span.context.trace_flags.sampled:
                self._errors.dropped("traces", DROP_QUEUE_FULL, 1)
        super().on_end(span)


class PrivacyExporter(SpanExporter):
    """Drops or redacts content attributes of spans on their way out, then exports them.

    It runs on the batch processor's thread, so regex redaction never costs the turn anything.
    Ended spans are immutable: a filtered span is re-created as a new :class:`ReadableSpan`.
    """

    def __init__(self, inner: SpanExporter, trace_content: bool, redaction: bool) -> None:
        """Filter spans going to ``inner``."""
        self.inner = inner
        self.trace_content = trace_content
        self.redaction = redaction

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Filter, then export."""
        return self.inner.export([privacy_filtered(s, self.trace_content, self.redaction) for s in spans])

    def shutdown(self) -> None:
        """Forward."""
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Forward."""
        return bool(self.inner.force_flush(timeout_millis))


def privacy_filtered(span: ReadableSpan, trace_content: bool, redaction: bool) -> ReadableSpan:
    """``span`` itself, or a copy with content attributes dropped (content off) or redacted."""
    attrs = filter_attributes(span.attributes or {}, trace_content, redaction)
    events = list(span.events)
    events_changed = False
    for i, event in enumerate(events):
        new = filter_attributes(event.attributes or {}, trace_content, redaction)
        if new is not None:
            from opentelemetry.sdk.trace import Event

            events[i] = Event(event.name, new, event.timestamp)
            events_changed = True
    if attrs is None and not events_changed:
        return span
    return ReadableSpan(
        name=span.name,
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=attrs if attrs is not None else span.attributes,
        events=events,
        links=span.links,
        kind=span.kind,
        status=span.status,
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


class SpanDispatcher(SpanProcessor):
    """The one processor on the global provider: forwards to the processors currently plugged in."""

    def __init__(self) -> None:
        """Start empty."""
        self._targets: tuple[SpanProcessor, ...] = ()
        self._lock = threading.Lock()

    def add(self, processor: SpanProcessor) -> None:
        """Plug a processor in."""
        with self._lock:
            self._targets = (*self._targets, processor)

    def remove(self, processor: SpanProcessor) -> None:
        """Unplug a processor (it is not shut down here)."""
        with self._lock:
            self._targets = tuple(p for p in self._targets if p is not processor)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Forward to every plugged processor."""
        for p in self._targets:
            p.on_start(span, parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        """Forward to every plugged processor."""
        for p in self._targets:
            p.on_end(span)

    def shutdown(self) -> None:
        """Shut every plugged processor down."""
        for p in self._targets:
            p.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush every plugged processor."""
        return all(p.force_flush(timeout_millis) for p in self._targets)


def set_content_tracing(enabled: bool) -> None:
    """Set OpenLLMetry's own content switch, which its instrumentations read from the environment.

    Why write the environment: OpenLLMetry reads ``TRACELOOP_TRACE_CONTENT`` at each span, and it
    has no other off switch. Settings (not this function) decide the value.
    """
    os.environ["TRACELOOP_TRACE_CONTENT"] = "true" if enabled else "false"


def _vector_summary(obj: Any) -> str | None:
    """A short stand-in for an array-like embedding vector (None for anything else)."""
    shape = getattr(obj, "shape", None)
    if shape is not None and hasattr(obj, "dtype") and hasattr(obj, "__array__"):
        return f"<vector shape={tuple(shape)} dtype={obj.dtype}>"
    return None


def hide_embedding_vectors() -> None:
    """Serialize arrays as a shape summary in OpenLLMetry's LangChain span inputs/outputs.

    Why: the chain passes the query embedding along (384 floats); OpenLLMetry falls back to
    ``str(array)`` for it in up to ten runnable spans per turn, which costs ~70 ms of numpy
    formatting on the request path and adds nothing a trace reader needs (OpenInference hides
    embedding vectors for the same reason). Idempotent.
    """
    try:
        from opentelemetry.instrumentation.langchain import utils
    except ImportError:  # pragma: no cover - depends on the install
        return
    encoder = utils.CallbackFilteredJSONEncoder
    if getattr(encoder, "_ragloop_vectors_hidden", False):
        return
    original = encoder.default

    def default(self: Any, o: Any) -> Any:
        summary = _vector_summary(o)
        return summary if summary is not None else original(self, o)

    encoder.default = default  # type: ignore[method-assign]
    encoder._ragloop_vectors_hidden = True  # type: ignore[attr-defined]


def ensure_instrumented(resource_attributes: dict[str, Any]) -> SpanDispatcher:
    """Initialise OpenLLMetry once per process (global provider + LangChain/OpenAI/Chroma spans)."""
    global _dispatcher
    with _lock:
        if _dispatcher is not None:
            return _dispatcher
        try:
            from traceloop.sdk import Traceloop
            from traceloop.sdk.instruments import Instruments
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("tracing needs: pip install 'ragloop[tracing]'") from exc
        dispatcher = SpanDispatcher()
        # Traceloop's own metrics/logs stay off (TRACELOOP_METRICS_ENABLED); ours are built apart.
        os.environ.setdefault("TRACELOOP_METRICS_ENABLED", "false")
        os.environ.setdefault("TRACELOOP_TELEMETRY", "false")
        Traceloop.init(
            app_name=str(resource_attributes.get("service.name", "ragloop")),
            processor=dispatcher,
            resource_attributes=dict(resource_attributes),
            telemetry_enabled=False,
            instruments={Instruments.LANGCHAIN, Instruments.OPENAI, Instruments.CHROMA},
            should_enrich_metrics=False,
        )
        hide_embedding_vectors()
        _dispatcher = dispatcher
        provider = trace.get_tracer_provider()
        log.info("OpenLLMetry initialised (provider %s)", type(provider).__name__)
        return dispatcher
