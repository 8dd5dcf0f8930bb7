"""Who is asking: optional sign-in for the UI and the API, else an anonymous id kept in a cookie.

One identity for every route (the Gradio UI, ``/api/*``, ``/documents/*``): an ASGI middleware
resolves the user of each request once and keeps it in the request scope, where
:func:`current_user` reads it.

- Authentication on (``RAGLOOP_AUTH_USERS`` set): a browser signs in at ``/login`` and gets a
  signed session cookie; an API client sends ``Authorization: Bearer TOKEN``
  (``RAGLOOP_AUTH_TOKENS``). Anything else gets 401 (API) or a redirect to ``/login`` (pages).
  Users named in ``RAGLOOP_ADMIN_USERS`` have the admin role.
- Authentication off: each browser gets a random id in an HttpOnly cookie; its user id is
  ``anon:`` plus a hash of it (the database never holds the cookie itself, so the log cannot be
  used to impersonate a browser).

Conversations belong to ``User.id`` (``conversations.user_id``): nobody sees another's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ragloop.errors import UserError
from ragloop.settings import Settings, secret_value

__all__ = [
    "ANON_COOKIE",
    "SESSION_COOKIE",
    "AuthConfig",
    "AuthMiddleware",
    "User",
    "current_user",
    "install_auth",
]

#: Cookie holding a browser's anonymous id (authentication off).
ANON_COOKIE = "ragloop_uid"
#: Cookie holding a signed sign-in (authentication on).
SESSION_COOKIE = "ragloop_session"
#: Where the resolved user is kept in the ASGI scope's ``state``.
_STATE_KEY = "ragloop_user"
#: Paths that answer without a sign-in (the login page itself, liveness and metrics scrapes).
_OPEN_PATHS = ("/login", "/logout", "/healthz", "/metrics")

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class User:
    """The user of a request.

    Attributes:
        id: the owner id stored in ``conversations.user_id``: the user name when signed in,
            ``anon:<hash>`` for an anonymous browser, ``anonymous`` when nothing identifies it.
        is_admin: has the admin role (always False without authentication).
        authenticated: signed in (session cookie or bearer token).
    """

    id: str
    is_admin: bool = False
    authenticated: bool = False

    @property
    def name(self) -> str:
        """What the page shows: the user name, or "Guest"."""
        return self.id if self.authenticated else "Guest"


ANONYMOUS = User("anonymous")


def _pairs(text: str | None, what: str) -> dict[str, str]:
    """Parse ``'a:x,b:y'`` into ``{"a": "x", "b": "y"}``.

    Raises:
        UserError: an entry without ``:``, or with an empty name or value (named by ``what``).
    """
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, value = item.strip().partition(":")
        if not sep or not name.strip() or not value:
            raise UserError(
                f"{what}: each entry must be NAME:VALUE, comma-separated (got an entry {name!r})."
            )
        out[name.strip()] = value
    return out


@dataclass
class AuthConfig:
    """Users, tokens, admins and the session key, from :class:`~ragloop.settings.Settings`."""

    passwords: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user
    admins: frozenset[str] = frozenset()
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    session_s: float = 12 * 3600.0

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthConfig:
        """Read ``RAGLOOP_AUTH_*`` and ``RAGLOOP_ADMIN_USERS``.

        Raises:
            UserError: a malformed user or token list.
        """
        passwords = _pairs(secret_value(settings.auth_users), "RAGLOOP_AUTH_USERS")
        tokens = {
            tok: user
            for user, tok in _pairs(secret_value(settings.auth_tokens), "RAGLOOP_AUTH_TOKENS").items()
        }
        admins = frozenset(a.strip() for a in settings.admin_users.split(",") if a.strip())
        key = secret_value(settings.auth_secret)
        return cls(
            passwords=passwords,
            tokens=tokens,
            admins=admins,
            secret=key.encode() if key else derived_secret(passwords, tokens),
            session_s=settings.auth_session_hours * 3600.0,
        )

    @property
    def enabled(self) -> bool:
        """True when sign-in is required (users or tokens configured)."""
        return bool(self.passwords or self.tokens)

    def user(self, name: str) -> User:
        """The signed-in user ``name``."""
        return User(name, is_admin=name in self.admins, authenticated=True)

    def check_password(self, name: str, password: str) -> bool:
        """True when ``password`` is ``name``'s (constant-time comparison)."""
        expected = self.passwords.get(name)
        if expected is None:
            hmac.compare_digest(password.encode(), b"x" * max(1, len(password)))  # same work either way
            return False
        return hmac.compare_digest(password.encode(), expected.encode())

    def token_user(self, token: str) -> str | None:
        """The user a bearer token belongs to, or None."""
        for known, name in self.tokens.items():
            if hmac.compare_digest(token.encode(), known.encode()):
                return name
        return None

    # --- signed sessions (pure) ------------------------------------------------------------
    def sign(self, name: str, now: float | None = None) -> str:
        """A session cookie value for ``name``: ``b64(name).expiry.hmac``."""
        expiry = int((now if now is not None else time.time()) + self.session_s)
        body = f"{base64.urlsafe_b64encode(name.encode()).decode()}.{expiry}"
        mac = hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()
        return f"{body}.{mac}"

    def verify(self, value: str, now: float | None = None) -> str | None:
        """The user name of a valid, unexpired session cookie; None otherwise."""
        try:
            b64, expiry, mac = value.split(".")
            body = f"{b64}.{expiry}"
            good = hmac.new(self.secret, body.encode(), hashlib.sha256).hexdigest()
            if not hmac.compare_digest(mac, good) or int(expiry) < (now if now is not None else time.time()):
                return None
            name = base64.urlsafe_b64decode(b64.encode()).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        return name if name in self.passwords or name in self.tokens.values() else None


def derived_secret(passwords: dict[str, str], tokens: dict[str, str]) -> bytes:
    """The session key when ``RAGLOOP_AUTH_SECRET`` is unset: HMAC-SHA256 of the configured credentials.

    Every app process with the same users and tokens derives the same key, so a cookie signed by
    one process is valid on the others behind a load balancer (and after a restart); a random key
    per process signed users out whenever nginx sent them to another process. The key is as secret
    as the passwords it comes from, and changing any of them signs everyone out.

    Args:
        passwords: user -> password.
        tokens: token -> user.

    Returns:
        32 bytes.
    """
    material = json.dumps({"users": passwords, "tokens": tokens}, sort_keys=True).encode()
    return hmac.new(b"ragloop session key v1", material, hashlib.sha256).digest()


def anonymous_id(cookie: str) -> str:
    """The owner id of an anonymous browser: ``anon:`` + the first 32 hex of SHA-256 of its cookie."""
    return "anon:" + hashlib.sha256(cookie.encode()).hexdigest()[:32]


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - a malformed cookie header identifies nobody
                continue
    return {k: m.value for k, m in jar.items()}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _cookie_header(name: str, value: str, scope: Scope, max_age: int | None) -> bytes:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", "SameSite=Lax"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    if scope.get("scheme") == "https":
        parts.append("Secure")
    return "; ".join(parts).encode("latin-1")


class AuthMiddleware:
    """Pure ASGI middleware: resolves each request's :class:`User` (streaming stays untouched)."""

    def __init__(self, app: ASGIApp, config: AuthConfig) -> None:
        """Wrap ``app``; ``config`` says whether sign-in is required."""
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        """Attach the user to ``scope["state"]``; refuse or redirect when sign-in is missing."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        cookies = _cookies(scope)
        new_cookie: bytes | None = None
        user = self._signed_in(scope, cookies)
        if user is None and not self.config.enabled:
            anon = cookies.get(ANON_COOKIE)
            if not anon or len(anon) < 16:
                anon = secrets.token_urlsafe(24)
                new_cookie = _cookie_header(ANON_COOKIE, anon, scope, 400 * 24 * 3600)
                # This request carries the new id too, so the first page load already has its owner.
                scope["headers"] = [*scope.get("headers", []), (b"cookie", f"{ANON_COOKIE}={anon}".encode())]
            user = User(anonymous_id(anon))
        scope.setdefault("state", {})[_STATE_KEY] = user or ANONYMOUS
        if user is None and not scope["path"].startswith(_OPEN_PATHS):
            await self._refuse(scope, send)
            return
        if new_cookie is None:
            await self.app(scope, receive, send)
            return

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", new_cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    def _signed_in(self, scope: Scope, cookies: dict[str, str]) -> User | None:
        if not self.config.enabled:
            return None
        auth = _header(scope, b"authorization") or ""
        if auth.lower().startswith("bearer "):
            name = self.config.token_user(auth[7:].strip())
            return self.config.user(name) if name else None
        name = self.config.verify(cookies.get(SESSION_COOKIE, ""))
        return self.config.user(name) if name else None

    async def _refuse(self, scope: Scope, send: Any) -> None:
        path = scope["path"]
        page = scope["type"] == "http" and scope.get("method") == "GET" and not path.startswith("/api/")
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if page and path in ("/", "") or page and "text/html" in (_header(scope, b"accept") or ""):
            target = "/login?next=" + quote(path)
            headers = [(b"location", target.encode()), (b"content-length", b"0")]
            await send({"type": "http.response.start", "status": 303, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = (
            b'{"error": {"code": "unauthorized", "message": "Sign in first (or send a bearer token).",'
            b' "turn_id": null}}'
        )
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b"Bearer"),
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def current_user(request: Any) -> User:
    """The user of a request: a Starlette/FastAPI ``Request``, a ``gr.Request``, or None.

    Returns the user :class:`AuthMiddleware` resolved (signed in, or anonymous by cookie);
    :data:`ANONYMOUS` when the request did not pass the middleware (e.g. a handler called directly).
    """
    if request is None:
        return ANONYMOUS
    inner = getattr(request, "request", None)  # gr.Request wraps the FastAPI request
    for candidate in (inner, request):
        scope = getattr(candidate, "scope", None)
        if isinstance(scope, dict):
            user = scope.get("state", {}).get(_STATE_KEY)
            if isinstance(user, User):
                return user
    return ANONYMOUS


def safe_next(target: str | None) -> str:
    """A same-site path to go to after signing in ("/" for anything else: no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


_LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Sign in - ragloop</title><link rel="icon" href="/favicon.svg" type="image/svg+xml">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:system-ui,sans-serif;max-width:22rem;margin:12vh auto;padding:0 1rem}}
label,input,button{{display:block;width:100%;margin:.4rem 0;font-size:1rem}}input{{padding:.4rem}}
button{{padding:.5rem;background:#2563eb;color:#fff;border:0;border-radius:.3rem}}.err{{color:#b91c1c}}</style>
</head><body><h1>ragloop</h1><p>Sign in to chat with the documents.</p>{error}
<form method="post" action="/login"><input type="hidden" name="next" value="{next}">
<label for="username">User name</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password"
autocomplete="current-password" required>
<button type="submit" id="sign-in">Sign in</button></form></body></html>"""


def login_page(next_path: str, error: str = "") -> str:
    """The sign-in form's HTML."""
    shown = f'<p class="err" role="alert">{html.escape(error)}</p>' if error else ""
    return _LOGIN_PAGE.format(error=shown, next=html.escape(safe_next(next_path), quote=True))


def install_auth(app: Any, settings: Settings) -> AuthConfig:
    """Add the middleware and the ``/login`` and ``/logout`` routes to a FastAPI ``app``.

    Call before mounting the UI at ``/`` (a mount shadows routes added after it).

    Returns:
        The configuration, also kept as ``app.state.auth``.

    Raises:
        UserError: a malformed ``RAGLOOP_AUTH_USERS`` or ``RAGLOOP_AUTH_TOKENS``.
    """
    config = AuthConfig.from_settings(settings)
    app.state.auth = config

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(next: str = "/") -> HTMLResponse:  # noqa: A002 - the query parameter's name
        if not config.enabled:
            return HTMLResponse(status_code=303, headers={"location": safe_next(next)})
        return HTMLResponse(login_page(next))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        name = (form.get("username") or [""])[0].strip()
        target = safe_next((form.get("next") or ["/"])[0])
        if not config.enabled:
            return RedirectResponse(target, status_code=303)
        if not config.check_password(name, (form.get("password") or [""])[0]):
            return HTMLResponse(login_page(target, "Wrong user name or password."), status_code=401)
        response = RedirectResponse(target, status_code=303)
        cookie = _cookie_header(SESSION_COOKIE, config.sign(name), request.scope, int(config.session_s))
        response.raw_headers.append((b"set-cookie", cookie))
        return response

    @app.get("/logout", include_in_schema=False)
    async def logout() -> Response:
        response = RedirectResponse("/login" if config.enabled else "/", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    app.add_middleware(AuthMiddleware, config=config)
    return config


def conversation_title(question: Any, limit: int = 80) -> str | None:
    """A conversation's title from its first question: one line, at most ``limit`` characters."""
    if not isinstance(question, str):
        return None
    text = " ".join(question.split())
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def may_use(row: dict[str, Any] | None, user: User) -> bool:
    """Whether ``user`` may read, continue, rate or delete the conversation ``row``.

    Signed in: only the owner. Without authentication a conversation that has an owner (a
    browser's anonymous id) is that browser's alone; one created through the API without an
    identity (no owner) is reached by its id, a random 128-bit key. A conversation that does not
    exist (None) is left to the caller, which answers 404 for it.
    """
    if row is None:
        return not user.authenticated
    owner = row.get("user_id")
    if user.authenticated:
        return owner == user.id
    return owner is None or owner == user.id


def _not_found(what: str) -> Exception:
    from chatbot._service import ChatError

    if what == "turn":
        return ChatError(404, "unknown_turn", "That answer does not exist (any more).")
    return ChatError(
        404, "unknown_conversation", "That conversation does not exist (any more): start a new one."
    )


async def api_conversation(service: Any, req: Any, request: Any) -> str | None:
    """The conversation an API turn goes to, when the caller may use it (:func:`may_use`).

    Signed in, a new conversation is created with the caller as owner and the question as title.
    Without authentication a new one has no owner (an API client without cookies has no lasting
    identity), as before.

    Raises:
        ChatError: 404 ``unknown_conversation`` for a conversation the caller may not use (the
            same answer as for one that does not exist).
    """
    import asyncio

    user = current_user(request)
    cid = req.conversation_id
    log = service.chatlog
    if cid is not None:
        if not may_use(await asyncio.to_thread(log.get_conversation, cid), user):
            raise _not_found("conversation")
        return cid  # type: ignore[no-any-return]
    if not user.authenticated:
        return None
    title = conversation_title(req.message)
    if title is None:
        return None  # the service rejects (and logs) the empty message
    return await asyncio.to_thread(  # type: ignore[no-any-return]
        lambda: log.create_conversation(user_id=user.id, title=title)
    )


async def api_check_owner(service: Any, conversation_id: str, request: Any) -> None:
    """Refuse (404) a request about a conversation the caller may not use (:func:`may_use`)."""
    import asyncio

    row = await asyncio.to_thread(service.chatlog.get_conversation, conversation_id)
    if not may_use(row, current_user(request)):
        raise _not_found("conversation")


async def api_check_turn(service: Any, turn_id: str, request: Any) -> None:
    """Refuse (404 ``unknown_turn``) feedback on a turn of a conversation the caller may not use."""
    import asyncio

    def conversation_of_turn() -> dict[str, Any] | None:
        turn = service.chatlog.get_turn(turn_id)
        return None if turn is None else service.chatlog.get_conversation(turn["conversation_id"])

    if not may_use(await asyncio.to_thread(conversation_of_turn), current_user(request)):
        raise _not_found("turn")
