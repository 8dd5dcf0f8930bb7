"""What every chat-log module shares: the one :data:`metadata`, UTC time, ids, SQLite transactions.

Kept apart from ``_store`` so the outbox and the migrations can use it without an import cycle.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from sqlalchemy import MetaData
from sqlalchemy.engine import Connection, Engine

#: Every table of the chat log (and of the packages that store beside it) lives on this metadata.
metadata = MetaData()


def now() -> datetime:
    """Timezone-aware UTC now (the log stores UTC everywhere)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random id for a turn or conversation."""
    return uuid.uuid4().hex


def is_sqlite(engine_or_conn: Engine | Connection) -> bool:
    """True for a SQLite database."""
    return engine_or_conn.dialect.name == "sqlite"


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that takes the write lock first on SQLite (``BEGIN IMMEDIATE``).

    SQLite's default deferred transaction that reads and then writes can fail with "database is
    locked" when another connection wrote in between; taking the lock up front makes concurrent
    writers queue on ``busy_timeout`` instead, and serialises them (the outbox claims rely on it).
    On other databases this is ``engine.begin()``.

    Yields:
        The connection, inside the transaction; committed on exit, rolled back on an exception.
    """
    if not is_sqlite(engine):
        with engine.begin() as conn:
            yield conn
        return
    with engine.connect() as conn:
        # pysqlite begins no transaction of its own before this statement, so ours is the one.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.rollback()
            raise
        conn.commit()
