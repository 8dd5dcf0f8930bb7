"""``ragloop run``: everything a fresh machine needs, in order, then the chat app in the foreground.

1. the local model (downloaded and sha256-checked once; skipped when ``OPENAI_BASE_URL`` is set),
2. a Chroma server on the data dir's index (unless ``RAGLOOP_CHROMA_URL`` names one): the app and
   any ``ragloop ingest`` run beside it share it, so new documents are searchable at once,
3. the default corpus (fetched once) and its index, in a background thread
   (:class:`retrieval.BackgroundIndexer`): the first slice (the FAQ and the tutorial) while the next
   steps start, the rest while the app already answers (progress at ``/healthz``),
4. the local LLM server as a child process (reused if one already answers on the port),
5. the local monitoring stack (collector, Phoenix), the Evidently UI and the labeling UI, started
   side by side with the LLM, then a wait for the first slice of the index,
6. the application of :func:`ragloop.app.build_application`, exactly as ``ragloop serve`` runs
   it, under uvicorn until Ctrl-C or SIGTERM; then every child is stopped.

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

from ragloop.process import http_ok, start_llm
from ragloop.settings import Settings

__all__ = [
    "check_app_port",
    "check_ports",
    "prepare_index",
    "run",
    "serve_app",
    "start_indexing",
    "start_llm",
    "start_local_servers",
]

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


def start_indexing(settings: Settings) -> Any:
    """Start indexing the default corpus (then the uploads folder) in a background thread.

    Returns:
        The started :class:`retrieval.BackgroundIndexer`; ``wait_first()`` blocks until the first
        slice (``RAGLOOP_INDEX_FIRST``) is searchable.
    """
    import retrieval
    from retrieval._background import BackgroundIndexer
    from retrieval._sources import uploads_dir

    indexer = BackgroundIndexer(settings, retrieval.fetch_corpus(settings), extra=[uploads_dir(settings)])
    indexer.start()
    return indexer


def start_chroma(settings: Settings) -> tuple[Settings, list[Any]]:
    """Serve the data dir's index with a Chroma server unless ``RAGLOOP_CHROMA_URL`` names one.

    Returns:
        Settings pointing at the server (``chroma_url`` set), and the started child (or none).
    """
    if settings.chroma_url:
        return settings, []
    from retrieval import start_chroma_server

    server = start_chroma_server(settings)
    _echo(
        f"  chroma: {server.url}  (`ragloop ingest` finds it; elsewhere set RAGLOOP_CHROMA_URL={server.url})"
    )
    return settings.model_copy(update={"chroma_url": server.url}), [server]


def _optional(what: str, start: Callable[[], Any]) -> list[Any]:
    """Start an optional local server; its failure is logged and the chat comes up without it."""
    try:
        started = start()
    except Exception as exc:  # noqa: BLE001 - optional: the chat comes up without it
        log.warning("%s did not start (%s); continuing without it", what, exc)
        log.debug("%s failed to start", what, exc_info=True)
        return []
    if started is None:
        return []
    return list(started) if isinstance(started, list | tuple) else [started]


def start_stack(settings: Settings) -> tuple[Settings, list[Any]]:
    """The local collector and Phoenix; settings that point the app only at a collector that runs.

    A tool that is not installed is named in ONE printed line with the command that installs it.
    Without Phoenix the collector runs alone (forwarding to RAGLOOP_TRACES_FORWARD, else dropping
    traces). When the collector did not start, the app must not export to its port (every export
    would fail, log a warning and raise the export-error metric): ``collector`` is switched off,
    so the app exports to OTEL_EXPORTER_OTLP_ENDPOINT if set, else nowhere.
    """
    from monitoring import start_local_stack

    skipped: list[str] = []
    procs = _optional("the local monitoring stack", lambda: start_local_stack(settings, skipped=skipped))
    phoenix = next((p for p in procs if getattr(p, "name", "") == "phoenix"), None)
    if phoenix is not None and not settings.phoenix_url:  # deleted conversations' traces go from it
        settings = settings.model_copy(update={"phoenix_url": phoenix.url})
    collector_up = any(getattr(p, "name", "") == "collector" for p in procs)
    if settings.collector and not collector_up:
        settings = settings.model_copy(update={"collector": False})
        if not skipped:
            skipped.append(f"the local collector (see {settings.data_dir / 'monitoring'})")
        skipped.append("the app exports no telemetry" if not settings.otlp_endpoint else "")
    elif skipped and collector_up and not settings.traces_endpoint:
        skipped.append("the local collector runs alone and drops traces")
    if skipped:
        _echo("  not started: " + "; ".join(s for s in skipped if s))
    return settings, procs


def start_monitoring(settings: Settings) -> tuple[Settings, list[Any]]:
    """The local monitoring stack (:func:`start_stack`) and the Evidently UI over drift snapshots."""
    settings, procs = start_stack(settings)

    def evidently() -> Any:
        from monitoring.drift import start_evidently_ui

        return start_evidently_ui(settings)

    procs += _optional("the Evidently UI", evidently)
    return settings, procs


def start_labeling(settings: Settings) -> tuple[Settings, list[Any]]:
    """The local labeling UI (``labeling.start_labeling_ui``), and settings pointing the sinks at it."""
    try:
        import labeling
    except ImportError:
        return settings, []
    start_labeling_ui = getattr(labeling, "start_labeling_ui", None)
    if start_labeling_ui is None:
        return settings, []
    procs = _optional("the labeling UI", lambda: start_labeling_ui(settings))
    for proc in procs:
        update = getattr(proc, "settings_update", None)
        if callable(update):
            settings = settings.model_copy(update=update())
    return settings, procs


def _settings_update(base: Settings, changed: Settings) -> dict[str, Any]:
    """The fields ``changed`` sets differently from ``base`` (to merge two steps' settings)."""
    fields = type(changed).model_fields
    return {k: getattr(changed, k) for k in fields if getattr(base, k) != getattr(changed, k)}


def start_local_servers(settings: Settings) -> tuple[Settings, list[Any]]:
    """Steps 2-5 of ``ragloop run``: the settings the app should use, and the started children.

    The LLM, the monitoring stack and the labeling UI start side by side (each mostly waits for a
    child process to answer), while the index's first slice is embedded in the background: the
    first answer comes as soon as the slowest of them is ready, not after their sum.

    If a step fails, the children already started are stopped here and the exception propagates.
    """
    from concurrent.futures import ThreadPoolExecutor

    children: list[Any] = []
    try:
        settings, started = start_chroma(settings)
        children += started
        indexer = start_indexing(settings)
        base = settings
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="ragloop-start") as pool:
            llm_f = pool.submit(start_llm, base) if base.uses_local_llm else None
            steps = [pool.submit(start_monitoring, base), pool.submit(start_labeling, base)]
            errors: list[BaseException] = []
            if llm_f is not None:
                try:
                    llm = llm_f.result()
                    if llm is not None:
                        children.append(llm)
                except BaseException as exc:  # noqa: BLE001 - stop the others' children, then raise
                    errors.append(exc)
            for step in steps:
                try:
                    changed, started = step.result()
                except BaseException as exc:  # noqa: BLE001
                    errors.append(exc)
                    continue
                settings = settings.model_copy(update=_settings_update(base, changed))
                children += started
            if errors:
                raise errors[0]
        indexer.wait_first()
    except BaseException:
        stop_all(children)
        raise
    for proc in children:
        url = getattr(proc, "url", None)
        if url and getattr(proc, "name", "") != "chroma":
            _echo(f"  {getattr(proc, 'name', 'service')}: {url}")
    return settings, children


def stop_all(children: list[Any]) -> None:
    """Stop children in reverse start order; one failing to stop does not keep the others running."""
    for child in reversed(children):
        try:
            child.stop()
        except Exception:  # noqa: BLE001 - stop the others even if one fails
            log.warning("could not stop %s", getattr(child, "name", child), exc_info=True)


def _announce_when_ready(settings: Settings, stop: threading.Event) -> None:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    base = f"http://{host}:{settings.port}"
    while not stop.wait(0.5):
        if http_ok(f"{base}/healthz", timeout=5) or http_ok(f"{base}/", timeout=5):
            _echo(f"\n  ragloop chat is ready: {base}/\n  API: {base}/api/chat   health: {base}/healthz\n")
            return


def serve_app(settings: Settings) -> None:
    """Serve :func:`ragloop.app.create_asgi_app` under uvicorn in the foreground, announcing its URL."""
    from ragloop.app import serve

    stop = threading.Event()
    threading.Thread(target=_announce_when_ready, args=(settings, stop), daemon=True).start()
    try:
        serve(settings)
    finally:
        stop.set()


def _raise_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # Before uvicorn installs its own handlers, SIGTERM must still unwind so children get stopped.
    raise KeyboardInterrupt


def check_app_port(settings: Settings) -> None:
    """Raise a one-line UserError at once when the app could not listen on RAGLOOP_HOST:RAGLOOP_PORT."""
    from ragloop.process import ensure_port_free

    ensure_port_free(
        settings.host,
        settings.port,
        port_setting="--port / RAGLOOP_PORT",
        host_setting="--host / RAGLOOP_HOST",
    )


def check_ports(settings: Settings) -> None:
    """The ports ``run`` must have, checked before the first slow step (model, index, children).

    The app's port must be free; the local LLM's port must be free or answer as an LLM server
    (which is reused). The optional tools (monitoring, labeling) check their own ports and are
    skipped with a warning when theirs is taken.

    Raises:
        UserError: one line naming the port and the option or variable that sets it.
    """
    from ragloop.process import check_llm_port

    check_app_port(settings)
    if settings.uses_local_llm:
        check_llm_port(settings)


def run(settings: Settings) -> None:
    """Prepare model and index, start the local servers, serve the app; stop children on exit."""
    from chatbot._model import resolve_model_path

    check_ports(settings)
    previous = signal.signal(signal.SIGTERM, _raise_on_sigterm)
    children: list[Any] = []
    try:
        if settings.uses_local_llm:
            log.info("model: %s", resolve_model_path(settings))
        settings, children = start_local_servers(settings)
        serve_app(settings)
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        stop_all(children)
        signal.signal(signal.SIGTERM, previous)
