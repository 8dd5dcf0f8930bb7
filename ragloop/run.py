"""``ragloop run``: everything a fresh machine needs, in order, then the chat app in the foreground.

1. the local model (downloaded and sha256-checked once; skipped when ``OPENAI_BASE_URL`` is set),
2. the default corpus (fetched once) and its index (incremental: unchanged files are skipped),
3. the local LLM server as a child process (reused if one already answers on the port),
4. the local monitoring stack, if ``monitoring.start_local_stack`` exists,
5. the app under uvicorn, until Ctrl-C or SIGTERM; then every child is stopped.

Child logs go to ``<data_dir>/logs``.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

from ragloop.process import ManagedProcess, http_ok, port_open
from ragloop.settings import Settings

log = logging.getLogger(__name__)


def _echo(line: str) -> None:
    # The URLs are the point of `ragloop run`: they go to stdout, not only to the log.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def prepare_index(settings: Settings) -> None:
    """Fetch the default corpus and index it (a no-op for files already indexed unchanged)."""
    import retrieval

    corpus = retrieval.fetch_corpus(settings)
    report = retrieval.ingest([corpus], settings)
    log.info("index: %s", report.summary())


def start_llm(settings: Settings) -> ManagedProcess | None:
    """Start the local LLM server unless one already answers on ``settings.llm_port``.

    Returns:
        The child process, or None when an existing server is reused.
    """
    models_url = f"http://{settings.llm_host}:{settings.llm_port}/v1/models"
    if http_ok(models_url):
        log.info("reusing the LLM server already answering at %s", models_url)
        return None
    if port_open(settings.llm_host, settings.llm_port):
        raise RuntimeError(
            f"port {settings.llm_port} is taken by something that is not an LLM server: "
            "set RAGLOOP_LLM_PORT to a free port"
        )
    argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(settings.llm_port)]
    proc = ManagedProcess("llm", argv, settings.data_dir / "logs" / "llm.log").start()
    try:
        proc.wait_ready(lambda: http_ok(models_url), timeout=300)
    except BaseException:
        proc.stop()
        raise
    return proc


def start_monitoring(settings: Settings) -> list[Any]:
    """Start the local monitoring stack if the monitoring package offers one; print its URLs."""
    import monitoring

    start_local_stack: Callable[[Settings], list[Any]] | None = getattr(monitoring, "start_local_stack", None)
    if start_local_stack is None:
        return []
    try:
        procs = list(start_local_stack(settings) or [])
    except Exception:  # noqa: BLE001 - monitoring is optional: the chat comes up without it
        log.warning("the local monitoring stack did not start; continuing without it", exc_info=True)
        return []
    procs.extend(_start_drift_ui(settings))
    for proc in procs:
        url = getattr(proc, "url", None)
        if url:
            _echo(f"  {getattr(proc, 'name', 'service')}: {url}")
    return procs


def _start_drift_ui(settings: Settings) -> list[Any]:
    """The Evidently UI over the drift snapshots, beside the other local tools (optional)."""
    try:
        from monitoring.drift import start_evidently_ui

        return [start_evidently_ui(settings)]
    except Exception:  # noqa: BLE001 - optional like the rest of the local stack
        log.warning("the Evidently UI did not start; continuing without it", exc_info=True)
        return []


def _start_online_eval(settings: Settings, observer: Any) -> Any | None:
    """Score every finished turn in the background (local faithfulness), if enabled."""
    if not settings.eval_online:
        return None
    try:
        from eval import OnlineEvaluator, telemetry_callback
        from chatlog import ChatLog

        # Scores reach the turn's trace, the metrics and LangSmith through the app's telemetry.
        callbacks = [telemetry_callback(observer)] if hasattr(observer, "record_score") else []
        evaluator = OnlineEvaluator(settings, ChatLog(settings.chatlog_url), callbacks=callbacks)
        evaluator.start()
        return evaluator
    except Exception:  # noqa: BLE001 - evaluation never keeps the chat from starting
        log.warning("the online evaluator did not start; continuing without it", exc_info=True)
        return None


def _announce_when_ready(settings: Settings, stop: threading.Event) -> None:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base = f"http://{host}:{settings.port}"
    while not stop.wait(0.5):
        if http_ok(f"{base}/healthz", timeout=5) or http_ok(f"{base}/", timeout=5):
            _echo(f"\n  ragloop chat is ready: {base}/\n  API: {base}/api/chat   health: {base}/healthz\n")
            return


def serve_app(settings: Settings) -> None:
    """Run the app under uvicorn in the foreground (uvicorn handles Ctrl-C and SIGTERM)."""
    import uvicorn

    from chatbot._app import create_app

    app = create_app(settings)
    evaluator = _start_online_eval(settings, app.state.service.observer)
    stop = threading.Event()
    threading.Thread(target=_announce_when_ready, args=(settings, stop), daemon=True).start()
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    finally:
        stop.set()
        if evaluator is not None:
            evaluator.stop()


def _raise_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # Before uvicorn installs its own handlers, SIGTERM must still unwind so children get stopped.
    raise KeyboardInterrupt


def run(settings: Settings) -> None:
    """Prepare model and index, start the LLM and monitoring, serve the app; stop children on exit."""
    from chatbot._model import resolve_model_path

    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    children: list[Any] = []
    try:
        if settings.uses_local_llm:
            log.info("model: %s", resolve_model_path(settings))
        prepare_index(settings)
        if settings.uses_local_llm:
            llm = start_llm(settings)
            if llm is not None:
                children.append(llm)
        children.extend(start_monitoring(settings))
        serve_app(settings)
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        for child in reversed(children):
            try:
                child.stop()
            except Exception:  # noqa: BLE001 - stop the others even if one fails
                log.warning("could not stop %s", getattr(child, "name", child), exc_info=True)
        signal.signal(signal.SIGTERM, previous)
