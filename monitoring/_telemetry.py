"""Telemetry: the turn observer that traces, measures and reports every chat turn.

:class:`Telemetry` implements the chat service's observer hooks structurally (``turn_scope``,
``chatlog_scope``, ``langchain_config``, ``trace_ids``, ``annotate_retrieval``, ``on_retrieval``,
``on_first_token``, ``on_turn_end``, ``on_feedback``, ``shutdown``): monitoring never imports the
chat layer; the composition root hands it the prompt version.

Spans go through OpenLLMetry's global provider (LangChain, OpenAI and Chroma spans come from its
instrumentations) to this object's privacy filter and batch processor; metrics and logs have their
own providers. All exports run on background threads with bounded queues; every hook is cheap and
never raises into the turn (the service also guards each call).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Link, NonRecordingSpan, SpanContext, Status, StatusCode, TraceFlags

from monitoring import semconv as sc
from monitoring._attributes import (
    estimate_cost,
    feedback_moves,
    parse_kv,
    parse_prices,
    resource_attributes,
    retrieval_attributes,
    turn_end_attributes,
)
from monitoring._logs import OtlpLogs, install_console
from monitoring._metrics import Metrics
from monitoring._otlp import build_exporters
from monitoring._tracing import (
    CountingBatchSpanProcessor,
    ErrorCounter,
    GuardedSpanExporter,
    PrivacyExporter,
    ensure_instrumented,
    quiet_exporter_logs,
    set_content_tracing,
)
from ragloop.settings import Settings

log = logging.getLogger(__name__)

# The turn span and turn id of the running turn (task-local). OpenLLMetry's LangChain handler leaves the chain
# span attached as "current" while a stream is consumed and after it ends, so spans we start from
# the service's hooks name the turn span as parent explicitly instead of trusting the current one.
_turn_span: contextvars.ContextVar[Any] = contextvars.ContextVar("ragloop_turn_span", default=None)
# Kept apart from the span: with tracing off (OTEL_SDK_DISABLED) the span is a NonRecordingSpan,
# which has no attributes to read the id back from.
_turn_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("ragloop_turn_id", default=None)


def _version() -> str:
    try:
        return version("ragloop")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "0+unknown"


def _turn_context() -> Any:
    """Context whose current span is the running turn's span (None outside a turn: use current)."""
    span = _turn_span.get()
    return trace.set_span_in_context(span) if span is not None else None


def _span_context(trace_id: str | None, span_id: str | None) -> SpanContext | None:
    """The (remote) span context of a chat-log row's trace ids, or None when they are missing."""
    if not trace_id:
        return None
    try:
        sid = int(span_id, 16) if span_id else 1
        return SpanContext(int(trace_id, 16), sid, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))
    except ValueError:
        return None


class Telemetry:
    """Traces, metrics, logs and LangSmith runs of the chat service; see :func:`setup_telemetry`."""

    def __init__(
        self,
        settings: Settings,
        *,
        span_exporters: list[SpanExporter] | None = None,
        langsmith_client: Any | None = None,
        index_version: str | None = None,
        prompt_version: str = "unknown",
    ) -> None:
        """Wire every signal.

        Args:
            settings: the application settings.
            span_exporters: exporters next to OTLP (tests, benchmarks).
            langsmith_client: a LangSmith client for the LangChain tracer (tests).
            index_version: the retrieval index version (resource attribute).
            prompt_version: the chat layer's prompt version (``chatbot.PROMPT_VERSION``), passed
                in by the composition root; a resource and turn-span attribute.
        """
        self.settings = settings
        self.prompt_version = prompt_version
        self.errors = ErrorCounter()
        self.prices = parse_prices(settings.prices)
        quiet_exporter_logs()
        set_content_tracing(settings.trace_content)
        attrs = resource_attributes(
            settings.service_name,
            _version(),
            settings.environment,
            settings.llm_model,
            prompt_version,
            index_version,
            parse_kv(settings.resource_attributes),
        )
        self.resource = Resource.create(attrs)
        self._dispatcher = ensure_instrumented(attrs)
        self.tracer = trace.get_tracer("ragloop.monitoring", _version())
        otlp = build_exporters(settings)
        self.otlp_endpoint = otlp.endpoint if otlp else None
        exporters: list[SpanExporter] = [*(span_exporters or [])]
        if otlp is not None:
            exporters.append(otlp.spans)
        # Bounded queue, background thread; privacy filtering happens there too, off the turn's path.
        self._processors = [
            CountingBatchSpanProcessor(
                GuardedSpanExporter(PrivacyExporter(e, settings.trace_content, settings.redact), self.errors),
                self.errors,
                max_queue_size=2048,
                schedule_delay_millis=500,
                max_export_batch_size=256,
            )
            for e in exporters
        ]
        for p in self._processors:
            self._dispatcher.add(p)
        self.metrics = Metrics(
            self.resource, otlp.metrics if otlp else None, settings.metrics_export_interval_s, self.errors
        )
        install_console()
        self.logs = OtlpLogs(self.resource, otlp.logs, self.errors) if otlp else None
        self.langsmith = _build_langsmith(settings, langsmith_client, self.errors)
        self._turn_spans: dict[str, Any] = {}
        self._closed = False
        self._lock = threading.Lock()
        log.info("telemetry on: OTLP %s, content %s", self.otlp_endpoint or "off", settings.trace_content)

    # --- turn hooks --------------------------------------------------------------------------
    @contextlib.contextmanager
    def turn_scope(self, turn: dict[str, Any]) -> Iterator[None]:
        """The turn's span: child of the HTTP request span, parent of the chain's spans."""
        attrs = {
            sc.TURN_ID: turn["turn_id"],
            sc.CONVERSATION_ID: turn["conversation_id"],
            sc.SESSION_ID: turn["conversation_id"],
            sc.GEN_AI_CONVERSATION_ID: turn["conversation_id"],
            sc.OPENINFERENCE_SPAN_KIND: "CHAIN",
            sc.RAGLOOP_PROMPT_VERSION: self.prompt_version,
            sc.GEN_AI_REQUEST_MODEL: self.settings.llm_model,
        }
        if self.settings.trace_content and turn.get("user_message"):
            attrs[sc.INPUT_VALUE] = str(turn["user_message"])
        with self.tracer.start_as_current_span(sc.SPAN_TURN, attributes=attrs, end_on_exit=True) as span:
            with self._lock:
                self._turn_spans[turn["turn_id"]] = span
            token, id_token = _turn_span.set(span), _turn_id.set(str(turn["turn_id"]))
            try:
                yield
            finally:
                _turn_id.reset(id_token)
                _turn_span.reset(token)
                with self._lock:
                    self._turn_spans.pop(turn["turn_id"], None)

    @contextlib.contextmanager
    def chatlog_scope(self, operation: str) -> Iterator[None]:
        """A span around a chat-log write."""
        name = sc.SPAN_CHATLOG.format(operation=operation)
        attrs = {sc.CHATLOG_OPERATION: operation}
        # Not made current: a chat-log write has no child spans, and attaching costs the turn.
        span = self.tracer.start_span(name, context=_turn_context(), attributes=attrs)
        try:
            yield
        except BaseException as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            span.end()

    def langchain_config(self, turn: dict[str, Any]) -> dict[str, Any]:
        """LangSmith tracer and the turn's run id/metadata when LangSmith is on."""
        if self.langsmith is None:
            return {}
        return dict(self.langsmith.langchain_config(turn))

    def trace_ids(self) -> tuple[str, str] | None:
        """Hex (trace_id, span_id) of the current turn span."""
        ctx = trace.get_current_span().get_span_context()
        if not ctx.is_valid:
            return None
        return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")

    def annotate_retrieval(self, retrieval: Any) -> None:
        """Make the chain's retrieve step span (OpenLLMetry's) the RETRIEVER span with the documents.

        Called inside the step, where that span is current; its child is the Chroma query span.
        Annotating it rather than starting a span of our own saves a span per turn. Where no step
        span is current (LangChain not instrumented), a ``retrieval.documents`` span stands in.
        """
        chunks = list(getattr(retrieval, "retrieved", []) or [])
        ms = float(getattr(retrieval, "retrieval_ms", 0.0) or 0.0)
        attrs: dict[str, Any] = dict(retrieval_attributes(chunks, self.settings.trace_content))
        attrs[sc.OPENINFERENCE_SPAN_KIND] = "RETRIEVER"
        attrs[sc.RETRIEVAL_MS] = ms
        turn_span, turn_id = _turn_span.get(), _turn_id.get()
        if turn_id is not None:
            attrs[sc.TURN_ID] = turn_id
        span = trace.get_current_span()
        if not span.is_recording() and (turn_span is None or not turn_span.is_recording()):
            return  # tracing off: nothing records spans
        if span.is_recording() and span is not turn_span:
            span.set_attributes(attrs)
            return
        end = time.time_ns()
        own = self.tracer.start_span(
            sc.SPAN_RETRIEVAL, context=_turn_context(), start_time=end - int(ms * 1e6), attributes=attrs
        )
        own.end(end_time=end)

    def on_retrieval(self, turn: dict[str, Any], retrieval: Any) -> None:
        """Retrieval latency and top score metrics (the documents were traced inside the step)."""
        chunks = list(getattr(retrieval, "retrieved", []) or [])
        ms = float(getattr(retrieval, "retrieval_ms", 0.0) or 0.0)
        m = self.metrics
        m.defer((m.retrieval.record, ms / 1000, None))
        if chunks:
            m.defer((m.top_score.record, max(float(c.score) for c in chunks), None))

    def on_first_token(self, turn: dict[str, Any], ttft_ms: float) -> None:
        """Time to first token: an attribute of the turn span, and a histogram."""
        span = self._turn_spans.get(turn["turn_id"])
        if span is not None:
            span.set_attribute(sc.GEN_AI_SERVER_TTFT, ttft_ms / 1000)
        attrs = {sc.GEN_AI_REQUEST_MODEL: self.settings.llm_model}
        self.metrics.defer((self.metrics.ttft.record, ttft_ms / 1000, attrs))

    def on_turn_end(self, record: dict[str, Any]) -> None:
        """Outcome attributes on the turn span; latency, token, cost metrics."""
        model = str(record.get("model") or self.settings.llm_model)
        # None when a token count is unknown (the endpoint returned no usage): no cost is made up.
        cost = estimate_cost(self.prices, model, record.get("input_tokens"), record.get("output_tokens"))
        span = self._turn_spans.get(str(record.get("turn_id")))
        if span is not None:
            span.set_attributes(dict(turn_end_attributes(record, cost)))
            if self.settings.trace_content:
                if record.get("answer"):
                    span.set_attribute(sc.OUTPUT_VALUE, str(record["answer"]))
                if record.get("standalone_question"):
                    span.set_attribute(sc.TURN_STANDALONE_QUESTION, str(record["standalone_question"]))
            if record.get("status") == "error":
                span.set_status(Status(StatusCode.ERROR, str(record.get("error_type"))))
        self._record_turn_metrics(record, model, cost)

    def _record_turn_metrics(self, record: dict[str, Any], model: str, cost: float | None) -> None:
        m = self.metrics
        if cost is not None:
            m.defer((m.cost.add, cost, {sc.GEN_AI_REQUEST_MODEL: model}))
        if record.get("total_ms") is not None:
            status = {sc.TURN_STATUS: str(record.get("status"))}
            m.defer((m.turn_duration.record, float(record["total_ms"]) / 1000, status))
        for key, kind in (("input_tokens", "input"), ("output_tokens", "output")):
            if record.get(key) is not None:
                attrs = {sc.GEN_AI_TOKEN_TYPE: kind, sc.GEN_AI_REQUEST_MODEL: model}
                m.defer((m.tokens.record, int(record[key]), attrs))

    # --- feedback, scores, gauges ----------------------------------------------------------
    def on_feedback(
        self,
        turn: dict[str, Any],
        value: int | None,
        comment: str | None,
        previous_value: int | None = None,
    ) -> None:
        """A rater's feedback on ``turn`` was stored (a new rating, a changed one, or a comment).

        A feedback span goes into the turn's trace (linked to the turn span). The counters count
        raters, not clicks (see :data:`~monitoring.semconv.M_FEEDBACK`): the same rating again or a
        comment added to it counts nothing; a changed rating moves one count from the old value to
        the new. Delivery to vendors (LangSmith ...) goes through the chat log's outbox, not here.

        Args:
            turn: the turn's chat-log row (turn_id, trace_id, span_id).
            value: the rater's rating now: +1, -1, or None/0 when the rating was withdrawn.
            comment: the rater's comment, if any (traced only with content tracing on).
            previous_value: the rater's rating before this call; None for a first rating.
        """
        attrs: dict[str, Any] = {sc.TURN_ID: str(turn.get("turn_id"))}
        if value:
            attrs[sc.FEEDBACK_VALUE] = int(value)
        if comment and self.settings.trace_content:
            attrs[sc.FEEDBACK_COMMENT] = comment
        self._linked_span(sc.SPAN_FEEDBACK, turn, attrs, "EVALUATOR")
        for counter, delta in feedback_moves(previous_value, value):
            target = self.metrics.feedback if counter == "given" else self.metrics.feedback_retracted
            target.add(1, {sc.FEEDBACK_VALUE_ATTR: delta})

    def record_score(
        self,
        turn_id: str,
        trace_id: str | None,
        name: str,
        value: float,
        *,
        span_id: str | None = None,
        comment: str | None = None,
    ) -> None:
        """Attach an evaluation score to a turn: a span in its trace and a histogram.

        Delivery to vendors goes through the outbox (``eval.EvaluationStore.record``), not here.
        """
        attrs = {sc.TURN_ID: turn_id, sc.SCORE_NAME: name, sc.SCORE_VALUE: float(value)}
        turn = {"turn_id": turn_id, "trace_id": trace_id, "span_id": span_id}
        self._linked_span(sc.SPAN_SCORE, turn, attrs)
        self.metrics.score.record(float(value), {sc.SCORE_NAME: name})
        del comment  # kept for callers; a comment is free text, never a metric label

    def set_gauge(self, name: str, value: float, attrs: dict[str, Any] | None = None) -> None:
        """Set a member of the job gauge family (drift share, eval pass rate, ...)."""
        self.metrics.gauge.set(float(value), {**(attrs or {}), sc.GAUGE_NAME: name})

    def _linked_span(
        self, name: str, turn: dict[str, Any], attrs: dict[str, Any], kind: str = "EVALUATOR"
    ) -> None:
        ctx = _span_context(turn.get("trace_id"), turn.get("span_id"))
        parent = trace.set_span_in_context(NonRecordingSpan(ctx)) if ctx else None
        links = [Link(ctx)] if ctx else []
        if ctx is not None:
            attrs = {**attrs, sc.LINKED_TRACE_ID: format(ctx.trace_id, "032x")}
        attrs[sc.OPENINFERENCE_SPAN_KIND] = kind
        span = self.tracer.start_span(name, context=parent, links=links, attributes=attrs)
        span.add_event(sc.EVENT_FEEDBACK if name == sc.SPAN_FEEDBACK else name, attrs)
        span.end()

    def observe_outbox(self, engine: Any) -> None:
        """Expose ``ragloop_outbox_items{sink,status}`` from ``chatlog.outbox.counts(engine)``.

        Called by the composition root with the chat log's engine; read at each scrape/export.
        """
        try:
            from chatlog import outbox
        except ImportError:  # the outbox package is not there yet: no gauge
            log.info("chatlog.outbox is missing: no outbox gauge")
            return
        self.metrics.observe_outbox(lambda: outbox.counts(engine))

    # --- app & lifecycle ---------------------------------------------------------------------
    def instrument_app(self, app: Any) -> None:
        """Add HTTP server spans and request metrics to a FastAPI app, and its ``/metrics`` route."""
        from monitoring._http import add_metrics_route, instrument

        record = self.metrics.http_duration.record
        instrument(app, self.tracer, lambda seconds, attrs: self.metrics.defer((record, seconds, attrs)))
        add_metrics_route(app, self.metrics.registry, self.metrics.deferred.drain)

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Export everything queued so far (tests, shutdown)."""
        ok = all(p.force_flush(int(timeout_s * 1000)) for p in self._processors)
        self.metrics.deferred.drain()
        if self.langsmith is not None:
            self.langsmith.flush()
        return ok

    def shutdown(self) -> None:
        """Flush and stop every exporter and worker; the chat service can go on without them."""
        if self._closed:
            return
        self._closed = True
        for p in self._processors:
            self._dispatcher.remove(p)
            p.shutdown()
        self.metrics.shutdown()
        if self.logs is not None:
            self.logs.shutdown()
        if self.langsmith is not None:
            self.langsmith.shutdown()


def _build_langsmith(settings: Settings, client: Any | None, errors: ErrorCounter) -> Any | None:
    if not (settings.langsmith_api_key or settings.langsmith_tracing or client is not None):
        return None
    from monitoring._langsmith import LangSmithReporter

    return LangSmithReporter(settings, client=client, errors=errors)


class NoTelemetry:
    """The observer hooks doing nothing: what :func:`setup_telemetry` returns with telemetry off."""

    @contextlib.contextmanager
    def turn_scope(self, turn: dict[str, Any]) -> Iterator[None]:
        """No span."""
        yield

    @contextlib.contextmanager
    def chatlog_scope(self, operation: str) -> Iterator[None]:
        """No span."""
        yield

    def langchain_config(self, turn: dict[str, Any]) -> dict[str, Any]:
        """No callbacks."""
        return {}

    def trace_ids(self) -> tuple[str, str] | None:
        """No trace."""
        return None

    def annotate_retrieval(self, retrieval: Any) -> None:
        """Nothing."""

    def on_retrieval(self, turn: dict[str, Any], retrieval: Any) -> None:
        """Nothing."""

    def on_first_token(self, turn: dict[str, Any], ttft_ms: float) -> None:
        """Nothing."""

    def on_turn_end(self, record: dict[str, Any]) -> None:
        """Nothing."""

    def on_feedback(
        self, turn: dict[str, Any], value: int | None, comment: str | None, previous_value: int | None = None
    ) -> None:
        """Nothing."""

    def record_score(self, turn_id: str, trace_id: str | None, name: str, value: float, **_: Any) -> None:
        """Nothing."""

    def set_gauge(self, name: str, value: float, attrs: dict[str, Any] | None = None) -> None:
        """Nothing."""

    def observe_outbox(self, engine: Any) -> None:
        """Nothing."""

    def instrument_app(self, app: Any) -> None:
        """Nothing (no ``/metrics`` route)."""

    def force_flush(self, timeout_s: float = 10.0) -> bool:
        """Nothing to flush."""
        return True

    def shutdown(self) -> None:
        """Nothing to stop."""


def setup_telemetry(
    settings: Settings, *, prompt_version: str = "unknown", **kwargs: Any
) -> Telemetry | NoTelemetry:
    """The observer: a :class:`Telemetry`, or :class:`NoTelemetry` when RAGLOOP_TELEMETRY=false.

    Args:
        settings: the application settings.
        prompt_version: the chat layer's prompt version (the composition root passes
            ``chatbot.PROMPT_VERSION``).
        **kwargs: passed to :class:`Telemetry`.
    """
    if not settings.telemetry:
        log.info("telemetry off (RAGLOOP_TELEMETRY=false)")
        return NoTelemetry()
    return Telemetry(settings, prompt_version=prompt_version, **kwargs)
