"""Deleting turns' content from every table the product keeps it in (a user deletes a conversation).

The tables of other packages (evaluations, labeling, drift) are named here as lightweight
``table()`` constructs: their schema is this package's migrations, and the chat log stays a leaf.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import JSON, column, delete, inspect, or_, select, table, update
from sqlalchemy.engine import Connection

from chatlog._store import feedback, turns
from chatlog.outbox import outbox

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
    # Outbox keys are "<turn>", "<turn>:<rater>" (feedback), "<turn>:<evaluator>", "<pair>" (= turn).
    removed = 0
    for ids in _chunks(turn_ids):
        conds = [outbox.c.key.in_(ids), *[outbox.c.key.startswith(f"{i}:", autoescape=True) for i in ids]]
        removed += conn.execute(delete(outbox).where(or_(*conds))).rowcount
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
