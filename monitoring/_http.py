"""HTTP server spans and request metrics as a plain ASGI middleware, plus the ``/metrics`` route.

A pure ASGI middleware (not Starlette's BaseHTTPMiddleware) keeps the request's context current
while the route streams, so a turn started by the route becomes a child of the request span.

Metric labels are bounded by construction: ``http.route`` is the matched route's template (or the
prefix of a mount the app declares, or :data:`~monitoring.semconv.HTTP_ROUTE_UNMATCHED`), the
method is one of the HTTP methods or ``_OTHER``, the status is the code the app answered. Nothing
the client sends (path, query string, ids, headers) becomes a label value.

Why not ``opentelemetry-instrumentation-asgi``: it records each request's metrics on the request's
path and creates extra instruments (active requests, body sizes) the dashboards do not use; this
middleware defers its one measurement (see ``bench/bench_telemetry.py`` for the overhead).
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
#: Methods kept as label values; any other method is ``_OTHER`` (OpenTelemetry HTTP semconv).
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
OTHER_METHOD = "_OTHER"


def normalize_method(method: str) -> str:
    """The request method as a label value: a standard method, else ``_OTHER``."""
    return method if method in KNOWN_METHODS else OTHER_METHOD


def mount_prefixes(app: Any) -> tuple[str, ...]:
    """Path prefixes of the sub-apps ``app`` mounts (not ``/``), longest first: a fixed set."""
    prefixes = []
    for route in getattr(getattr(app, "router", None), "routes", None) or getattr(app, "routes", []):
        path = getattr(route, "path", None)
        if path and route.__class__.__name__ == "Mount" and path.strip("/"):
            prefixes.append("/" + path.strip("/"))
    return tuple(sorted(set(prefixes), key=len, reverse=True))


def route_template(scope: dict[str, Any], mounts: tuple[str, ...] = ()) -> str:
    """The request's route label: one of a fixed set of values, never taken from the request.

    Returns:
        The matched route's path template (``/api/conversations/{conversation_id}``); the probe
        and scrape paths themselves; ``<mount>/{path}`` for a path under one of ``mounts``; else
        :data:`~monitoring.semconv.HTTP_ROUTE_UNMATCHED`.
    """
    route = scope.get("route")
    path = getattr(route, "path", None) or getattr(route, "path_format", None)
    if path:
        return str(path)
    raw = str(scope.get("path", ""))
    if raw in UNTRACED_PATHS:
        return raw
    for prefix in mounts:
        if raw == prefix or raw.startswith(prefix + "/"):
            return prefix + "/{path}"
    return sc.HTTP_ROUTE_UNMATCHED


class TelemetryMiddleware:
    """Starts a SERVER span per HTTP request and records ``http.server.request.duration``."""

    def __init__(
        self,
        app: Any,
        tracer: Any,
        record: Callable[[float, dict[str, Any]], None],
        mounts: Callable[[], tuple[str, ...]] = tuple,
    ) -> None:
        """Wrap ``app``; ``record(seconds, attributes)`` receives each finished request.

        ``mounts()`` returns the app's mount prefixes (read once, at the first request, when every
        route has been added).
        """
        self.app = app
        self.tracer = tracer
        self.record = record
        self._mounts_of = mounts
        self._mounts: tuple[str, ...] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Trace one request."""
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))
        method = normalize_method(str(scope.get("method", "GET")))
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
            # Named by method only until the route is known (never by the raw path).
            with self.tracer.start_as_current_span(
                method, kind=SpanKind.SERVER, record_exception=True
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
        if self._mounts is None:
            self._mounts = tuple(self._mounts_of())
        route = route_template(scope, self._mounts)
        span.update_name(f"{method} {route}")
        span.set_attribute(sc.HTTP_ROUTE, route)
        span.set_attribute(sc.HTTP_STATUS, code)
        attrs: dict[str, Any] = {sc.HTTP_ROUTE: route, sc.HTTP_METHOD: method, sc.HTTP_STATUS: code}
        if code >= 500:
            span.set_status(Status(StatusCode.ERROR))
            attrs[sc.ERROR_TYPE] = str(code)
        self.record(time.perf_counter() - started, attrs)


class MetricsEndpoint:
    """``GET /metrics``: prometheus-client's ASGI exposition app, after recording deferred measurements.

    prometheus-client renders the registry (text format, OpenMetrics when asked, gzip when
    accepted); ``before`` runs first so a scrape sees every measurement taken so far.
    """

    def __init__(self, registry: Any, before: Callable[[], None]) -> None:
        """Serve ``registry``; call ``before()`` ahead of each scrape."""
        from prometheus_client import make_asgi_app

        self._app = make_asgi_app(registry=registry)
        self._before = before

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """One scrape."""
        self._before()
        await self._app(scope, receive, send)


def add_metrics_route(app: Any, registry: Any, before: Callable[[], None]) -> None:
    """Add ``GET /metrics`` (:class:`MetricsEndpoint` on ``registry``) to a FastAPI/Starlette app."""
    from starlette.routing import Route

    app.router.routes.append(Route("/metrics", MetricsEndpoint(registry, before), methods=["GET"]))
    # Mounted apps (Gradio at "/") would otherwise shadow a route added after them.
    routes = app.router.routes
    routes.insert(0, routes.pop())


def instrument(app: Any, tracer: Any, record: Callable[[float, dict[str, Any]], None]) -> None:
    """Add the middleware to an app (before it starts)."""
    app.add_middleware(TelemetryMiddleware, tracer=tracer, record=record, mounts=lambda: mount_prefixes(app))
