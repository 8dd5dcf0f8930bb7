"""The composition root: the one place where the application is assembled from its packages.

``ragloop serve``, ``ragloop run`` and the compose ``app`` service all build the same
:class:`Application` with :func:`build_application` (``run`` only starts local servers first, see
:mod:`ragloop.run`):

- the chat log (:class:`chatlog.ChatLog`; turns left ``in_progress`` by a crash are closed),
- telemetry (:func:`monitoring.setup_telemetry`, given the chat layer's prompt version),
- the chat service (:func:`chatbot.build_service`) observed by that telemetry,
- the online evaluator (:class:`eval.OnlineEvaluator`; scores reach traces and metrics through
  :func:`eval.telemetry_callback`),
- every configured outbox sink (the :data:`SINKS` registry) and the outbox worker delivering to them.

Nothing below this layer imports it (``tests/test_layers.py``): what the chat layer defines and
the others need (the observer, the prompt version, a chat-service factory) is passed in from here.

Example::

    app = create_asgi_app(Settings())      # FastAPI app; its lifespan starts and stops everything
    uvicorn.run(app, host=..., port=...)
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from ragloop.settings import Settings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from chatbot import ChatService
    from chatlog import ChatLog

log = logging.getLogger(__name__)

#: The sink registry: ``"module:function"`` with ``function(settings, chatlog) -> Sink | None``.
#: Adding a vendor is one adapter module plus one line here. A module that is missing (or whose
#: optional extra is not installed) is skipped with one log line; ``None`` means "not configured".
SINKS: tuple[str, ...] = (
    "monitoring._langsmith:from_settings",
    "monitoring._arize:from_settings",
    "labeling.argilla:from_settings",
    "labeling.labelstudio:from_settings",
    "labeling._sink:from_settings",
    "monitoring._phoenix:from_settings",
)


def build_chat_service(settings: Settings, **kwargs: Any) -> ChatService:
    """A chat service from settings (the factory handed to layers that may not import ``chatbot``)."""
    import chatbot

    return chatbot.build_service(settings, **kwargs)


def prompt_version() -> str:
    """The chat layer's prompt version (passed to monitoring and the offline harness)."""
    import chatbot

    return str(chatbot.PROMPT_VERSION)


def load_sinks(settings: Settings, chatlog: Any, registry: Sequence[str] = SINKS) -> list[Any]:
    """Build every configured sink of ``registry``; unconfigured ones return None and are left out.

    Args:
        settings: the application settings.
        chatlog: the chat log (sinks that read rows, e.g. ``turn`` items, use it).
        registry: ``"module:function"`` entries.

    Returns:
        The active sinks, unique by name (a later duplicate is dropped with a warning).
    """
    sinks: list[Any] = []
    for entry in registry:
        module_name, _, func_name = entry.partition(":")
        try:
            factory = getattr(importlib.import_module(module_name), func_name or "from_settings")
        except (ImportError, AttributeError) as exc:
            log.info("sink %s not available (%s); skipped", entry, exc)
            continue
        try:
            sink = factory(settings, chatlog)
        except ImportError as exc:
            log.warning("sink %s needs an extra that is not installed: %s", entry, exc)
            continue
        except Exception:  # noqa: BLE001 - a vendor's misconfiguration never keeps the chat down
            log.warning("sink %s could not be configured; skipped", entry, exc_info=True)
            continue
        if sink is None:
            continue
        if any(s.name == sink.name for s in sinks):
            log.warning("sink %s from %s duplicates a sink name; skipped", sink.name, entry)
            continue
        sinks.append(sink)
    return sinks


def routes_of(sinks: Sequence[Any]) -> dict[str, list[str]]:
    """``{kind: [sink names taking it]}`` for :meth:`chatlog.ChatLog.set_routes`."""
    routes: dict[str, list[str]] = {}
    for sink in sinks:
        for kind in sorted(getattr(sink, "kinds", ())):
            routes.setdefault(kind, []).append(sink.name)
    return routes


def _quietly(what: str, func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return func(*args, **kwargs)
    except Exception:  # noqa: BLE001 - stopping one part must not keep the others running
        log.warning("%s failed", what, exc_info=True)
        return None


@dataclass
class Application:
    """Everything the app runs: built by :func:`build_application`, started and stopped together."""

    settings: Settings
    chatlog: ChatLog
    observer: Any
    service: ChatService
    evaluator: Any | None = None
    sinks: list[Any] = field(default_factory=list)
    workers: list[Any] = field(default_factory=list)
    """Outbox workers: one shared by the quick sinks, one of its own for each slow sink."""
    sweeper: Any | None = None
    """Closes the turns a dead peer process left in progress (:class:`chatlog.TurnSweeper`)."""
    started: bool = False

    def start(self) -> Application:
        """Start the background parts (online evaluator, outbox worker); returns self."""
        if self.started:
            return self
        if self.evaluator is not None:
            _quietly("starting the online evaluator", self.evaluator.start)
        if self.sweeper is not None:
            _quietly("starting the turn sweeper", self.sweeper.start)
        on_enqueue = getattr(self.chatlog, "on_enqueue", None)
        for worker in self.workers:
            _quietly("starting an outbox worker", worker.start)
            if callable(on_enqueue):
                on_enqueue(worker.wake)
        self.started = True
        return self

    async def aclose(self, timeout: float = 10.0) -> None:
        """Stop from the event loop that runs the turns: drain them (bounded), then :meth:`stop`.

        Args:
            timeout: seconds allowed for the turns in flight, then for each part to stop.
        """
        drain = getattr(self.service, "drain", None)
        if callable(drain):
            try:
                result = drain(timeout)
                if inspect.isawaitable(result):
                    await result
            except Exception:  # noqa: BLE001 - shutdown goes on
                log.warning("draining turns in flight failed", exc_info=True)
        await asyncio.to_thread(self.stop, timeout, drain=False)

    def stop(self, timeout: float = 10.0, *, drain: bool = True) -> None:
        """Stop in order: turns in flight (bounded), evaluator, outbox worker and sinks, telemetry.

        Args:
            timeout: seconds allowed for each part to finish what it is doing.
            drain: drain the chat service first when its ``drain`` is synchronous (an async one
                needs the turns' event loop: :meth:`aclose` awaits it).
        """
        service_drain = getattr(self.service, "drain", None)
        if drain and callable(service_drain) and not inspect.iscoroutinefunction(service_drain):
            _quietly("draining turns in flight", service_drain, timeout)
        if self.evaluator is not None:
            _quietly("stopping the online evaluator", self.evaluator.stop)
        if self.sweeper is not None:
            _quietly("stopping the turn sweeper", self.sweeper.stop, timeout)
        for worker in self.workers:
            _quietly("stopping an outbox worker", worker.stop, timeout)
        shutdown = getattr(self.observer, "shutdown", None)
        if callable(shutdown):
            _quietly("stopping telemetry", shutdown)
        _quietly("closing the chat log", self.chatlog.close)
        self.started = False


def _build_evaluator(settings: Settings, chatlog: ChatLog, observer: Any) -> Any | None:
    if not settings.eval_online:
        return None
    try:
        import eval as evaluation

        callbacks = [evaluation.telemetry_callback(observer)] if hasattr(observer, "record_score") else []
        return evaluation.OnlineEvaluator(settings, chatlog, callbacks=callbacks)
    except Exception:  # noqa: BLE001 - evaluation never keeps the chat from starting
        log.warning("the online evaluator is not available; turns will not be scored", exc_info=True)
        return None


def _build_workers(settings: Settings, chatlog: ChatLog, sinks: list[Any]) -> list[Any]:
    """One outbox worker for the quick sinks, and one of its own for each sink marked slow.

    A sink whose ``send`` can take many seconds per item (``dedicated_worker = True``: the loop
    sink writes a candidate answer and asks the LLM judge) gets its own thread, claiming one item
    at a time under a lease of ``lease_s`` (the sink's own, when it states one), so it never holds
    back the LangSmith, Arize or labeling deliveries nor outlives its lease mid-batch.
    """
    if not sinks:
        return []
    try:
        from chatlog.outbox import OutboxWorker
    except ImportError:
        log.warning("chatlog.outbox is not available; sinks %s stay idle", [s.name for s in sinks])
        return []
    quick = [s for s in sinks if not getattr(s, "dedicated_worker", False)]
    slow = [s for s in sinks if getattr(s, "dedicated_worker", False)]
    workers = [OutboxWorker.from_settings(settings, chatlog.engine, quick)] if quick else []
    for sink in slow:
        worker = OutboxWorker.from_settings(settings, chatlog.engine, [sink])
        worker.batch_size = 1
        worker.lease = max(worker.lease, timedelta(seconds=float(getattr(sink, "lease_s", 0.0))))
        workers.append(worker)
    return workers


def build_application(
    settings: Settings,
    *,
    chatlog: ChatLog | None = None,
    observer: Any | None = None,
    service: ChatService | None = None,
    sinks: Sequence[str] = SINKS,
) -> Application:
    """Assemble the application from settings (nothing is started: call :meth:`Application.start`).

    Args:
        settings: the one settings object.
        chatlog: a chat log to use; opened (and upgraded) from ``settings.chatlog_url`` when omitted.
        observer: telemetry; :func:`monitoring.setup_telemetry` when omitted.
        service: a ready chat service (tests); built on ``chatlog`` and ``observer`` when omitted.
        sinks: the sink registry (default :data:`SINKS`).

    Returns:
        The assembled :class:`Application`.

    Raises:
        chatlog.SchemaError: the chat log is behind and ``RAGLOOP_DB_AUTO_UPGRADE=false``.
    """
    from chatlog import ChatLog

    if chatlog is None:
        chatlog = service.chatlog if service is not None else ChatLog(settings.chatlog_url)
    closed = _quietly(
        "closing interrupted turns", chatlog.close_interrupted_turns, interrupted_after_s(settings)
    )
    if closed:
        log.info("closed %d turn(s) left in progress by an earlier process", closed)
    if observer is None:
        observer = service.observer if service is not None else _telemetry(settings)
    if service is None:
        service = build_chat_service(settings, observer=observer, chatlog=chatlog)
    active = load_sinks(settings, chatlog, sinks)
    chatlog.set_routes(routes_of(active))
    observe_outbox = getattr(observer, "observe_outbox", None)
    if callable(observe_outbox):
        _quietly("the outbox gauge", observe_outbox, chatlog.engine)
    if active:
        log.info("outbox sinks: %s", ", ".join(s.name for s in active))
    return Application(
        settings=settings,
        chatlog=chatlog,
        observer=observer,
        service=service,
        evaluator=_build_evaluator(settings, chatlog, observer),
        sinks=active,
        workers=_build_workers(settings, chatlog, active),
        sweeper=_build_sweeper(settings, chatlog),
    )


def interrupted_after_s(settings: Settings) -> float:
    """Age (s) past which a turn still ``in_progress`` at start-up belongs to no live process.

    A SQLite chat log has one app process, so every such turn is a crash leftover (0). A shared
    database (PostgreSQL) may have running peers: only turns older than :func:`live_turn_max_s`
    are closed.
    """
    if settings.chatlog_url.startswith("sqlite"):
        return 0.0
    return live_turn_max_s(settings)


def live_turn_max_s(settings: Settings) -> float:
    """The longest (s) a live turn can take; an ``in_progress`` turn older than this is a dead one's.

    The queue wait, condense and answer each bounded by the LLM timeout, plus a minute.
    """
    return settings.queue_max_wait_s + 2 * settings.llm_timeout_s + 60.0


def _build_sweeper(settings: Settings, chatlog: ChatLog) -> Any | None:
    if settings.turn_sweep_interval_s <= 0:
        return None
    from chatlog import TurnSweeper

    return TurnSweeper(chatlog, live_turn_max_s(settings), settings.turn_sweep_interval_s)


def _telemetry(settings: Settings) -> Any:
    import monitoring

    return monitoring.setup_telemetry(settings, prompt_version=prompt_version())


def create_asgi_app(settings: Settings, application: Application | None = None) -> FastAPI:
    """The FastAPI app of ``application`` (built from ``settings`` when omitted).

    The app's lifespan starts the application's background parts and stops everything on shutdown
    (turns in flight first, bounded by ``RAGLOOP_SHUTDOWN_TIMEOUT`` when that setting exists).
    """
    from chatbot._app import create_app

    application = application or build_application(settings)
    timeout = float(getattr(settings, "shutdown_timeout_s", 10.0))

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        application.start()
        try:
            yield
        finally:
            await application.aclose(timeout)

    app = create_app(
        settings, service=application.service, observer=application.observer, extra_lifespan=lifespan
    )
    app.state.application = application
    return app


def serve(settings: Settings, on_ready: Callable[[], None] | None = None) -> None:
    """Build the app and serve it under uvicorn in the foreground until Ctrl-C or SIGTERM."""
    import uvicorn

    app = create_asgi_app(settings)
    if on_ready is not None:
        app.state.on_ready = on_ready
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
