"""Deleting turns' content from every table the product keeps it in (a user deletes a conversation).

The tables of other packages (evaluations, labeling, drift) are named here as lightweight
``table()`` constructs: their schema is this package's migrations, and the chat log stays a leaf.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from sqlalchemy import JSON, column, delete, func, inspect, or_, select, table, update
from sqlalchemy.engine import Connection, Engine

from chatlog._base import now
from chatlog._store import feedback, turns
from chatlog.outbox import DELIVERED, enqueue, outbox

log = logging.getLogger(__name__)

#: The outbox kind of "delete everything you hold about this conversation" (payload: conversation_id,
#: turn_ids, trace_ids). Keys: ``erase:<conversation>`` now, ``erase:<conversation>:late`` later.
ERASE = "erase"

#: Tables whose rows belong to a turn, by their turn column, children before parents.
_TURN_TABLES: tuple[tuple[str, str], ...] = (
    ("labels", "pair_id"),  # a pair's id is the id of the turn it was built from
    ("pairs", "pair_id"),
    ("selections", "turn_id"),
    ("evaluations", "turn_id"),
)
_CHUNK = 500  # ids per IN (...) list


def _chunks(ids: Sequence[str]) -> list[list[str]]:
    return [list(ids[i : i + _CHUNK]) for i in range(0, len(ids), _CHUNK)]


def _turn_keys(ids: Sequence[str]) -> Any:
    """Outbox keys about ``ids``: "<turn>", "<turn>:<rater>" (feedback), "<turn>:<evaluator>", "<pair>"."""
    return or_(outbox.c.key.in_(ids), *[outbox.c.key.startswith(f"{i}:", autoescape=True) for i in ids])


def delivered_copies(conn: Connection, turn_ids: Sequence[str]) -> dict[str, int]:
    """``{"sent:<sink>": n}``: items about ``turn_ids`` already delivered (the vendor keeps a copy)."""
    sent: dict[str, int] = {}
    for ids in _chunks(turn_ids):
        query = (
            select(outbox.c.sink, func.count())
            .where(outbox.c.status == DELIVERED, outbox.c.kind != ERASE, _turn_keys(ids))
            .group_by(outbox.c.sink)
        )
        for sink, n in conn.execute(query):
            sent[f"sent:{sink}"] = sent.get(f"sent:{sink}", 0) + int(n)
    return sent


def enqueue_erasure(
    conn: Connection,
    conversation_id: str,
    trace_ids: Sequence[str],
    sinks: Sequence[str],
    settle_s: float,
    turn_ids: Sequence[str] = (),
) -> dict[str, int]:
    """Ask every ``erase`` sink to delete what it holds of a conversation, now and ``settle_s`` later.

    The second request catches spans that were still on their way (the app's batch exporter, the
    collector) when the first one ran: a trace store recreates a trace a late span belongs to.

    Returns:
        ``{"erase:<sink>": 1}`` per sink the request was queued for.
    """
    if not sinks:
        return {}
    payload = {
        "conversation_id": conversation_id,
        "trace_ids": sorted(set(trace_ids)),
        "turn_ids": list(turn_ids),
    }
    key = f"{ERASE}:{conversation_id}"
    enqueue(conn, kind=ERASE, key=key, payload=payload, sinks=sinks)
    late = f"{key}:late"
    enqueue(conn, kind=ERASE, key=late, payload=payload, sinks=sinks)
    conn.execute(
        update(outbox)
        .where(outbox.c.kind == ERASE, outbox.c.key == late)
        .values(next_attempt_at=now() + timedelta(seconds=settle_s))
    )
    return {f"{ERASE}:{s}": 1 for s in dict.fromkeys(sinks)}


def scrub_sqlite(engine: Engine, attempts: int = 20) -> bool:
    """Checkpoint the WAL into the database file and truncate it, so deleted text is in neither.

    With ``PRAGMA secure_delete=ON`` (set on every connection by ``make_engine``) a delete zeroes
    the freed cells in the page it writes to the WAL; the checkpoint copies those pages over the
    database file, and ``TRUNCATE`` empties the WAL, which still held the frames with the text.
    A reader in the middle of a transaction holds old frames: retried for about a second.

    Returns:
        True when the WAL was fully checkpointed and truncated.
    """
    for _ in range(attempts):
        try:
            with engine.connect() as conn:
                busy, _log, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
        except Exception:  # noqa: BLE001 - the purge itself committed; report, do not fail it
            log.warning("WAL checkpoint after a purge failed", exc_info=True)
            return False
        if not busy:
            return True
        time.sleep(0.05)
    log.warning("WAL checkpoint after a purge stayed busy: deleted text may remain in the -wal file")
    return False


def purge_turns(conn: Connection, turn_ids: Sequence[str]) -> dict[str, int]:
    """Delete ``turn_ids`` and everything stored about them, inside the caller's transaction.

    Args:
        conn: a connection in a write transaction.
        turn_ids: the turns to remove.

    Returns:
        Rows removed (or scrubbed, for ``drift_clusters``) per table.
    """
    counts: dict[str, int] = {}
    if not turn_ids:
        return counts
    present = set(inspect(conn).get_table_names())
    for name, col in _TURN_TABLES:
        if name not in present:
            continue
        t = table(name, column(col))
        counts[name] = sum(
            conn.execute(delete(t).where(t.c[col].in_(ids))).rowcount for ids in _chunks(turn_ids)
        )
    counts["feedback"] = sum(
        conn.execute(delete(feedback).where(feedback.c.turn_id.in_(ids))).rowcount
        for ids in _chunks(turn_ids)
    )
    removed = 0
    for ids in _chunks(turn_ids):
        removed += conn.execute(delete(outbox).where(_turn_keys(ids))).rowcount
    counts["outbox"] = removed
    if "drift_clusters" in present:
        counts["drift_clusters"] = _scrub_drift(conn, turn_ids)
    counts["turns"] = sum(
        conn.execute(delete(turns).where(turns.c.turn_id.in_(ids))).rowcount for ids in _chunks(turn_ids)
    )
    return counts


def _scrub_drift(conn: Connection, turn_ids: Sequence[str]) -> int:
    """Drop the deleted turns from drift clusters' member lists and their questions from the examples."""
    gone = set(turn_ids)
    questions: set[str] = set()
    for ids in _chunks(turn_ids):
        for row in conn.execute(
            select(turns.c.user_message, turns.c.standalone_question).where(turns.c.turn_id.in_(ids))
        ):
            questions.update(q for q in (row.user_message, row.standalone_question) if q)
    t = table("drift_clusters", column("cluster_id"), column("examples", JSON), column("turn_ids", JSON))
    scrubbed = 0
    for cluster in conn.execute(select(t.c.cluster_id, t.c.examples, t.c.turn_ids)).all():
        members: list[Any] = list(cluster.turn_ids or [])
        if not gone.intersection(members):
            continue
        examples = [e for e in (cluster.examples or []) if e not in questions]
        keep = [m for m in members if m not in gone]
        conn.execute(
            update(t).where(t.c.cluster_id == cluster.cluster_id).values(examples=examples, turn_ids=keep)
        )
        scrubbed += 1
    return scrubbed
