"""FastAPI apps without FastAPI's native OpenTelemetry, which our own middleware replaces."""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import FastAPI

#: FastAPI >= 0.165 traces every request, dependency and endpoint on the global tracer provider
#: as soon as one is configured. Our :class:`monitoring._http.TelemetryMiddleware` already makes
#: the request span (with the route template and our metrics), so the native spans would be
#: duplicates: two HTTP spans per request and three more per LLM call on the zero-latency test
#: server, each costing the turn time and the exporter.
_NATIVE_OFF = {"tracing": False, "metrics": False, "logs": False, "operation_spans": False}


def native_telemetry_off() -> dict[str, Any]:
    """Keyword arguments that turn native telemetry off (none for a FastAPI without it)."""
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters:
        return {"telemetry": dict(_NATIVE_OFF)}
    return {}


def new_app(**kwargs: Any) -> FastAPI:
    """``FastAPI(**kwargs)`` with native telemetry off."""
    return FastAPI(**{**native_telemetry_off(), **kwargs})
