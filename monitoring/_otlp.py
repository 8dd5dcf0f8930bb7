"""The OTLP adapter: span, metric and log exporters for SigNoz or any OpenTelemetry collector.

Configured by the standard variables through :class:`~ragloop.settings.Settings`:
``OTEL_EXPORTER_OTLP_ENDPOINT``, ``OTEL_EXPORTER_OTLP_PROTOCOL`` (grpc or http/protobuf),
``OTEL_EXPORTER_OTLP_HEADERS`` (e.g. a SigNoz Cloud ingestion key).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from monitoring._attributes import parse_kv
from ragloop.settings import Settings

#: Seconds an export may take before it is abandoned (off the hot path, but bounds shutdown).
EXPORT_TIMEOUT_S = 5


@dataclass
class OtlpExporters:
    """The three exporters of one endpoint."""

    endpoint: str
    protocol: str
    spans: Any
    metrics: Any
    logs: Any


def resolve_endpoint(settings: Settings) -> str | None:
    """The OTLP endpoint: explicit, else the local collector when it is on, else None (no export)."""
    if settings.otlp_endpoint:
        return settings.otlp_endpoint
    if settings.collector:
        port = settings.collector_grpc_port if _is_grpc(settings) else settings.collector_http_port
        return f"http://127.0.0.1:{port}"
    return None


def _is_grpc(settings: Settings) -> bool:
    return settings.otlp_protocol.strip().lower() == "grpc"


def build_exporters(settings: Settings) -> OtlpExporters | None:
    """Exporters for the configured endpoint, or None when OTLP export is off."""
    endpoint = resolve_endpoint(settings)
    if endpoint is None:
        return None
    secret = settings.otlp_headers
    headers = parse_kv(secret.get_secret_value() if secret is not None else None)
    try:
        if _is_grpc(settings):
            return _grpc(endpoint, headers, settings.otlp_insecure and not endpoint.startswith("https"))
        return _http(endpoint.rstrip("/"), headers)
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("OTLP export needs: pip install 'ragloop[tracing]'") from exc


def _grpc(endpoint: str, headers: dict[str, str], insecure: bool) -> OtlpExporters:
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

    kw: dict[str, Any] = {"endpoint": endpoint, "headers": headers, "insecure": insecure}
    return OtlpExporters(
        endpoint,
        "grpc",
        OTLPSpanExporter(timeout=EXPORT_TIMEOUT_S, **kw),
        OTLPMetricExporter(timeout=EXPORT_TIMEOUT_S, **kw),
        OTLPLogExporter(timeout=EXPORT_TIMEOUT_S, **kw),
    )


def _http(base: str, headers: dict[str, str]) -> OtlpExporters:
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OtlpExporters(
        base,
        "http/protobuf",
        OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=headers, timeout=EXPORT_TIMEOUT_S),
        OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=headers, timeout=EXPORT_TIMEOUT_S),
        OTLPLogExporter(endpoint=f"{base}/v1/logs", headers=headers, timeout=EXPORT_TIMEOUT_S),
    )
