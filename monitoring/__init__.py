"""Monitoring: the chat log, telemetry (traces, metrics, logs), drift.

Public API:
    ChatLog: the durable log of turns and feedback (``monitoring.chatlog``).
    setup_telemetry: settings -> a TurnObserver that traces and measures every turn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from monitoring.chatlog import ChatLog

if TYPE_CHECKING:
    from chatbot._observer import TurnObserver
    from ragloop.settings import Settings

__all__ = ["ChatLog", "setup_telemetry"]


def setup_telemetry(settings: Settings) -> TurnObserver:
    """Build the observer that traces, measures and reports every turn (no-op until tracing lands)."""
    from chatbot._observer import TurnObserver

    return TurnObserver()
