"""The Phoenix adapter: deletes a deleted conversation's traces, as an outbox :class:`Sink`.

Traces reach Phoenix through the OTLP collector, with the question and answer texts as span
attributes when content tracing is on. When a user deletes a conversation the chat log enqueues an
``erase`` item (payload ``conversation_id``, ``turn_ids``, ``trace_ids``) in the transaction that
deletes the rows (``chatlog._purge.enqueue_erasure``): once due at once and once
``RAGLOOP_PHOENIX_ERASE_SETTLE_S`` later, for spans that were still in the app's exporter or the
collector at the first request (a late span makes Phoenix create its trace again).

:class:`PhoenixSink` deletes each trace with Phoenix's REST API, ``DELETE /v1/traces/{trace_id}``
(Phoenix 11+; a trace and all its spans, annotations included). 204 and 404 (not there, or deleted
already) both count as done, so a retry is harmless; a Phoenix that is down makes the send fail and
the outbox retries it with backoff. What this does not reach: Phoenix's own SQLite files keep the
deleted spans' bytes (seen in ``phoenix.db-wal`` with Phoenix 20.26.1) until Phoenix overwrites
that space (it does not set ``secure_delete``), and traces forwarded elsewhere
(RAGLOOP_TRACES_FORWARD) are not deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from chatlog.outbox import OutboxItem
from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: The sink's name on outbox rows.
SINK_NAME = "phoenix"


class PhoenixSink:
    """Deletes the traces of deleted conversations from a Phoenix server (``erase`` items)."""

    name = SINK_NAME
    kinds = frozenset({"erase"})

    def __init__(self, base_url: str, api_key: str | None = None, timeout_s: float = 10.0) -> None:
        """Talk to the Phoenix at ``base_url`` (e.g. ``http://127.0.0.1:6006``).

        Args:
            base_url: Phoenix's HTTP address (UI and REST API).
            api_key: a Phoenix API key when its authentication is on (sent as a bearer token).
            timeout_s: per request.
        """
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout_s)
        self.errors: dict[str, str] = {}  # item key -> why its last send failed

    @classmethod
    def from_settings(cls, settings: Settings, chatlog: Any = None) -> PhoenixSink | None:
        """The sink when a Phoenix URL is known (RAGLOOP_PHOENIX_URL, or set by ``ragloop run``)."""
        if not settings.phoenix_url:
            return None
        if chatlog is not None:  # when the chat log asks again for late spans
            chatlog.erase_settle_s = settings.phoenix_erase_settle_s
        key = settings.phoenix_api_key.get_secret_value() if settings.phoenix_api_key else None
        return cls(settings.phoenix_url, api_key=key)

    def delete_trace(self, trace_id: str) -> bool:
        """Delete one trace; True when it is gone (204) or was not there (404).

        Raises:
            httpx.HTTPError: Phoenix did not answer, or answered another status.
        """
        resp = self.client.delete(f"/v1/traces/{quote(trace_id, safe='')}")
        if resp.status_code in (200, 204, 404):
            return resp.status_code != 404
        resp.raise_for_status()
        raise RuntimeError(f"unexpected status {resp.status_code} from Phoenix")

    def send(self, items: Sequence[OutboxItem]) -> list[bool]:
        """Delete every trace each item names; one bool per item; never raises."""
        return [self._send_one(item) for item in items]

    def _send_one(self, item: OutboxItem) -> bool:
        try:
            deleted = sum(self.delete_trace(str(t)) for t in item.payload.get("trace_ids") or ())
        except Exception as exc:  # noqa: BLE001 - Phoenix down is expected; the outbox retries
            self.errors[item.key] = f"{type(exc).__name__}: {exc}"[:2000]
            return False
        self.errors.pop(item.key, None)
        log.info(
            "phoenix: %s deleted %d trace(s) of %s", item.key, deleted, item.payload.get("conversation_id")
        )
        return True

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Close the HTTP client."""
        self.client.close()


def from_settings(settings: Settings, chatlog: Any = None) -> PhoenixSink | None:
    """The Phoenix sink for the composition root's registry (None when no Phoenix URL is set)."""
    return PhoenixSink.from_settings(settings, chatlog)
