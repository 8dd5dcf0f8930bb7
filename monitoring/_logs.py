"""Logs: console lines carrying trace and span ids, and the same records over OTLP.

The OTLP handler runs through a batch processor with a bounded queue on its own thread; records
from the telemetry machinery itself are not exported (a down collector would otherwise log about
its own failures forever).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace

from monitoring._tracing import PAUSE_S, ErrorCounter
from monitoring.semconv import DROP_CIRCUIT_OPEN, DROP_EXPORT_FAILED

log = logging.getLogger(__name__)

CONSOLE_FORMAT = "%(asctime)s %(levelname)s %(name)s [trace_id=%(trace_id)s span_id=%(span_id)s] %(message)s"
_SELF_LOGGERS = ("opentelemetry", "urllib3", "grpc", "httpx", "httpcore", "langsmith", "monitoring._")


class TraceContextFilter(logging.Filter):
    """Adds ``trace_id`` and ``span_id`` (hex, or ``-``) of the current span to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Annotate; never drops a record."""
        ctx = trace.get_current_span().get_span_context()
        if ctx.is_valid:
            record.trace_id = format(ctx.trace_id, "032x")
            record.span_id = format(ctx.span_id, "016x")
        else:
            record.trace_id = record.span_id = "-"
        return True


class _NotSelf(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(_SELF_LOGGERS)


def install_console(root: logging.Logger | None = None) -> None:
    """Give the root logger's console handlers the trace-id filter and format (idempotent)."""
    root = root or logging.getLogger()
    # Exactly StreamHandler: test harness handlers (pytest's capture) subclass it and keep their format.
    handlers = [h for h in root.handlers if type(h) is logging.StreamHandler]
    if not handlers:
        handler = logging.StreamHandler()
        root.addHandler(handler)
        handlers = [handler]
    for handler in handlers:
        if not any(isinstance(f, TraceContextFilter) for f in handler.filters):
            handler.addFilter(TraceContextFilter())
        handler.setFormatter(logging.Formatter(CONSOLE_FORMAT))


def _guarded_log_exporter(inner: Any, errors: ErrorCounter) -> Any:
    from opentelemetry.sdk._logs.export import LogRecordExporter, LogRecordExportResult

    paused_until = [0.0]

    class Guarded(LogRecordExporter):
        def export(self, batch: Sequence[Any]) -> Any:
            # Circuit breaker, as for spans: no connection attempts while the collector is down.
            if time.monotonic() < paused_until[0]:
                errors.dropped("logs", DROP_CIRCUIT_OPEN, len(batch))
                errors.failed("logs", f"{len(batch)} records dropped (collector unreachable)")
                return LogRecordExportResult.FAILURE
            try:
                result = inner.export(batch)
            except Exception as exc:  # noqa: BLE001 - telemetry never raises
                result, detail = LogRecordExportResult.FAILURE, type(exc).__name__
            else:
                detail = f"{len(batch)} records dropped"
            if getattr(result, "name", "SUCCESS") != "SUCCESS":
                paused_until[0] = time.monotonic() + PAUSE_S
                errors.dropped("logs", DROP_EXPORT_FAILED, len(batch))
                errors.failed("logs", detail)
            return result

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return bool(getattr(inner, "force_flush", lambda _t: True)(timeout_millis))

    return Guarded()


class OtlpLogs:
    """A LoggerProvider exporting Python log records over OTLP, attached to the root logger."""

    def __init__(self, resource: Any, exporter: Any, errors: ErrorCounter, level: int = logging.INFO) -> None:
        """Attach an OTLP handler to the root logger."""
        from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
        from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

        self.provider = LoggerProvider(resource=resource)
        self.provider.add_log_record_processor(
            BatchLogRecordProcessor(_guarded_log_exporter(exporter, errors), max_queue_size=2048)
        )
        self.handler = LoggingHandler(level=level, logger_provider=self.provider)
        self.handler.addFilter(_NotSelf())
        logging.getLogger().addHandler(self.handler)

    def shutdown(self) -> None:
        """Detach and flush."""
        logging.getLogger().removeHandler(self.handler)
        try:
            self.provider.shutdown()
        except Exception:  # noqa: BLE001 - shutting down telemetry never raises
            log.debug("log provider shutdown failed", exc_info=True)
