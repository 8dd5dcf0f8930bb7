"""User errors: mistakes a user can fix, reported by the command line as one line and exit code 2.

Code that detects a user mistake raises :class:`UserError` (or a subclass) with a message that says
what is wrong and what to do. The command line (``ragloop.cli.main``) also maps the standard
exceptions that, at a command boundary, always mean the user's input or set-up is wrong
(:func:`user_message`): a missing file, a bad value, a setting that does not validate, a
configured server that refuses connections, a missing optional extra. Anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import errno
import re

__all__ = ["EXIT_USER_ERROR", "UserError", "clean_message", "is_connection_error", "user_message"]

#: Exit code of a user error (click uses 2 for usage errors too).
EXIT_USER_ERROR = 2


class UserError(Exception):
    """A mistake the user can fix; its message is shown alone, as one line."""


#: SQLAlchemy's prefix naming the driver's exception class: ``(psycopg2.OperationalError) ...``.
_DRIVER_PREFIX = re.compile(r"^\((?:[\w.]+\.)?\w+\)\s*")
#: SQLAlchemy's suffix pointing at its docs: ``(Background on this error at: https://sqlalche.me/...)``.
_BACKGROUND = re.compile(r"\s*\(Background on this error at:[^)]*\)\s*$")


def _first_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else ""
    return _BACKGROUND.sub("", _DRIVER_PREFIX.sub("", line))


def clean_message(exc: BaseException) -> str:
    """The first line of ``exc``'s message, without driver class names or SQLAlchemy's doc link.

    Alembic and SQLAlchemy quote their messages (``"Can't locate revision ..."``) or prefix them
    with the driver's exception class (``(psycopg2.OperationalError) ...``); the user needs neither.
    """
    text = _first_line(str(exc))
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text or type(exc).__name__


def _validation_message(exc: Exception) -> str:
    """A pydantic ValidationError as one line, without the rejected input (it may be a secret)."""
    from ragloop.settings import Settings

    parts = []
    for err in exc.errors()[:3]:  # type: ignore[attr-defined]
        field = ".".join(str(p) for p in err.get("loc", ())) or "value"
        info = Settings.model_fields.get(field)
        if info is not None and info.description:
            field = info.description.partition(":")[0]
        parts.append(f"{field}: {err.get('msg', 'invalid')}")
    return "invalid setting " + "; ".join(parts)


def is_connection_error(exc: BaseException) -> bool:
    """True for a refused or unreachable connection, whichever client library raised it."""
    if isinstance(exc, ConnectionError):
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED, errno.EHOSTUNREACH):
        return True
    name = type(exc).__name__
    module = type(exc).__module__ or ""
    if name in ("ConnectError", "ConnectTimeout") and module.startswith("httpx"):
        return True
    if name == "OperationalError" and module.startswith("sqlalchemy"):
        text = str(exc).lower()
        return "connection refused" in text or "could not connect" in text or "could not translate" in text
    return False


#: Driver messages (lower case) of a database the settings name but that cannot be opened.
_DATABASE_ACCESS = (
    "unable to open database file",
    "password authentication failed",
    "authentication failed",
    "timeout expired",
    "no password supplied",
)


def _is_database_access_error(exc: BaseException) -> bool:
    """True for SQLAlchemy's OperationalError about opening the database (not about a query)."""
    if type(exc).__name__ != "OperationalError" or not (type(exc).__module__ or "").startswith("sqlalchemy"):
        return False
    text = str(exc).lower()
    if any(marker in text for marker in _DATABASE_ACCESS):
        return True
    return "database" in text and "does not exist" in text and "relation" not in text


def user_message(exc: BaseException) -> str | None:
    """The one-line message for an exception that is a user error, or None for a bug.

    Args:
        exc: an exception that reached the command line.

    Returns:
        The message (no "Error:" prefix), or None when ``exc`` should keep its traceback.
    """
    if isinstance(exc, UserError):
        return _first_line(str(exc))
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
        return _validation_message(exc)  # type: ignore[arg-type]
    if isinstance(exc, FileNotFoundError | NotADirectoryError | IsADirectoryError | PermissionError):
        if exc.filename and exc.strerror:
            return f"{exc.strerror}: {exc.filename}"
        return _first_line(str(exc))
    module = type(exc).__module__ or ""
    if module.startswith("sqlalchemy") and type(exc).__name__ in ("ArgumentError", "NoSuchModuleError"):
        # The URL itself is not repeated: it may hold a password.
        return f"RAGLOOP_DATABASE_URL is not a usable SQLAlchemy URL ({type(exc).__name__})"
    if is_connection_error(exc):
        return "cannot connect: " + _first_line(str(exc) or type(exc).__name__)
    if _is_database_access_error(exc):
        return "cannot open the database (RAGLOOP_DATABASE_URL): " + clean_message(exc)
    if isinstance(exc, ImportError):
        # Missing extras name the pip command in their message.
        return _first_line(str(exc))
    if isinstance(exc, ValueError) and type(exc).__module__ in ("builtins", "chromadb.errors"):
        # A plain ValueError at a command boundary is a bad value from the user or their settings;
        # Chroma also raises it for "Could not connect to a Chroma server".
        return _first_line(str(exc))
    cause = exc.__cause__ or exc.__context__
    if cause is not None and cause is not exc and type(exc).__module__.startswith("chromadb"):
        return user_message(cause)
    return None
