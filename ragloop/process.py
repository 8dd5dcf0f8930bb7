"""Start, probe and stop the helper servers ragloop runs (LLM, collector, Phoenix, Chroma, ...).

Used by ``ragloop run`` and by the test fixtures, so tests start servers exactly as users do.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ragloop.settings import Settings

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def parse_port(value: object) -> int:
    """A TCP port given on the command line (typer ``parser=``): an integer from 1 to 65535.

    Every command's ``--port`` uses it, so ``--port -1`` or ``--port 99999`` is refused by the option
    itself, in one line naming the option and the value, before anything starts.

    Raises:
        typer.BadParameter: not an integer, or outside 1-65535.
    """
    import typer

    try:
        port = int(str(value))
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a port number: use 1-65535") from None
    if not 1 <= port <= 65535:
        raise typer.BadParameter(f"{port} is not a port number: use 1-65535")
    return port


def ensure_port_free(host: str, port: int, *, port_setting: str, host_setting: str | None = None) -> None:
    """Fail at once, with one line, when a server could not listen on ``host:port``.

    A server command calls this BEFORE its slow start (loading a model, building the app), so a
    port in use is reported in a second, not after the start. The probe binds a socket the way
    servers do (``SO_REUSEADDR``: a port in TIME_WAIT is free, one with a listener is not) and
    closes it at once.

    Args:
        host: the address the server will bind.
        port: the TCP port (1-65535).
        port_setting: how the user sets the port, e.g. ``"--port / RAGLOOP_PORT"``.
        host_setting: how the user sets the host (default: not named).

    Raises:
        UserError: the port is in use or reserved, or ``host`` is not an address of this machine.
    """
    import errno

    from ragloop.errors import UserError

    where = f" ({host_setting})" if host_setting else ""
    if not 1 <= int(port) <= 65535:
        raise UserError(f"{port_setting}: port {port} is not in the range 1-65535")
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"cannot listen on host {host!r}{where}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise UserError(
                    f"port {port} on {host} is already in use ({port_setting}): "
                    "stop what runs there or choose a free port"
                ) from None
            if exc.errno == errno.EACCES:
                raise UserError(
                    f"port {port} needs root privileges ({port_setting}): choose a port above 1023"
                ) from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise UserError(
                    f"cannot listen on host {host!r}{where}: not an address of this machine"
                ) from None
            raise UserError(f"cannot listen on {host}:{port} ({port_setting}): {exc.strerror}") from None


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True when ``GET url`` answers with a 2xx status."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - local URLs only
            return 200 <= resp.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


class ManagedProcess:
    """A child server process with its output in a log file, stopped with its process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        """Describe the process; :meth:`start` launches it."""
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ManagedProcess:
        """Launch the process in its own session (so stop() reaches its children too)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        logf = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        env = {**os.environ, **(self.env or {})}
        log.info("starting %s: %s (log: %s)", self.name, " ".join(self.argv), self.log_path)
        self.proc = subprocess.Popen(
            self.argv, stdout=logf, stderr=subprocess.STDOUT, env=env, cwd=self.cwd, start_new_session=True
        )
        logf.close()
        return self

    @property
    def alive(self) -> bool:
        """True while the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 120.0, interval: float = 0.25) -> None:
        """Poll ``probe`` until it is true; raise with the log's tail if the process dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if probe():
                log.info("%s is ready", self.name)
                return
            if not self.alive:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            time.sleep(interval)
        raise TimeoutError(f"{self.name} not ready after {timeout:.0f}s:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        """The last lines of the process log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 10.0) -> None:
        """Terminate the process group, then kill it if it does not exit in time."""
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=timeout)
        log.info("stopped %s", self.name)

    def __enter__(self) -> ManagedProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ThreadedServer:
    """An ASGI app under uvicorn in a daemon thread on a free 127.0.0.1 port (tests, benchmarks).

    ``with ThreadedServer(app, "/healthz") as server:`` serves until the block ends; ``server.base``
    is ``http://127.0.0.1:PORT``. Extra keyword arguments go to ``uvicorn.Config``.
    """

    def __init__(
        self, app: Any, ready_path: str, *, name: str = "asgi-server", timeout_s: float = 60.0, **config: Any
    ) -> None:
        """Configure; :meth:`start` serves."""
        self.app = app
        self.ready_path = ready_path
        self.name = name
        self.timeout_s = timeout_s
        self.config = {"log_level": "warning", **config}
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def start(self) -> ThreadedServer:
        """Serve, and wait until ``ready_path`` answers 2xx.

        Raises:
            RuntimeError: the server thread died while starting.
            TimeoutError: it did not answer within ``timeout_s``.
        """
        import uvicorn

        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, **self.config)
        )
        self._thread = threading.Thread(target=self._server.run, name=self.name, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self.timeout_s
        while not http_ok(self.base + self.ready_path):
            if not self._thread.is_alive():
                raise RuntimeError(f"{self.name} died while starting")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"{self.name} did not answer {self.ready_path} in {self.timeout_s:.0f} s")
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)

    def __enter__(self) -> ThreadedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def check_llm_port(settings: Settings) -> bool:
    """True when an LLM server answers on RAGLOOP_LLM_PORT (reuse it); False when the port is free.

    Raises:
        UserError: the port is taken by something that is not an LLM server, or cannot be bound.
    """
    from ragloop.errors import UserError

    if http_ok(f"http://{settings.llm_host}:{settings.llm_port}/v1/models"):
        return True
    if port_open(settings.llm_host, settings.llm_port):
        raise UserError(
            f"port {settings.llm_port} is taken by something that is not an LLM server: "
            "set RAGLOOP_LLM_PORT to a free port"
        )
    ensure_port_free(
        settings.llm_host, settings.llm_port, port_setting="RAGLOOP_LLM_PORT", host_setting="RAGLOOP_LLM_HOST"
    )
    return False


def start_llm(settings: Settings) -> ManagedProcess | None:
    """Start the local LLM server (``ragloop llm serve``) unless one already answers on its port.

    Used by ``ragloop run`` and by the offline evaluation harness.

    Args:
        settings: ``llm_host``, ``llm_port`` and ``data_dir`` (the log goes to ``data_dir/logs``).

    Returns:
        The child process, or None when an existing server is reused.

    Raises:
        UserError: the port is taken by something that is not an LLM server.
        RuntimeError, TimeoutError: the server died or did not answer within 300 s.
    """
    import sys

    models_url = f"http://{settings.llm_host}:{settings.llm_port}/v1/models"
    if check_llm_port(settings):
        log.info("reusing the LLM server already answering at %s", models_url)
        return None
    argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(settings.llm_port)]
    proc = ManagedProcess("llm", argv, settings.data_dir / "logs" / "llm.log").start()
    try:
        proc.wait_ready(lambda: http_ok(models_url), timeout=300)
    except BaseException:
        proc.stop()
        raise
    return proc
