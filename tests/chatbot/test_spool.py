"""The chat-log spool: accepted turns' writes retried until the database is back, bounded, never silent."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from chatbot._spool import ChatlogSpool, is_db_outage


def _outage() -> OperationalError:
    return OperationalError("INSERT ...", {}, Exception("connection refused"))


def test_a_write_is_retried_until_the_database_answers() -> None:
    calls: list[int] = []

    def write() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise _outage()

    spool = ChatlogSpool(initial_s=0.01, max_s=0.02)
    assert spool.put("turn-1", write)
    assert spool.flush(timeout_s=10)
    assert len(calls) == 3
    assert spool.snapshot() == {"pending": 0, "written": 1, "dropped": 0}


def test_a_write_that_can_never_land_is_dropped_loudly(caplog: pytest.LogCaptureFixture) -> None:
    def bad() -> None:
        raise IntegrityError("INSERT ...", {}, Exception("duplicate key"))

    spool = ChatlogSpool(initial_s=0.01)
    with caplog.at_level(logging.ERROR, logger="chatbot._spool"):
        spool.put("turn-2", bad)
        assert spool.flush(timeout_s=10)
    assert spool.snapshot()["dropped"] == 1
    assert "turn-2" in caplog.text


def test_the_spool_is_bounded_and_says_what_it_lost(caplog: pytest.LogCaptureFixture) -> None:
    def down() -> None:
        raise _outage()

    spool = ChatlogSpool(max_items=2, initial_s=5.0, max_s=5.0)
    with caplog.at_level(logging.ERROR, logger="chatbot._spool"):
        assert spool.put("a", down) and spool.put("b", down)
        assert not spool.put("c", down)
    assert spool.pending == 2 and spool.dropped == 1
    assert "turn c is lost" in caplog.text


def test_only_connection_failures_count_as_an_outage() -> None:
    assert is_db_outage(_outage())
    assert not is_db_outage(IntegrityError("INSERT ...", {}, Exception("duplicate key")))
    assert not is_db_outage(ValueError("bad row"))
