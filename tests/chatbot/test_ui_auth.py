"""Identity: sign-in (session cookie, bearer token), anonymous cookie ids, and per-user conversations
over the real app (SQLite chat log, real HTTP). No LLM is needed: the checks stop before a model call."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import chatlog as cl
from chatbot._auth import ANON_COOKIE, SESSION_COOKIE, AuthConfig, anonymous_id, safe_next
from ragloop.errors import UserError
from ragloop.settings import Settings


def test_sessions_are_signed_expire_and_name_only_known_users() -> None:
    config = AuthConfig(passwords={"alice": "pw"}, secret=b"k" * 32, session_s=60)
    value = config.sign("alice", now=1000.0)
    assert config.verify(value, now=1030.0) == "alice"
    assert config.verify(value, now=1061.0) is None  # expired
    b64, expiry, mac = value.split(".")
    assert config.verify(f"{b64}.{int(expiry) + 999}.{mac}", now=1030.0) is None  # tampered expiry
    assert AuthConfig(passwords={"alice": "pw"}, secret=b"x" * 32).verify(value, now=1030.0) is None
    assert config.check_password("alice", "pw") and not config.check_password("alice", "PW")
    assert not config.check_password("mallory", "pw")


def test_settings_lists_are_parsed_and_a_bad_entry_is_one_clear_error() -> None:
    settings = Settings(auth_users="alice:a1,bob:b:2", auth_tokens="ci:tok", admin_users="alice")  # type: ignore[arg-type]
    config = AuthConfig.from_settings(settings)
    assert config.passwords == {"alice": "a1", "bob": "b:2"} and config.tokens == {"tok": "ci"}
    assert config.user("alice").is_admin and not config.user("bob").is_admin
    with pytest.raises(UserError, match="RAGLOOP_AUTH_USERS"):
        AuthConfig.from_settings(Settings(auth_users="alice"))  # type: ignore[arg-type]


def test_next_targets_stay_on_the_site() -> None:
    assert safe_next("/x?y=1") == "/x?y=1"
    for bad in ("https://evil.example/", "//evil.example", "/\\evil", None, ""):
        assert safe_next(bad) == "/"


@pytest.fixture()
def authed_app(app_factory: Callable[..., Any], tmp_path: Path) -> Iterator[dict[str, Any]]:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    with app_factory(
        database_url=db,
        openai_base_url="http://127.0.0.1:9/v1",  # never reached: these requests stop before the model
        auth_users="alice:wonderland,bob:builder",
        auth_tokens="alice:alice-token",
        admin_users="alice",
    ) as base:
        log = cl.ChatLog(db)
        try:
            yield {"url": base, "log": log}
        finally:
            log.close()


def test_signed_in_users_and_tokens_only_reach_their_own_conversations(authed_app: dict[str, Any]) -> None:
    base, log = authed_app["url"], authed_app["log"]
    # Without a sign-in: pages redirect to /login, the API answers 401 in the API's error shape.
    page = httpx.get(base + "/", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"].startswith("/login")
    api = httpx.post(base + "/api/chat", json={"message": "hi"})
    assert api.status_code == 401 and api.json()["error"]["code"] == "unauthorized"
    assert httpx.get(base + "/healthz").status_code in (200, 503)
    # A wrong password stays on the form; a right one sets the signed cookie.
    bad = httpx.post(base + "/login", data={"username": "bob", "password": "nope"})
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text
    with httpx.Client(base_url=base) as bob:
        ok = bob.post("/login", data={"username": "bob", "password": "builder", "next": "/"})
        assert ok.status_code == 303 and SESSION_COOKIE in bob.cookies
        assert bob.get("/", headers={"accept": "text/html"}).status_code == 200
        alice_conv = log.create_conversation(user_id="alice", title="alice's")
        # Bob cannot post into, or delete, Alice's conversation: the same 404 as an unknown one.
        other = bob.post("/api/chat", json={"message": "hi", "conversation_id": alice_conv})
        assert other.status_code == 404 and other.json()["error"]["code"] == "unknown_conversation"
        assert bob.delete(f"/api/conversations/{alice_conv}").status_code == 404
        assert log.conversation_exists(alice_conv)
    # Alice's bearer token is Alice.
    headers = {"authorization": "Bearer alice-token"}
    assert httpx.delete(f"{base}/api/conversations/{alice_conv}", headers=headers).status_code == 200
    assert httpx.get(base + "/api/nothing", headers={"authorization": "Bearer wrong"}).status_code == 401


def test_without_auth_each_browser_gets_its_own_anonymous_id(
    app_factory: Callable[..., Any], tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    with app_factory(database_url=db, openai_base_url="http://127.0.0.1:9/v1") as base:
        with httpx.Client(base_url=base) as one, httpx.Client(base_url=base) as two:
            assert one.get("/healthz").status_code in (200, 503)
            two.get("/healthz")
            a, b = one.cookies[ANON_COOKIE], two.cookies[ANON_COOKIE]
            assert a != b and len(a) >= 16
            one.get("/healthz")
            assert one.cookies[ANON_COOKIE] == a  # kept, not renewed
            assert anonymous_id(a) != anonymous_id(b) and a not in anonymous_id(a)


def test_without_auth_no_caller_reaches_another_browsers_conversation(
    app_factory: Callable[..., Any], tmp_path: Path
) -> None:
    """A guest's conversation (owned by its anonymous id) is that browser's alone, also over the API.

    Found by trying the product: a cookieless ``POST /api/chat`` with a guest's conversation id got
    200, its turn landed in the guest's conversation (shown in the guest's UI), the reply's
    standalone question carried the guest's earlier question, and ``/api/feedback`` rated the
    guest's turn. Each must be the same 404 as for an id that does not exist.
    """
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    log = cl.ChatLog(db)
    with app_factory(database_url=db, openai_base_url="http://127.0.0.1:9/v1") as base:
        with httpx.Client(base_url=base) as guest, httpx.Client(base_url=base) as other:
            guest.get("/healthz")
            owner = anonymous_id(guest.cookies[ANON_COOKIE])
            cid = log.create_conversation(user_id=owner, title="guest's")
            turn = log.start_turn(conversation_id=cid, user_message="How do I get a default value?")
            log.finish_turn(turn, cl.STATUS_OK, answer="Use dict.get(key, default).")
            # A cookieless caller (module-level httpx: no cookie kept) and another browser.
            for prefix, post, delete in ((base, httpx.post, httpx.delete), ("", other.post, other.delete)):
                chat = post(
                    prefix + "/api/chat", json={"message": "what did I ask before?", "conversation_id": cid}
                )
                _assert_error(chat, 404, "unknown_conversation")
                rated = post(prefix + "/api/feedback", json={"turn_id": turn, "value": -1})
                _assert_error(rated, 404, "unknown_turn")
                assert delete(prefix + f"/api/conversations/{cid}").status_code == 404
            assert [t["turn_id"] for t in log.conversation_turns(cid)] == [turn]
            assert log.feedback_for(turn) == []
            # The owner still can; a conversation the API created without an identity is reached by id.
            assert guest.post("/api/feedback", json={"turn_id": turn, "value": 1}).status_code == 201
            open_cid = log.create_conversation(title="api")
            open_turn = log.start_turn(conversation_id=open_cid, user_message="q")
            assert other.post("/api/feedback", json={"turn_id": open_turn, "value": 1}).status_code == 201
            assert guest.delete(f"/api/conversations/{cid}").status_code == 200
    log.close()


def _assert_error(resp: httpx.Response, status: int, code: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["code"] == code, resp.text
