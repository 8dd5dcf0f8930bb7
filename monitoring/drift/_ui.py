"""``evidently ui`` over the drift workspace, as a managed child process (for ``ragloop run`` and the CLI)."""

from __future__ import annotations

from ragloop.process import ManagedProcess, ensure_port_free, http_ok
from ragloop.settings import Settings


def start_evidently_ui(settings: Settings, port: int | None = None, timeout: float = 120.0) -> ManagedProcess:
    """Start ``evidently ui`` serving the drift workspace and wait until it answers.

    The returned process has ``url`` set; stop it with ``.stop()``. ``ragloop run`` starts it next to the
    other local tools (through ``monitoring.start_local_stack``).

    Raises:
        UserError: the port is taken (one line naming the option or variable).
        RuntimeError: the UI exited early.
        TimeoutError: the UI did not answer in ``timeout`` seconds.
    """
    from monitoring.drift._evidently import ui_argv

    host = "127.0.0.1"
    setting = "--port" if port else "RAGLOOP_DRIFT_UI_PORT"
    port = port or settings.drift_ui_port
    ensure_port_free(host, port, port_setting=setting)
    workspace = settings.drift_workspace or settings.data_dir / "evidently"
    workspace.mkdir(parents=True, exist_ok=True)
    proc = ManagedProcess(
        "evidently-ui", ui_argv(workspace, host, port), settings.data_dir / "logs" / "evidently.log"
    )
    proc.start()
    proc.url = f"http://{host}:{port}"  # type: ignore[attr-defined]
    try:
        proc.wait_ready(lambda: http_ok(f"http://{host}:{port}/api/projects"), timeout=timeout)
    except BaseException:
        proc.stop()
        raise
    return proc
