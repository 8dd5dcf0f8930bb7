"""Local labeling servers as managed child processes: Argilla (the default) and Label Studio.

``ragloop run`` calls :func:`start_labeling_ui`; the test fixtures and the benchmark start the same
servers through :class:`LocalArgilla` and :class:`LocalLabelStudio`, so they run exactly as users
run them.

Argilla 2.8 needs Elasticsearch (records, search) and Redis (background jobs). Neither runs here
without a container engine, so ``noida-db`` (PyPI), a single binary speaking both wire protocols,
stands in for them; its data lives beside Argilla's SQLite database, so records survive restarts.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
from pathlib import Path
from typing import Any, Self

from ragloop.process import ManagedProcess, ensure_port_free, free_port, http_ok
from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: The owner the local Argilla creates (log in to the UI with these).
LOCAL_ARGILLA_USER = "ragloop"
LOCAL_ARGILLA_PASSWORD = "ragloop-local"  # noqa: S105 - a local, loopback-only server
#: The owner's API key when ARGILLA_API_KEY is unset.
LOCAL_ARGILLA_API_KEY = "ragloop.local.apikey"
#: Label Studio's admin (its user name must be an e-mail address) and API token when unset.
LOCAL_LABEL_STUDIO_USER = "ragloop@localhost.local"
LOCAL_LABEL_STUDIO_PASSWORD = "ragloop-local"  # noqa: S105 - a local, loopback-only server
LOCAL_LABEL_STUDIO_TOKEN = "ragloop-local-token"  # noqa: S105


#: The repository root: the labeling tools' venvs live in its .venv-tools (see ``make argilla``).
ROOT = Path(__file__).resolve().parent.parent


def tool_venv(configured: Path | None, name: str) -> Path:
    """A labeling tool's venv: the configured path, else ``<repository>/.venv-tools/<name>``.

    Independent of the current directory, so ``ragloop labeling ui`` works from anywhere.
    """
    return Path(configured) if configured is not None else ROOT / ".venv-tools" / name


def _missing(venv: Path, target: str) -> RuntimeError:
    return RuntimeError(f"{venv} is missing: run `make {target}` (it builds the server's own venv)")


class _LocalServer:
    """What both local labeling servers share: where they live, their owner, kill/stop/settings.

    Subclasses set ``name``, the two settings their sink reads (``url_setting``, ``key_setting``),
    and implement ``start`` and ``start_server``.
    """

    name = ""
    url_setting = ""
    key_setting = ""

    def __init__(
        self,
        venv: Path,
        home: Path,
        *,
        port: int,
        api_key: str,
        username: str,
        password: str,
        log_dir: Path | None = None,
    ) -> None:
        """Describe the server; :meth:`start` launches it."""
        self.venv = venv.resolve()
        self.home = home.resolve()
        self.port = port
        self.api_key = api_key
        self.username = username
        self.password = password
        self.log_dir = log_dir or self.home / "logs"
        self.url = f"http://127.0.0.1:{port}"
        self.server: ManagedProcess | None = None

    def _processes(self) -> tuple[ManagedProcess | None, ...]:
        """Every process of the server, in stopping order."""
        return (self.server,)

    def _check_port(self, setting: str) -> None:
        """Raise UserError (one line naming ``setting``) when the port cannot be listened on."""
        ensure_port_free("127.0.0.1", self.port, port_setting=setting)

    def kill_server(self) -> None:
        """SIGKILL the API server's process group (tests: a backend dying mid-push)."""
        if self.server is not None and self.server.proc is not None and self.server.alive:
            os.killpg(self.server.proc.pid, signal.SIGKILL)
            self.server.proc.wait(timeout=30)

    @property
    def alive(self) -> bool:
        """True while the API server runs."""
        return self.server is not None and self.server.alive

    def settings_update(self) -> dict[str, Any]:
        """The settings that point the app's sink for this backend at this server."""
        from pydantic import SecretStr

        return {self.url_setting: self.url, self.key_setting: SecretStr(self.api_key)}

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every process of the server (its data stays in ``home``)."""
        for proc in self._processes():
            if proc is not None:
                proc.stop(timeout)

    def start(self, timeout: float = 240.0) -> _LocalServer:  # pragma: no cover - overridden
        """Start the server and wait until it answers."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalArgilla(_LocalServer):
    """argilla-server + its worker + the noida-db emulator, on 127.0.0.1, with a known owner API key.

    Attributes:
        name: "argilla".
        url: the UI and API base URL.
        api_key: the owner's API key.
    """

    name = "argilla"
    url_setting = "argilla_api_url"
    key_setting = "argilla_api_key"

    def __init__(
        self,
        venv: Path,
        home: Path,
        *,
        port: int,
        api_key: str = LOCAL_ARGILLA_API_KEY,
        username: str = LOCAL_ARGILLA_USER,
        password: str = LOCAL_ARGILLA_PASSWORD,
        log_dir: Path | None = None,
    ) -> None:
        """Describe the server; :meth:`start` launches it."""
        super().__init__(
            venv, home, port=port, api_key=api_key, username=username, password=password, log_dir=log_dir
        )
        self.es_port = free_port()
        self.redis_port = free_port()
        self.emulator: ManagedProcess | None = None
        self.worker: ManagedProcess | None = None

    def _processes(self) -> tuple[ManagedProcess | None, ...]:
        return (self.worker, self.server, self.emulator)

    @property
    def python(self) -> Path:
        """The server venv's interpreter."""
        return self.venv / "bin" / "python"

    def _env(self) -> dict[str, str]:
        return {
            "ARGILLA_HOME_PATH": str(self.home),
            "ARGILLA_DATABASE_URL": f"sqlite+aiosqlite:///{self.home / 'argilla.db'}?check_same_thread=False",
            "ARGILLA_ELASTICSEARCH": f"http://127.0.0.1:{self.es_port}",
            "ARGILLA_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "ARGILLA_ENABLE_TELEMETRY": "0",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }

    def _emulator_binary(self) -> Path:
        found = sorted(self.venv.glob("lib/python3*/site-packages/noida_db/noida-db"))
        if not found:
            raise _missing(self.venv, "argilla")
        return found[-1]

    def _manage(self, *args: str, timeout: float = 300) -> None:
        """Run ``python -m argilla_server ARGS`` to completion (migrations, users)."""
        argv = [str(self.python), "-m", "argilla_server", *args]
        env = {**os.environ, **self._env()}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr)[-2000:]
            if "already exists" in output or "already taken" in output:
                return
            raise RuntimeError(f"argilla_server {' '.join(args[:3])} failed:\n{output}")

    def start(self, timeout: float = 180.0) -> LocalArgilla:
        """Start the emulator, migrate, create the owner once, then the server and the worker.

        Raises:
            RuntimeError: the venv is missing, the port is taken, or a step failed (with its log).
            TimeoutError: the server did not answer in ``timeout`` seconds.
        """
        self._check_port("RAGLOOP_ARGILLA_PORT")
        if not self.python.exists():
            raise _missing(self.venv, "argilla")
        self.home.mkdir(parents=True, exist_ok=True)
        # The real binary, not the `noida-db` wrapper: killing the wrapper leaves the binary orphaned.
        argv = [
            str(self._emulator_binary()), "start", "--host", "127.0.0.1", "--only", "elasticsearch,redis",
            "--data-dir", str(self.home / "noida"),
            "--elasticsearch-port", str(self.es_port), "--redis-port", str(self.redis_port),
        ]  # fmt: skip
        self.emulator = ManagedProcess("noida-db", argv, self.log_dir / "noida-db.log").start()
        try:
            self.emulator.wait_ready(lambda: http_ok(f"http://127.0.0.1:{self.es_port}"), timeout=60)
            self._manage("database", "migrate")
            stamp = self.home / f".owner-{self.username}"
            if not stamp.exists():
                self._manage(
                    "database", "users", "create", "--first-name", "ragloop", "--username", self.username,
                    "--password", self.password, "--role", "owner", "--api-key", self.api_key,
                )  # fmt: skip
                stamp.touch()
            self.start_server(timeout)
            self.worker = ManagedProcess(
                "argilla-worker",
                [str(self.python), "-m", "argilla_server", "worker"],
                self.log_dir / "argilla-worker.log",
                env=self._env(),
            ).start()
        except BaseException:
            self.stop()
            raise
        return self

    def start_server(self, timeout: float = 120.0) -> None:
        """Start (or restart) the API server and wait until the owner's key is accepted."""
        argv = [
            str(self.python),
            "-m",
            "argilla_server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.server = ManagedProcess(
            "argilla-server", argv, self.log_dir / "argilla-server.log", env=self._env()
        )
        self.server.start()
        self.server.wait_ready(self.ready, timeout=timeout)

    def ready(self) -> bool:
        """True when the API answers the owner's key."""
        import urllib.request

        request = urllib.request.Request(f"{self.url}/api/v1/me", headers={"X-Argilla-Api-Key": self.api_key})
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:  # noqa: S310 - loopback only
                return bool(resp.status == 200)
        except OSError:
            return False


class LocalLabelStudio(_LocalServer):
    """A Label Studio server (SQLite) on 127.0.0.1 with a known admin and legacy API token.

    Attributes:
        name: "labelstudio".
        url: the UI and API base URL.
        api_key: the admin's API token.
    """

    name = "labelstudio"
    url_setting = "label_studio_url"
    key_setting = "label_studio_api_key"

    def __init__(
        self,
        venv: Path,
        data_dir: Path,
        *,
        port: int,
        api_key: str = LOCAL_LABEL_STUDIO_TOKEN,
        username: str = LOCAL_LABEL_STUDIO_USER,
        password: str = LOCAL_LABEL_STUDIO_PASSWORD,
        log_dir: Path | None = None,
    ) -> None:
        """Describe the server; :meth:`start` launches it."""
        super().__init__(
            venv, data_dir, port=port, api_key=api_key, username=username, password=password, log_dir=log_dir
        )
        self.data_dir = self.home

    def start(self, timeout: float = 240.0) -> LocalLabelStudio:
        """Start the server and wait for ``/health`` (about 40 s on 2 cores; the first start migrates).

        Raises:
            RuntimeError: the venv is missing, the port is taken, or the server exited.
            TimeoutError: no answer in ``timeout`` seconds.
        """
        self._check_port("RAGLOOP_LABEL_STUDIO_PORT")
        exe = self.venv / "bin" / "label-studio"
        if not exe.exists():
            raise _missing(self.venv, "label-studio")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Never `label-studio --version`: it starts a server on 0.0.0.0:8080.
        argv = [
            str(exe), "start", "--internal-host", "127.0.0.1", "-p", str(self.port), "--no-browser",
            "--data-dir", str(self.data_dir), "--username", self.username, "--password", self.password,
            "--user-token", self.api_key, "--enable-legacy-api-token",
        ]  # fmt: skip
        env = {"LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir), "COLLECT_ANALYTICS": "false"}
        self.server = ManagedProcess("label-studio", argv, self.log_dir / "label-studio.log", env=env)
        self.server.start()
        try:
            self.server.wait_ready(lambda: http_ok(f"{self.url}/health"), timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_server(self, timeout: float = 240.0) -> None:
        """Start the server again after :meth:`kill_server` (same data dir, same token)."""
        self.start(timeout)


def start_labeling_ui(settings: Settings) -> LocalArgilla | LocalLabelStudio | None:
    """Start the local labeling UI chosen by ``RAGLOOP_LABELING_UI`` and print its URL.

    Nothing starts (None) when the choice is "none" or when that backend's URL is already set
    (a remote server). Otherwise the returned server has ``name``, ``url``, ``stop()`` and
    ``settings_update()``: the caller applies the latter (``settings.model_copy(update=...)``) so
    the app's outbox sink delivers pairs to the server just started.

    Raises:
        ValueError: an unknown RAGLOOP_LABELING_UI.
        RuntimeError: the server's venv is missing (the message names the make target) or it failed.
    """
    choice = settings.labeling_ui.strip().lower()
    root = settings.data_dir / "labeling"
    server: LocalArgilla | LocalLabelStudio
    if choice == "none":
        return None
    if choice == "argilla":
        if settings.argilla_api_url:
            return None
        key = (
            settings.argilla_api_key.get_secret_value() if settings.argilla_api_key else LOCAL_ARGILLA_API_KEY
        )
        server = LocalArgilla(
            tool_venv(settings.argilla_venv, "argilla"),
            root / "argilla",
            port=settings.argilla_port,
            api_key=key,
        )
    elif choice in ("labelstudio", "label-studio", "label_studio"):
        if settings.label_studio_url:
            return None
        key = (
            settings.label_studio_api_key.get_secret_value()
            if settings.label_studio_api_key
            else LOCAL_LABEL_STUDIO_TOKEN
        )
        server = LocalLabelStudio(
            tool_venv(settings.label_studio_venv, "label-studio"),
            root / "label-studio",
            port=settings.label_studio_port,
            api_key=key,
        )
    else:
        raise ValueError(f"RAGLOOP_LABELING_UI must be 'argilla', 'labelstudio' or 'none', not {choice!r}")
    server.start()
    print(login_line(server), flush=True)
    return server


def login_line(server: LocalArgilla | LocalLabelStudio) -> str:
    """The line ``ragloop run`` and ``ragloop labeling ui`` print: URL, user, password and API key.

    The API key is the one ``ragloop labeling push/pull`` and the SDKs need (ARGILLA_API_KEY or
    LABEL_STUDIO_API_KEY); it is a local, loopback-only server's key, so printing it is the point.
    """
    key = "API key" if server.name == "argilla" else "API token"
    return (
        f"labeling UI ({server.name}): {server.url}  "
        f"(user {server.username}, password {server.password}, {key} {server.api_key})"
    )
