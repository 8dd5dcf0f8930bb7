"""Per-user and per-IP rate limits on chat turns (chatbot/_ratelimit.py, issue 12 "Security and privacy").

The limiter's budgets on small inputs, then the real app over HTTP in front of a real
OpenAI-compatible server (InstantLLM): a user over their budget gets 429 ``rate_limited`` with
``Retry-After`` and the JSON error shape, another user is not affected until the address's budget
runs out, and a refused turn writes nothing to the chat log.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from chatbot._ratelimit import RateLimiter, turn_refusal
from chatlog import ChatLog
from monitoring._instant_llm import InstantLLM


def test_each_budget_counts_its_own_key_and_says_when_to_come_back() -> None:
    limiter = RateLimiter(user_per_min=2, ip_per_min=3)
    assert limiter.hit("alice", "10.0.0.1") is None and limiter.hit("alice", "10.0.0.1") is None
    refused = limiter.hit("alice", "10.0.0.1")
    assert refused is not None and refused.scope == "user" and refused.per_minute == 2
    assert 1 <= refused.retry_after_s <= 60
    assert limiter.hit("bob", "10.0.0.2") is None  # another user at another address
    assert limiter.hit("bob", "10.0.0.1") is None  # the address's third turn
    refused = limiter.hit("carol", "10.0.0.1")
    assert refused is not None and refused.scope == "ip"
    assert limiter.hit("carol", "10.0.0.3") is None  # a refusal takes nothing from carol's budget
    off = RateLimiter(0, 0)
    assert not off.enabled and all(off.hit("x", "1.2.3.4") is None for _ in range(100))
    with pytest.raises(ValueError, match="turns per minute"):
        RateLimiter(-1, 0)


def test_the_ui_gets_the_refusal_not_a_turn() -> None:
    class Service:
        class settings:  # noqa: N801 - a stand-in for Settings' three fields
            rate_limit_user_per_min, rate_limit_ip_per_min, rate_limit_storage = 1, 0, "memory://"

    import asyncio

    service = Service()
    assert asyncio.run(turn_refusal(service, None)) is None
    err = asyncio.run(turn_refusal(service, None))
    assert err is not None and err.status_code == 429 and err.code == "rate_limited"
    assert re.match(r"Too many questions .* at most 1 per minute\. Please wait \d+ s", err.message)


@pytest.mark.timeout(420)
def test_the_app_refuses_over_budget_turns_with_429_retry_after_and_logs_none_of_them(
    app_factory: Callable[..., contextlib.AbstractContextManager[str]], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    with (
        InstantLLM() as llm,
        app_factory(
            openai_base_url=llm.base_url,
            database_url=db,
            auth_users="alice:pw-a,bob:pw-b",
            auth_tokens="alice:tok-alice,bob:tok-bob",
            rate_limit_user_per_min=2,
            rate_limit_ip_per_min=3,
        ) as base,
    ):

        def ask(token: str) -> httpx.Response:
            return httpx.post(
                f"{base}/api/chat",
                json={"message": "How do I copy a file?"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=180,
            )

        assert [ask("tok-alice").status_code for _ in range(2)] == [200, 200]
        refused = ask("tok-alice")
        assert refused.status_code == 429, refused.text
        err = refused.json()["error"]
        assert err["code"] == "rate_limited" and err["turn_id"] is None
        assert "from your account" in err["message"] and "2 per minute" in err["message"]
        assert int(refused.headers["Retry-After"]) == err["retry_after_s"] and 1 <= err["retry_after_s"] <= 60
        assert ask("tok-bob").status_code == 200  # bob has his own budget: the address's 3rd turn
        by_ip = ask("tok-bob")
        assert by_ip.status_code == 429 and "network address" in by_ip.json()["error"]["message"]
        streamed = httpx.post(
            f"{base}/api/chat",
            json={"message": "How do I copy a file?", "stream": True},
            headers={"Authorization": "Bearer tok-alice"},
            timeout=180,
        )
        assert streamed.status_code == 429 and streamed.json()["error"]["code"] == "rate_limited"
        feedback = httpx.post(  # only turns are limited
            f"{base}/api/feedback",
            json={"turn_id": "nope", "value": 1},
            headers={"Authorization": "Bearer tok-alice"},
        )
        assert feedback.status_code != 429
    log = ChatLog(db)
    try:
        with log.engine.connect() as conn:
            from sqlalchemy import func, select

            from chatlog import turns

            assert conn.execute(select(func.count()).select_from(turns)).scalar_one() == 3
    finally:
        log.close()
