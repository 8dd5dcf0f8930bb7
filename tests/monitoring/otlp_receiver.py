"""A real OTLP/gRPC receiver (the collector's Trace/Metrics/Logs services) that records what arrives.

It implements the OTLP protocol's own gRPC services from ``opentelemetry-proto``, so a collector
(rotel) exports to it exactly as it would to SigNoz's collector. It can be stopped and started again
on the same port to play an upstream outage.
"""

from __future__ import annotations

import threading
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return tuple(_value(x) for x in v.array_value.values)
    return getattr(v, kind) if kind else None


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


@dataclass
class Captured:
    """What arrived: spans and metric points with their attributes, resource attributes apart."""

    spans: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    resources: list[dict[str, Any]] = field(default_factory=list)
    span_ids: set[bytes] = field(default_factory=set)
    duplicates: int = 0


class OtlpReceiver:
    """``with OtlpReceiver() as r:`` serves OTLP/gRPC on ``r.endpoint`` and records into ``r.got``."""

    def __init__(self, port: int | None = None) -> None:
        """Listen on ``port`` (a free one by default) once started."""
        from ragloop.process import free_port

        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.got = Captured()
        self._lock = threading.Lock()
        self._server: Any = None

    def start(self) -> OtlpReceiver:
        """Serve (again) on the same port."""
        import grpc
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2 as lpb
        from opentelemetry.proto.collector.logs.v1 import logs_service_pb2_grpc as lgrpc
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as mpb
        from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as mgrpc
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as tpb
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as tgrpc

        receiver = self

        class Traces(tgrpc.TraceServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
                receiver._traces(request)
                return tpb.ExportTraceServiceResponse()

        class Metrics(mgrpc.MetricsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
                receiver._metrics(request)
                return mpb.ExportMetricsServiceResponse()

        class Logs(lgrpc.LogsServiceServicer):
            def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC method name
                return lpb.ExportLogsServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        tgrpc.add_TraceServiceServicer_to_server(Traces(), server)
        mgrpc.add_MetricsServiceServicer_to_server(Metrics(), server)
        lgrpc.add_LogsServiceServicer_to_server(Logs(), server)
        server.add_insecure_port(f"127.0.0.1:{self.port}")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Stop serving (connections are refused until :meth:`start`)."""
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None

    def __enter__(self) -> OtlpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _traces(self, request: Any) -> None:
        with self._lock:
            for rs in request.resource_spans:
                resource = _attrs(rs.resource.attributes)
                self.got.resources.append(resource)
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        key = span.trace_id + span.span_id
                        if key in self.got.span_ids:
                            self.got.duplicates += 1
                            continue
                        self.got.span_ids.add(key)
                        self.got.spans.append(
                            {"name": span.name, "attributes": _attrs(span.attributes), "resource": resource}
                        )

    def _metrics(self, request: Any) -> None:
        with self._lock:
            for rm in request.resource_metrics:
                resource = _attrs(rm.resource.attributes)
                self.got.resources.append(resource)
                for sm in rm.scope_metrics:
                    for metric in sm.metrics:
                        kind = metric.WhichOneof("data")
                        points = getattr(metric, kind).data_points if kind else []
                        bucket = self.got.metrics.setdefault(metric.name, [])
                        for p in points:
                            bucket.append(
                                {"kind": kind, "attributes": _attrs(p.attributes), "resource": resource}
                            )
