"""Monitoring: the chat log, telemetry (traces, metrics, logs, LangSmith), the local stack, drift.

Public API:
    ChatLog: the durable log of turns and feedback (``chatlog``).
    setup_telemetry: settings -> a TurnObserver (a :class:`Telemetry` unless RAGLOOP_TELEMETRY=false).
    Telemetry: the observer; ``instrument_app(app)``, ``record_score(...)``, ``set_gauge(...)``.
    start_local_stack: start the local collector (rotel) and Phoenix for ``ragloop run``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from chatlog import ChatLog

if TYPE_CHECKING:
    from monitoring._stack import start_local_stack
    from monitoring._telemetry import Telemetry, setup_telemetry

__all__ = ["ChatLog", "Telemetry", "setup_telemetry", "start_local_stack"]


def __getattr__(name: str) -> Any:
    # OpenTelemetry and OpenLLMetry load only when telemetry is asked for (chat-log users skip them).
    if name in ("Telemetry", "setup_telemetry"):
        from monitoring import _telemetry

        return getattr(_telemetry, name)
    if name == "start_local_stack":
        from monitoring._stack import start_local_stack

        return start_local_stack
    raise AttributeError(name)
