"""A loopback stand-in for Arize's two ingestion endpoints, speaking the real SDK's wire formats.

Arize is hosted and cannot run here, so the tests point the real ``arize`` SDK (8.x) at this
receiver and capture exactly what it sends:

* ``POST /v1/pandas_arrow`` (``client.spans.log``): the body is an Arrow IPC stream whose schema
  metadata holds ``arize-schema`` (a base64 ``public_pb2.Schema``); headers carry the API key
  (``authorization``) and the space id (``arize-space-id``).
* Arrow Flight ``DoPut`` (``client.spans.update_evaluations`` / ``update_annotations``): the
  descriptor command is a JSON ``flight_pb2.DoPutRequest``; the answer is one
  ``WriteSpan{Evaluation,Annotation}Response`` with ``records_updated`` and ``unmatched_ids`` (the
  rows whose span id the receiver has not ingested), as Arize answers.

It keeps the spans it ingested by span id (an upsert, like Arize's store), so evaluations and
annotations for unknown spans come back unmatched. ``stop()``/``start()`` take it down and bring
it back on the same ports.
"""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pyarrow as pa
import pyarrow.flight as flight
from google.protobuf import json_format

from ragloop.process import free_port


@dataclass
class Request:
    """One captured upload: which endpoint, its metadata and the rows it carried."""

    kind: str  # "spans" (HTTP), "evaluation" or "annotation" (Flight)
    headers: dict[str, str]
    schema: pa.Schema
    table: pa.Table
    meta: dict[str, Any] = field(default_factory=dict)  # decoded arize-schema / DoPutRequest

    def rows(self) -> list[dict[str, Any]]:
        """The uploaded rows as dicts."""
        return self.table.to_pylist()


class _Headers(flight.ServerMiddleware):
    def __init__(self, headers: dict[str, list[Any]]) -> None:
        self.headers = {
            k: (v[0].decode() if isinstance(v[0], bytes) else str(v[0])) for k, v in headers.items()
        }


class _HeadersFactory(flight.ServerMiddlewareFactory):
    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> _Headers:
        return _Headers(headers)


class _FlightServer(flight.FlightServerBase):
    def __init__(self, owner: ArizeReceiver, location: str) -> None:
        super().__init__(location, middleware={"headers": _HeadersFactory()})
        self.owner = owner

    def do_put(self, context: Any, descriptor: Any, reader: Any, writer: Any) -> None:
        from arize._generated.protocol.flight import flight_pb2

        command = flight_pb2.DoPutRequest()
        json_format.Parse(descriptor.command.decode(), command)
        which = command.WhichOneof("request")
        table = reader.read_all()
        headers = dict(context.get_middleware("headers").headers)
        kind = {
            "write_span_evaluation_request": "evaluation",
            "write_span_annotation_request": "annotation",
        }.get(str(which), str(which))
        meta = json_format.MessageToDict(command, preserving_proto_field_name=True)
        meta["arize-schema"] = _decode_schema(table.schema)
        req = Request(kind, headers, table.schema, table, meta)
        span_ids = table.column("context.span_id").to_pylist()
        with self.owner.lock:
            self.owner.requests.append(req)
            unmatched = [s for s in span_ids if s not in self.owner.spans]
            store = self.owner.evaluations if kind == "evaluation" else self.owner.annotations
            for row in req.rows():
                if row["context.span_id"] in self.owner.spans:
                    store.setdefault(row["context.span_id"], {}).update(row)
        response_cls = (
            flight_pb2.WriteSpanEvaluationResponse
            if kind == "evaluation"
            else flight_pb2.WriteSpanAnnotationResponse
        )
        response = response_cls(records_updated=len(span_ids) - len(unmatched), unmatched_ids=unmatched)
        writer.write(pa.py_buffer(response.SerializeToString()))


def _decode_schema(schema: pa.Schema) -> dict[str, Any]:
    from arize._generated.protocol.rec import public_pb2

    raw = (schema.metadata or {}).get(b"arize-schema")
    if raw is None:
        return {}
    message = public_pb2.Schema()
    message.ParseFromString(base64.b64decode(raw))
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


class ArizeReceiver:
    """Both endpoints on free 127.0.0.1 ports; ``requests`` lists every upload in arrival order."""

    def __init__(self) -> None:
        """Pick the ports; call :meth:`start`."""
        self.http_port = free_port()
        self.flight_port = free_port()
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.spans: dict[str, dict[str, Any]] = {}
        self.evaluations: dict[str, dict[str, Any]] = {}
        self.annotations: dict[str, dict[str, Any]] = {}
        self._http: ThreadingHTTPServer | None = None
        self._flight: _FlightServer | None = None

    # --- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> ArizeReceiver:
        """Serve both endpoints (again, on the same ports after :meth:`stop`)."""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path != "/v1/pandas_arrow":
                    self.send_response(404)
                    self.end_headers()
                    return
                table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
                headers = {k.lower(): v for k, v in self.headers.items()}
                req = Request(
                    "spans", headers, table.schema, table, {"arize-schema": _decode_schema(table.schema)}
                )
                with owner.lock:
                    owner.requests.append(req)
                    for row in req.rows():
                        owner.spans[row["context.span_id"]] = row
                payload = json.dumps({"realTimeIngestionUri": ""}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), Handler)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._flight = _FlightServer(self, f"grpc://127.0.0.1:{self.flight_port}")
        return self

    def stop(self) -> None:
        """Take both endpoints down (connections are refused until :meth:`start`)."""
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._flight is not None:
            self._flight.shutdown()
            self._flight = None

    # --- what the SDK is pointed at ---------------------------------------------------------------
    def client_settings(self) -> dict[str, Any]:
        """Settings fields that point the SDK at this receiver."""
        return {
            "arize_api_host": "127.0.0.1",
            "arize_api_port": self.http_port,
            "arize_api_scheme": "http",
            "arize_flight_host": "127.0.0.1",
            "arize_flight_port": self.flight_port,
            "arize_flight_scheme": "grpc",
        }

    def of_kind(self, kind: str) -> list[Request]:
        """Captured uploads of one kind."""
        with self.lock:
            return [r for r in self.requests if r.kind == kind]

    def clear(self) -> None:
        """Forget captured uploads (the ingested spans stay, like a real store)."""
        with self.lock:
            self.requests.clear()
