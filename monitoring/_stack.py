"""The local monitoring stack: a rotel OpenTelemetry collector and Arize Phoenix as trace viewer.

Wiring: app --OTLP--> rotel (127.0.0.1:4317 gRPC / 4318 HTTP) --traces--> Phoenix (or any OTLP
endpoint named by RAGLOOP_TRACES_FORWARD, e.g. a SigNoz collector). Phoenix only stores traces, so
with Phoenix as the target the collector drops metrics and logs (Prometheus scrapes ``/metrics``).
Phoenix runs from its own virtual environment (``make phoenix`` creates ``.venv-tools/phoenix``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from ragloop.process import ManagedProcess, ensure_port_free, http_ok, port_open
from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: The checkout's root: ``.venv-tools`` lives there.
ROOT = Path(__file__).resolve().parent.parent


class StackProcess(ManagedProcess):
    """A :class:`ManagedProcess` with the URL ``ragloop run`` prints."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, url: str, **kw: object) -> None:
        """Describe the process and its URL."""
        super().__init__(name, argv, log_path, **kw)  # type: ignore[arg-type]
        self.url = url


def rotel_binary() -> Path:
    """The ``rotel-agent`` executable shipped in the ``rotel`` wheel."""
    try:
        import rotel
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("the local collector needs: pip install 'ragloop[tracing]'") from exc
    return Path(rotel.__file__).parent / "rotel-agent"


def phoenix_binary(settings: Settings) -> Path:
    """The ``phoenix`` executable (RAGLOOP_PHOENIX_BIN, else ``.venv-tools/phoenix``)."""
    exe = settings.phoenix_bin or ROOT / ".venv-tools" / "phoenix" / "bin" / "phoenix"
    if not Path(exe).exists():
        raise FileNotFoundError(f"Phoenix is not installed at {exe}: run `make phoenix`")
    return Path(exe)


def rotel_command(
    grpc_port: int, http_port: int, traces_to: str | None, pid_file: Path
) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of a rotel collector forwarding traces to ``traces_to``.

    ``traces_to`` None drops everything (a sink). Named exporters take their endpoint from
    ``ROTEL_EXPORTER_<NAME>_ENDPOINT``: traces go to ``traces_to``, metrics and logs are dropped.
    """
    argv = [
        str(rotel_binary()),
        "start",
        "--otlp-grpc-endpoint",
        f"127.0.0.1:{grpc_port}",
        "--otlp-http-endpoint",
        f"127.0.0.1:{http_port}",
        "--pid-file",
        str(pid_file),
    ]
    if traces_to is None:
        return [*argv, "--exporter", "blackhole"], {}
    argv += ["--exporters", "traces:otlp,drop:blackhole", "--exporters-traces", "traces"]
    argv += ["--exporters-metrics", "drop", "--exporters-logs", "drop"]
    return argv, {"ROTEL_EXPORTER_TRACES_ENDPOINT": traces_to}


def start_collector(settings: Settings, traces_to: str | None, run_dir: Path) -> StackProcess:
    """Start rotel and wait until its OTLP ports accept connections."""
    grpc, http = settings.collector_grpc_port, settings.collector_http_port
    argv, env = rotel_command(grpc, http, traces_to, run_dir / f"rotel-{grpc}.pid")
    url = f"http://127.0.0.1:{grpc}"  # OTLP gRPC; OTLP HTTP is on the next setting's port
    proc = StackProcess("collector", argv, run_dir / "rotel.log", url=url, env=env)
    proc.start()
    try:
        proc.wait_ready(lambda: port_open("127.0.0.1", grpc) and port_open("127.0.0.1", http), timeout=30)
    except BaseException:
        proc.stop()
        raise
    return proc


def start_phoenix(settings: Settings, run_dir: Path, timeout: float = 180.0) -> StackProcess:
    """Start ``phoenix serve`` on 127.0.0.1 and wait for ``/healthz`` (about 35 s the first time)."""
    work = run_dir / "phoenix"
    work.mkdir(parents=True, exist_ok=True)
    env = {
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(settings.phoenix_port),
        "PHOENIX_GRPC_PORT": str(settings.phoenix_grpc_port),
        "PHOENIX_WORKING_DIR": str(work),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    url = f"http://127.0.0.1:{settings.phoenix_port}"
    argv = [str(phoenix_binary(settings)), "serve"]
    proc = StackProcess("phoenix", argv, run_dir / "phoenix.log", url=url, env=env)
    proc.start()
    try:
        proc.wait_ready(lambda: http_ok(f"{url}/healthz"), timeout=timeout, interval=1.0)
    except BaseException:
        proc.stop()
        raise
    return proc


def check_stack_ports(settings: Settings) -> None:
    """Raise a one-line UserError when a port of an enabled local tool cannot be listened on.

    Phoenix (UI and OTLP/gRPC) when ``RAGLOOP_PHOENIX`` is on, the collector (OTLP gRPC and HTTP)
    when ``RAGLOOP_COLLECTOR`` is on; each message names the variable that sets the port.
    """
    wanted: list[tuple[int, str]] = []
    if settings.phoenix:
        wanted += [
            (settings.phoenix_port, "RAGLOOP_PHOENIX_PORT"),
            (settings.phoenix_grpc_port, "RAGLOOP_PHOENIX_GRPC_PORT"),
        ]
    if settings.collector:
        wanted += [
            (settings.collector_grpc_port, "RAGLOOP_COLLECTOR_GRPC_PORT"),
            (settings.collector_http_port, "RAGLOOP_COLLECTOR_HTTP_PORT"),
        ]
    for port, variable in wanted:
        ensure_port_free("127.0.0.1", port, port_setting=variable)


def start_local_stack(settings: Settings, skipped: list[str] | None = None) -> list[StackProcess]:
    """Start Phoenix and the collector as the settings ask; each result has a ``url`` to print.

    The app reaches the collector through the default OTLP endpoint (see ``monitoring._otlp``).

    Args:
        settings: ``phoenix``/``collector`` say what to start.
        skipped: when given, a tool that is not installed is reported here (one message naming
            the command that installs it) instead of raising; without Phoenix the collector still
            runs, forwarding traces to RAGLOOP_TRACES_FORWARD or dropping them.

    Raises:
        UserError: a port of an enabled tool is in use (:func:`check_stack_ports`).
        FileNotFoundError, ImportError: a tool is not installed (only without ``skipped``).
    """
    check_stack_ports(settings)  # a port in use: one line now, before Phoenix's half-minute start
    run_dir = settings.data_dir / "monitoring"
    procs: list[StackProcess] = []
    try:
        traces_to = settings.traces_endpoint
        if settings.phoenix:
            try:
                phoenix = start_phoenix(settings, run_dir)
            except FileNotFoundError as exc:
                if skipped is None:
                    raise
                skipped.append(str(exc))
            else:
                procs.append(phoenix)
                traces_to = traces_to or f"http://127.0.0.1:{settings.phoenix_grpc_port}"
        if settings.collector:
            try:
                procs.append(start_collector(settings, traces_to, run_dir))
            except (ImportError, FileNotFoundError) as exc:
                if skipped is None:
                    raise
                skipped.append(str(exc))
    except BaseException:
        for proc in reversed(procs):
            proc.stop()
        raise
    for proc in procs:
        log.info("%s: %s (log %s)", proc.name, proc.url, proc.log_path)
    return procs
