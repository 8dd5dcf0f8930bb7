"""A fresh, empty database per test on each back end: SQLite (WAL) and the real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

import chatlog as cl


def fresh_postgres_url(base: str) -> str:
    """A new schema on the session's PostgreSQL server, as a URL whose search_path is that schema."""
    schema = f"t{cl.new_id()[:12]}"
    eng = create_engine(base)
    with eng.begin() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    eng.dispose()
    return f"{base}?options=-csearch_path%3D{schema}"


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database URL; nothing created in it yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'chat.db'}"
    else:
        yield fresh_postgres_url(request.getfixturevalue("postgres_url"))
