"""Two ``ragloop serve`` processes behind nginx share one PostgreSQL, one Chroma server, one LLM.

Real servers throughout: PostgreSQL and the Chroma server (session fixtures), a zero-latency
OpenAI-compatible endpoint (the LLM is not what is tested here), a LangSmith-speaking receiver for
the outbox, two app processes and Debian's nginx running the shipped ``deploy/nginx/nginx.conf``
(see :mod:`tests.scaleout`). Authentication is on, so the session cookie is part of the test.

The tests share one stack and run in file order; the last one SIGKILLs a process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitoring._instant_llm import Behaviour, InstantLLM
from ragloop.settings import Settings
from tests.chatbot.conftest import DOCS
from tests.chatlog.conftest import fresh_postgres_url
from tests.scaleout import (
    AppProcess,
    FeedbackReceiver,
    Nginx,
    app_env,
    check,
    leased_keys,
    run_load,
    served_by,
    wait_for_outbox,
)

pytestmark = pytest.mark.slow

USERS = "alice:wonderland,bob:builder"
TOKEN = "scaleout-token"


@pytest.fixture(scope="module")
def stack(
    postgres_url: str,
    chroma_server: str,
    tmp_path_factory: pytest.TempPathFactory,
    index_docs: Callable[..., Path],
) -> Iterator[dict[str, Any]]:
    """Two app processes (one shared data dir, as the compose volume) behind nginx."""
    root = tmp_path_factory.mktemp("scaleout")
    db = fresh_postgres_url(postgres_url)
    data = root / "data"
    index_docs(root, DOCS, Settings(data_dir=data, collection="scaleout", chroma_url=chroma_server))
    # Each answer streams for ~0.6 s, so a kill catches turns in flight.
    llm = InstantLLM(Behaviour(token_delay_s=0.1)).start()
    receiver = FeedbackReceiver().start()
    env = app_env(db, chroma_server, llm.base_url, data, receiver.url)
    env.update(RAGLOOP_AUTH_USERS=USERS, RAGLOOP_AUTH_TOKENS=f"alice:{TOKEN}")
    apps = [AppProcess(name, env, root) for name in ("app-a", "app-b")]
    nginx: Nginx | None = None
    try:
        for app in apps:
            app.start()
        for app in apps:
            app.wait_ready()
        nginx = Nginx([a.port for a in apps], root / "nginx").start()
        yield {"apps": apps, "nginx": nginx, "db": db, "receiver": receiver, "root": root}
    finally:
        if nginx is not None:
            nginx.stop()
        for app in apps:
            app.stop()
        receiver.stop()
        llm.stop()


def _sign_in(base: str, user: str = "alice", password: str = "wonderland") -> str:
    r = httpx.post(f"{base}/login", data={"username": user, "password": password, "next": "/"})
    assert r.status_code == 303, r.text
    cookie = r.cookies.get("ragloop_session")
    assert cookie
    return str(cookie)


def test_a_sign_in_on_one_process_is_valid_on_the_other(stack: dict[str, Any]) -> None:
    a, b = stack["apps"]
    cookie = _sign_in(a.base)
    # A conversation started through B with A's cookie belongs to alice (the UI's requests carry it).
    r = httpx.post(f"{b.base}/api/conversations", cookies={"ragloop_session": cookie})
    assert r.status_code == 201, r.text
    page = httpx.get(f"{b.base}/", cookies={"ragloop_session": cookie}, headers={"accept": "text/html"})
    assert page.status_code == 200, f"process B sent {page.status_code} {page.headers.get('location')}"
    # And the key really is checked: a forged cookie is refused.
    forged = cookie[:-4] + ("0000" if not cookie.endswith("0000") else "1111")
    refused = httpx.get(f"{b.base}/", cookies={"ragloop_session": forged}, headers={"accept": "text/html"})
    assert refused.status_code == 303


def test_a_turn_on_one_process_continues_on_the_other_with_its_history(stack: dict[str, Any]) -> None:
    a, b = stack["apps"]
    headers = {"authorization": f"Bearer {TOKEN}"}
    first = httpx.post(
        f"{a.base}/api/chat", json={"message": "How do I sort a list?"}, headers=headers, timeout=60
    )
    assert first.status_code == 200, first.text
    cid = first.json()["conversation_id"]
    second = httpx.post(
        f"{b.base}/api/chat",
        json={"message": "And in reverse?", "conversation_id": cid},
        headers=headers,
        timeout=60,
    )
    assert second.status_code == 200, second.text
    from chatlog import ChatLog

    log = ChatLog(stack["db"])
    try:
        history = log.history(cid, 10)
    finally:
        log.close()
    assert len(history) == 2, history  # B read A's turn from the chat log


def _gradio_sessions(base: str, sessions: int) -> list[tuple[str | None, bool]]:
    """Join Gradio's queue and open its event stream as ``sessions`` browsers, each with its own cookie.

    Returns:
        Per session: the process that took the join, and whether ``/gradio_api/queue/data``
        reached the process holding the session (it carries the event's messages then).
    """
    import uuid

    out: list[tuple[str | None, bool]] = []
    for _ in range(sessions):
        cookies = {"ragloop_uid": uuid.uuid4().hex}  # what a browser's first page load got
        with httpx.Client(base_url=base, cookies=cookies, headers=_bearer(), timeout=30) as client:
            config = client.get("/config")
            assert config.status_code == 200, config.text[:300]
            deps = [d for d in config.json()["dependencies"] if d.get("backend_fn")]
            dep = min(deps, key=lambda d: len(d.get("inputs", [])))
            session = uuid.uuid4().hex[:11]
            body = {
                "data": [None] * len(dep.get("inputs", [])),
                "fn_index": dep["id"],
                "session_hash": session,
                "event_data": None,
                "trigger_id": None,
            }
            joined = client.post("/gradio_api/queue/join", json=body)
            assert joined.status_code == 200, joined.text[:300]
            out.append((served_by(joined.headers), _first_event(client, session)))
    return out


def _first_event(client: httpx.Client, session: str) -> bool:
    """True when the session's event stream carries its event's messages.

    A process that does not hold the session also answers 200, with one ``unexpected_error``
    message (``session_not_found``), and closes the stream.
    """
    try:
        with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                if line.startswith("data:"):
                    message = json.loads(line[5:])
                    return not message.get("session_not_found") and message.get("msg") != "unexpected_error"
    except httpx.HTTPError:
        return False
    return False


def test_the_gradio_ui_sticks_to_one_process_per_browser(stack: dict[str, Any]) -> None:
    a, b = stack["apps"]
    seen = _gradio_sessions(stack["nginx"].base, 8)
    # Browsers are spread: each random id hashes to either process, so 8 of them all land on one
    # about 1 time in 100 (more when the ring is uneven); more browsers come until both have
    # some (40 on one process: under 1 in 10^8 for a 60/40 ring, always for a hash that spreads none).
    while {who for who, _ in seen} != {a.upstream, b.upstream} and len(seen) < 40:
        seen += _gradio_sessions(stack["nginx"].base, 4)
    assert all(ok for _, ok in seen), seen
    assert {who for who, _ in seen} == {a.upstream, b.upstream}, seen
    # The reason for the hash: the same file with a round-robin UI upstream loses the sessions.
    conf = stack["root"] / "round-robin.conf"
    shipped = (Path(__file__).resolve().parents[1] / "deploy" / "nginx" / "nginx.conf").read_text()
    conf.write_text(shipped.replace("hash $ragloop_affinity consistent;", ""))
    with Nginx([a.port, b.port], stack["root"] / "nginx-rr", conf=conf) as rr:
        lost = [who for who, ok in _gradio_sessions(rr.base, 4) if not ok]
    assert lost, "a round-robin upstream should have sent some event streams to the wrong process"


def test_nginx_spreads_api_turns_and_a_kill_loses_no_accepted_turn(stack: dict[str, Any]) -> None:
    a, b = stack["apps"]
    nginx, db, receiver = stack["nginx"], stack["db"], stack["receiver"]
    leases: set[str] = set()

    def kill_a() -> None:
        a.kill()
        leases.update(leased_keys(db, a.pid))  # the dead worker's leases (expire after 5 s)

    seen = asyncio.run(
        run_load(nginx.base, conversations=6, duration_s=14.0, kill_at_s=5.0, kill=kill_a, headers=_bearer())
    )
    outbox = wait_for_outbox(db, timeout_s=90)  # the dead worker's leases expire first (5 s)
    result = check(seen, db, receiver, killed=a.upstream, killed_leases=leases)
    print(result)

    # Both processes served turns through nginx, and B went on alone after the kill.
    assert result["served_per_process"].get(a.upstream, 0) > 0, result
    assert result["served_per_process"].get(b.upstream, 0) > 0, result
    # Few turns on a busy machine: the invariants below are what counts.
    assert result["turns_completed"] >= 6, result
    # A turn whose process died before its first token got the API's JSON error (nginx's
    # app_unavailable, 503 with Retry-After), never an HTML error page.
    assert not [c for c in result["refused_by_code"] if c.startswith("http_")], result["refused_by_code"]
    # No accepted turn is lost, none is there twice.
    assert result["lost_turns"] == 0, result["examples"]
    assert result["duplicated_turns"] == 0, result["examples"]
    # Feedback lands on its own turn's row, also when the other process took it.
    assert result["feedback_sent"] > 0
    assert result["feedback_served_by_the_other_process"] > 0, result
    assert result["feedback_for_turns_of_the_killed_process"] > 0, result
    assert result["feedback_misplaced"] == 0 and result["feedback_lost"] == 0, result["examples"]
    # The outbox delivered every rating once, across both processes.
    assert outbox.get("pending", 0) == 0 and outbox.get("dead", 0) == 0, outbox
    assert result["outbox_items"] == result["feedback_rows"]
    assert result["outbox_undelivered"] == 0 and result["outbox_wrong_score"] == 0, result["examples"]
    assert result["outbox_unexplained_duplicates"] == 0, result
    assert result["outbox_stray_deliveries"] == 0, result
    # Every request after the kill was answered by B: nginx skipped the dead process.
    status = httpx.get(f"{nginx.base}/healthz", timeout=10)
    assert status.status_code == 200 and served_by(status.headers) == b.upstream


def _bearer() -> dict[str, str]:
    return {"authorization": f"Bearer {TOKEN}"}
