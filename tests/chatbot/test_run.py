"""``ragloop run`` as users start it: a real subprocess that indexes, serves, prints its URL, stops.

The LLM is the session's real server (``OPENAI_BASE_URL``), so no model is fetched or started here,
and the monitoring stack is switched off; what is under test is the orchestration.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import httpx
import pytest

from ragloop.process import ManagedProcess, free_port


def _start(argv: list[str], env: dict[str, str], log: Path, cwd: Path, port: int) -> ManagedProcess:
    proc = ManagedProcess("ragloop-run", argv, log, env=env, cwd=cwd).start()
    proc.wait_ready(lambda: "ragloop chat is ready" in log.read_text(errors="replace"), timeout=240)
    assert f"http://127.0.0.1:{port}/" in log.read_text()
    return proc


@pytest.mark.llm
@pytest.mark.slow
def test_run_indexes_serves_and_a_second_run_reuses_the_index(llm_server: str, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "sets.md").write_text("# Sets\n\nA set holds unique items; `set.add(x)` inserts one.\n")
    port = free_port()
    env = {
        "OPENAI_BASE_URL": llm_server,
        "RAGLOOP_CORPUS": str(corpus),
        "RAGLOOP_DATA_DIR": str(tmp_path / "data"),
        "RAGLOOP_PORT": str(port),
        "RAGLOOP_TELEMETRY": "false",
        "RAGLOOP_PHOENIX": "false",
        "RAGLOOP_COLLECTOR": "false",
        "RAGLOOP_LABELING_UI": "none",
        "HF_HUB_OFFLINE": "1",
    }
    argv = [sys.executable, "-m", "ragloop.cli", "run"]
    summaries = []
    for attempt in (1, 2):
        log = tmp_path / f"run{attempt}.log"
        proc = _start(argv, env, log, tmp_path, port)
        try:
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=30).json()
            assert health["status"] == "ok" and health["chunks"] >= 1
        finally:
            proc.stop()  # SIGTERM to the process group, as Ctrl-C / a service manager would
        assert proc.proc is not None and proc.proc.returncode is not None
        text = log.read_text()
        summaries.append(re.search(r"chunks: (\d+) added", text))
        # The same application as `ragloop serve` (ragloop.app), over a Chroma server run started.
        assert re.search(r"chroma: http://127\.0\.0\.1:\d+", text), text[-2000:]
        assert "online evaluator started" in text
    assert summaries[0] and int(summaries[0].group(1)) >= 1
    assert summaries[1] and int(summaries[1].group(1)) == 0, "a second run must not re-index"


@pytest.mark.parametrize("command", ["serve", "run"])
def test_app_commands_have_help(command: str) -> None:
    from typer.testing import CliRunner

    from ragloop.cli import app

    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and "--port" in result.output


def _collector_takes_a_span(endpoint: str) -> bool:
    """Send one span over OTLP/gRPC, as the app does; True when the receiver accepted it."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    results: list[SpanExportResult] = []

    class Recording(SpanExporter):
        def __init__(self) -> None:
            self.inner = OTLPSpanExporter(endpoint=endpoint, insecure=True, timeout=5)

        def export(self, spans):  # type: ignore[no-untyped-def]
            results.append(self.inner.export(spans))
            return results[-1]

        def shutdown(self) -> None:
            self.inner.shutdown()

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(Recording()))
    with provider.get_tracer("test").start_as_current_span("probe"):
        pass
    provider.shutdown()
    return results == [SpanExportResult.SUCCESS]


@pytest.mark.parametrize("broken", ["phoenix missing", "collector fails"])
def test_a_missing_phoenix_or_collector_never_leaves_the_app_exporting_to_a_dead_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], broken: str
) -> None:
    from monitoring._otlp import resolve_endpoint
    from ragloop.process import port_open
    from ragloop.run import start_stack, stop_all
    from ragloop.settings import Settings

    grpc = free_port()
    data = tmp_path / "data"
    if broken == "collector fails":
        data.mkdir()
        (data / "monitoring").write_text("a file where the collector's folder should be")
    settings = Settings(
        data_dir=data,
        phoenix=broken == "phoenix missing",
        phoenix_bin=tmp_path / "no-phoenix" / "bin" / "phoenix",
        collector=True,
        collector_grpc_port=grpc,
        collector_http_port=free_port(),
        otlp_endpoint=None,
        otlp_protocol="grpc",
        traces_endpoint=None,
    )
    app_settings, procs = start_stack(settings)
    try:
        endpoint = resolve_endpoint(app_settings)
        if broken == "phoenix missing":
            # The collector runs alone (dropping traces): the app's exports succeed.
            assert endpoint == f"http://127.0.0.1:{grpc}" and port_open("127.0.0.1", grpc)
            assert _collector_takes_a_span(endpoint)
            assert app_settings.phoenix_url is None  # no Phoenix: no sink deletes traces there
        else:
            assert endpoint is None, "the app must not export to a collector that did not start"
    finally:
        stop_all(procs)
    out = [line for line in capsys.readouterr().out.splitlines() if "not started" in line]
    assert len(out) == 1, out
    if broken == "phoenix missing":
        assert "make phoenix" in out[0] and "no-phoenix" in out[0], out[0]
    else:
        assert "collector" in out[0] and "no telemetry" in out[0], out[0]
