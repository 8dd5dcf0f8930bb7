"""Monitoring: telemetry (traces, metrics, logs, LangSmith runs), the local stack, drift.

Monitoring never imports the chat layer: :class:`Telemetry` implements the chat service's observer
hooks structurally, and the composition root passes in what the chat layer defines
(``setup_telemetry(settings, prompt_version=chatbot.PROMPT_VERSION)``, then
``telemetry.observe_outbox(chatlog.engine)`` for the ``ragloop_outbox_items`` gauge).

Public API:
    ChatLog: the durable log of turns and feedback (re-exported from ``chatlog``).
    setup_telemetry: settings -> the observer (:class:`Telemetry`, or :class:`NoTelemetry` when
        RAGLOOP_TELEMETRY=false).
    Telemetry: the observer; ``instrument_app(app)``, ``record_score(...)``, ``set_gauge(...)``,
        ``observe_outbox(engine)``.
    NoTelemetry: the same hooks doing nothing.
    start_local_stack: start the local collector (rotel) and Phoenix for ``ragloop run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatlog import ChatLog

if TYPE_CHECKING:
    from monitoring._stack import start_local_stack
    from monitoring._telemetry import NoTelemetry, Telemetry, setup_telemetry

__all__ = ["ChatLog", "NoTelemetry", "Telemetry", "setup_telemetry", "start_local_stack"]


def __getattr__(name: str) -> Any:
    # OpenTelemetry and OpenLLMetry load only when telemetry is asked for (chat-log users skip them).
    if name in ("NoTelemetry", "Telemetry", "setup_telemetry"):
        from monitoring import _telemetry

        return getattr(_telemetry, name)
    if name == "start_local_stack":
        from monitoring._stack import start_local_stack

        return start_local_stack
    raise AttributeError(name)
