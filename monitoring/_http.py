"""HTTP server spans and request metrics as a plain ASGI middleware, plus the ``/metrics`` route.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware) keeps the request's context current
while the route streams, so a turn started by the route becomes a child of the request span.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry.propagate import extract
from opentelemetry.trace import SpanKind, Status, StatusCode

from monitoring import semconv as sc

#: Paths not traced (scrapes and probes would drown the turns).
UNTRACED_PATHS = ("/metrics", "/health", "/healthz")


def route_template(scope: dict[str, Any]) -> str:
    """The matched route's path template, or a bucket for unmatched paths (bounded cardinality)."""
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    if path:
        return str(path)
    raw = str(scope.get("path", ""))
    if raw in UNTRACED_PATHS:
        return raw
    # Gradio and static assets live under many paths: keep the first segment only.
    first = raw.strip("/").split("/", 1)[0]
    return f"/{first}" if first else "/"


class TelemetryMiddleware:
    """Starts a SERVER span per HTTP request and records ``http.server.request.duration``."""

    def __init__(self, app: Any, tracer: Any, record: Callable[[float, dict[str, Any]], None]) -> None:
        """Wrap ``app``; ``record(seconds, attributes)`` receives each finished request."""
        self.app = app
        self.tracer = tracer
        self.record = record

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Trace one request."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        method = str(scope.get("method", "GET"))
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: dict[str, Any]) -> None:
            if message.get("type") == "http.response.start":
                status["code"] = int(message.get("status", 500))
            await send(message)

        if path in UNTRACED_PATHS:
            await self.app(scope, receive, send_wrapper)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        token = otel_context.attach(extract(headers))
        try:
            with self.tracer.start_as_current_span(
                f"{method} {path}", kind=SpanKind.SERVER, record_exception=True
            ) as span:
                span.set_attribute(sc.HTTP_METHOD, method)
                span.set_attribute(sc.URL_PATH, path)
                try:
                    await self.app(scope, receive, send_wrapper)
                finally:
                    self._finish(span, scope, method, status["code"], started)
        finally:
            otel_context.detach(token)

    def _finish(self, span: Any, scope: dict[str, Any], method: str, code: int, started: float) -> None:
        route = route_template(scope)
        span.update_name(f"{method} {route}")
        span.set_attribute(sc.HTTP_ROUTE, route)
        span.set_attribute(sc.HTTP_STATUS, code)
        attrs: dict[str, Any] = {sc.HTTP_ROUTE: route, sc.HTTP_METHOD: method, sc.HTTP_STATUS: code}
        if code >= 500:
            span.set_status(Status(StatusCode.ERROR))
            attrs[sc.ERROR_TYPE] = str(code)
        self.record(time.perf_counter() - started, attrs)


def add_metrics_route(app: Any, render: Callable[[], bytes]) -> None:
    """Add ``GET /metrics`` (Prometheus text format) to a FastAPI/Starlette app."""
    from starlette.responses import Response

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    async def metrics(_request: Any) -> Response:
        return Response(render(), media_type=content_type)

    app.add_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
    # Mounted apps (Gradio at "/") would otherwise shadow a route added after them.
    routes = app.router.routes
    routes.insert(0, routes.pop())


def instrument(app: Any, tracer: Any, record: Callable[[float, dict[str, Any]], None]) -> None:
    """Add the middleware to an app (before it starts)."""
    app.add_middleware(TelemetryMiddleware, tracer=tracer, record=record)
