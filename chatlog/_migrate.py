"""Schema versions of the chat log: Alembic revisions in ``chatlog/migrations``, run in-process.

Every table on :data:`chatlog.metadata` is created or changed only here (nobody calls
``create_all``). Upgrades run in one transaction that first takes a lock (``BEGIN IMMEDIATE`` on
SQLite, an advisory lock on PostgreSQL), so two processes starting at once migrate once.

A database made by the pre-issue code has tables but no ``alembic_version``: the baseline revision
``0001`` creates only the tables it lacks, so it upgrades like a fresh one, keeping every row.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from chatlog._base import is_sqlite

log = logging.getLogger(__name__)
# Alembic logs "Context impl SQLiteImpl" on every revision check; our own line says what changed.
logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
#: Any fixed number: the PostgreSQL advisory lock that serialises migrations.
_PG_LOCK = 7_263_001
#: Longest wait for another process's migration on SQLite (PostgreSQL's lock waits as long as it takes).
LOCK_WAIT_S = 120.0


class SchemaError(RuntimeError):
    """The database's schema is not the one this code needs (and was not upgraded)."""


@dataclass(frozen=True)
class Revision:
    """One migration: its id, the one it follows, and its one-line description."""

    revision: str
    down_revision: str | None
    doc: str


def _config(connection: Connection | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _script() -> ScriptDirectory:
    return ScriptDirectory.from_config(_config())


def head() -> str:
    """The newest revision this code knows."""
    heads = _script().get_heads()
    if len(heads) != 1:  # pragma: no cover - a branched history is a bug in the revisions
        raise SchemaError(f"the chat-log migrations must be linear, found heads {heads}")
    return heads[0]


def history() -> list[Revision]:
    """Every revision, oldest first."""
    revs = [
        Revision(r.revision, r.down_revision if isinstance(r.down_revision, str) else None, r.doc or "")
        for r in _script().walk_revisions()
    ]
    return list(reversed(revs))


@contextmanager
def _engine(url_or_engine: str | Engine) -> Iterator[Engine]:
    if isinstance(url_or_engine, Engine):
        yield url_or_engine
        return
    from chatlog._store import make_engine

    engine = make_engine(url_or_engine)
    try:
        yield engine
    finally:
        engine.dispose()


def _current(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def current(url_or_engine: str | Engine) -> str | None:
    """The revision the database is at; None for an empty (or pre-migrations) database."""
    with _engine(url_or_engine) as engine, engine.connect() as conn:
        return _current(conn)


def _check_known(rev: str | None, url: str) -> None:
    known = {r.revision for r in history()}
    if rev is not None and rev not in known:
        raise SchemaError(
            f"the chat log at {url} is at revision {rev!r}, newer than this ragloop knows "
            f"(head {head()!r}): upgrade ragloop, or point RAGLOOP_DATABASE_URL at another database"
        )


def _safe_url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _begin_immediate(conn: Connection, wait_s: float = LOCK_WAIT_S) -> None:
    # busy_timeout (5 s) is short for a migration another process is running on a busy machine.
    import time

    from sqlalchemy.exc import OperationalError

    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
            return
        except OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            conn.rollback()
            time.sleep(0.2)


@contextmanager
def _locked(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as conn:
        if is_sqlite(conn):
            _begin_immediate(conn)
        else:
            conn.begin()
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()


def upgrade(url_or_engine: str | Engine, revision: str = "head") -> str | None:
    """Upgrade the database to ``revision`` (default: the newest); returns the revision it is at.

    Raises:
        SchemaError: the database is at a revision this code does not know.
    """
    with _engine(url_or_engine) as engine:
        if revision == "head" and _at(engine) == head():
            return head()  # the common start-up case: no lock, no transaction
        with _locked(engine) as conn:
            before = _current(conn)
            _check_known(before, _safe_url(engine))
            command.upgrade(_config(conn), revision)
            after = _current(conn)
        if after != before:
            log.info("chat log %s upgraded: %s -> %s", _safe_url(engine), before or "(empty)", after)
        return after


def downgrade(url_or_engine: str | Engine, revision: str) -> str | None:
    """Downgrade the database to ``revision`` ("base" removes every table); returns where it is."""
    with _engine(url_or_engine) as engine, _locked(engine) as conn:
        command.downgrade(_config(conn), revision)
        return _current(conn)


def _at(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return _current(conn)


def ensure_schema(engine: Engine, *, auto_upgrade: bool = True) -> str:
    """Upgrade to head, or with ``auto_upgrade=False`` check that the database is at head.

    Raises:
        SchemaError: the database is behind (and ``auto_upgrade`` is off) or ahead of this code.
    """
    want = head()
    if auto_upgrade:
        got = upgrade(engine)
    else:
        got = _at(engine)
        _check_known(got, _safe_url(engine))
    if got != want:
        at = f"revision {got}" if got else "no revision (an empty or pre-migrations database)"
        raise SchemaError(
            f"the chat log at {_safe_url(engine)} is at {at}, this ragloop needs {want}: "
            "run `ragloop db upgrade` (or set RAGLOOP_DB_AUTO_UPGRADE=true)"
        )
    return want
