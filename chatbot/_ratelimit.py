"""Per-user and per-IP rate limits on chat turns (the API's ``POST /api/chat`` and the UI's turns).

Separate from the admission queue (``chatbot/_admission.py``), which protects the LLM when it is
saturated: a rate limit protects the service from one user or one address asking too often,
whatever the load. Each turn takes one hit from the user's budget (``RAGLOOP_RATE_LIMIT_USER_PER_MIN``)
and one from the client address's (``RAGLOOP_RATE_LIMIT_IP_PER_MIN``); over either, the turn is
refused with ``429 rate_limited`` and ``Retry-After`` (the API's JSON error shape), and the UI shows
the same message. Nothing is written to the chat log for a refused turn (no LLM call was made).

The counting is the ``limits`` library's moving window. Its storage is a URI
(``RAGLOOP_RATE_LIMIT_STORAGE``): ``memory://`` (the default) counts per app process, so with N
app processes behind a load balancer a client gets up to N times the budget; point every process
at one shared store (``redis://host:6379``, ``memcached://...``; the client library must be
installed) to count across processes.

Anonymous API clients without a cookie get a fresh anonymous id per request (``chatbot/_auth.py``),
so for them the per-IP limit is the one that applies. The client address is the TCP peer: behind a
reverse proxy every request comes from the proxy, so set the per-IP limit on the proxy (nginx
``limit_req``) or leave it off there.
"""

from __future__ import annotations

import asyncio
import math
import time
import weakref
from dataclasses import dataclass
from typing import Any

from chatbot._auth import current_user
from chatbot._service import ChatError

__all__ = ["RateLimiter", "check_turn", "client_ip", "limiter_for", "turn_refusal"]

#: The stable error code of a refused turn (HTTP 429).
RATE_LIMITED = "rate_limited"


@dataclass(frozen=True)
class Refusal:
    """Why a turn was refused: which budget ran out and when the client may try again."""

    scope: str  # "user" or "ip"
    per_minute: int
    retry_after_s: int


class RateLimiter:
    """Moving-window budgets per user id and per client address, counted by ``limits``.

    Args:
        user_per_min: turns per minute per user id; 0 turns the limit off.
        ip_per_min: turns per minute per client address; 0 turns the limit off.
        storage_uri: a ``limits`` storage URI (``memory://``, ``redis://...``).
        namespace: prefix of every counter key (apps sharing one store keep their own counts).

    Raises:
        ValueError: a negative budget or a storage URI ``limits`` does not know.
    """

    def __init__(
        self, user_per_min: int, ip_per_min: int, storage_uri: str = "memory://", namespace: str = "ragloop"
    ) -> None:
        """Build the limiter; the storage is opened lazily by ``limits`` on first use."""
        from limits import RateLimitItemPerMinute
        from limits.storage import storage_from_string
        from limits.strategies import MovingWindowRateLimiter

        if user_per_min < 0 or ip_per_min < 0:
            raise ValueError("rate limits must be 0 (off) or a positive number of turns per minute")
        self.user_item = RateLimitItemPerMinute(user_per_min, namespace=namespace) if user_per_min else None
        self.ip_item = RateLimitItemPerMinute(ip_per_min, namespace=namespace) if ip_per_min else None
        self.storage_uri = storage_uri
        self.in_memory = storage_uri.startswith("memory://")
        self.limiter = MovingWindowRateLimiter(storage_from_string(storage_uri))

    @property
    def enabled(self) -> bool:
        """True when at least one budget is set."""
        return self.user_item is not None or self.ip_item is not None

    def hit(self, user_id: str, ip: str | None) -> Refusal | None:
        """Take one turn from both budgets; the refusal when either is spent (then nothing is taken).

        Args:
            user_id: the user's id (``User.id``).
            ip: the client address, or None when unknown (then only the user budget applies).
        """
        checks = [("user", self.user_item, user_id), ("ip", self.ip_item, ip)]
        active = [(scope, item, key) for scope, item, key in checks if item is not None and key]
        for scope, item, key in active:
            if not self.limiter.test(item, scope, key):
                return self._refusal(scope, item, key)
        for scope, item, key in active:
            if not self.limiter.hit(item, scope, key):  # a race with another request: refuse too
                return self._refusal(scope, item, key)
        return None

    def _refusal(self, scope: str, item: Any, key: str) -> Refusal:
        reset_at, _remaining = self.limiter.get_window_stats(item, scope, key)
        wait = max(1, math.ceil(reset_at - time.time()))
        return Refusal(scope, int(item.amount), min(wait, 60))


_LIMITERS: weakref.WeakKeyDictionary[Any, RateLimiter] = weakref.WeakKeyDictionary()


def limiter_for(service: Any) -> RateLimiter:
    """The rate limiter of a chat service, built once from its settings (one per app)."""
    limiter = _LIMITERS.get(service)
    if limiter is None:
        s = service.settings
        limiter = RateLimiter(
            int(getattr(s, "rate_limit_user_per_min", 0) or 0),
            int(getattr(s, "rate_limit_ip_per_min", 0) or 0),
            str(getattr(s, "rate_limit_storage", "memory://") or "memory://"),
        )
        _LIMITERS[service] = limiter
    return limiter


def client_ip(request: Any) -> str | None:
    """The client's address of a FastAPI ``Request`` or a ``gr.Request``; None when unknown."""
    for candidate in (request, getattr(request, "request", None)):
        client = getattr(candidate, "client", None)
        host = getattr(client, "host", None)
        if isinstance(host, str) and host:
            return host
    return None


def refusal_message(refusal: Refusal) -> str:
    """What the client and the UI user read."""
    who = "from your account" if refusal.scope == "user" else "from your network address"
    return (
        f"Too many questions {who}: at most {refusal.per_minute} per minute. "
        f"Please wait {refusal.retry_after_s} s and ask again."
    )


async def check_turn(service: Any, request: Any) -> None:
    """Count one turn of ``request``'s user and address; raise when a budget is spent.

    Raises:
        ChatError: 429 ``rate_limited`` with ``retry_after_s`` (``Retry-After``).
    """
    limiter = limiter_for(service)
    if not limiter.enabled:
        return
    user_id, ip = current_user(request).id, client_ip(request)
    if limiter.in_memory:
        refusal = limiter.hit(user_id, ip)
    else:  # a network store: keep the event loop free
        refusal = await asyncio.to_thread(limiter.hit, user_id, ip)
    if refusal is not None:
        raise ChatError(429, RATE_LIMITED, refusal_message(refusal), retry_after_s=refusal.retry_after_s)


async def turn_refusal(service: Any, request: Any) -> ChatError | None:
    """:func:`check_turn` for a UI handler: the refusal (shown in the conversation), or None to go on."""
    try:
        await check_turn(service, request)
    except ChatError as err:
        return err
    return None
