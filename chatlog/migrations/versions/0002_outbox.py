"""The generic ``outbox`` table; the ``langsmith_outbox`` rows move into it.

One row per (sink, kind, key). A legacy LangSmith row becomes a ``langsmith`` item of kind
``feedback`` (its key was ``user_score``) or ``evaluation`` (any other key), keyed by its old
feedback UUID, which the payload keeps so a re-delivery stays idempotent on LangSmith's side.
Its attempts, last error and due time carry over; undelivered rows are ``pending``, delivered
ones ``delivered`` (kept as history: no row is lost).

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)

_legacy = sa.table(
    "langsmith_outbox",
    sa.column("outbox_id", sa.Integer),
    sa.column("feedback_uuid", sa.String),
    sa.column("turn_id", sa.String),
    sa.column("run_id", sa.String),
    sa.column("key", sa.String),
    sa.column("score", sa.Float),
    sa.column("comment", sa.Text),
    sa.column("created_at", TZ),
    sa.column("attempts", sa.Integer),
    sa.column("next_attempt_at", TZ),
    sa.column("delivered_at", TZ),
    sa.column("last_error", sa.Text),
)


def _create_outbox() -> sa.Table:
    return op.create_table(
        "outbox",
        sa.Column("outbox_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sink", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("payload", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("lease_until", TZ),
        sa.Column("leased_by", sa.String(64)),
        sa.Column("delivered_at", TZ),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("sink", "kind", "key", name="uq_outbox_sink_kind_key"),
    )


def upgrade() -> None:
    """Create ``outbox`` and move every LangSmith row into it (undelivered ones pending)."""
    outbox = _create_outbox()
    op.create_index("ix_outbox_due", "outbox", ["status", "next_attempt_at"])
    bind = op.get_bind()
    rows = bind.execute(sa.select(_legacy).order_by(_legacy.c.outbox_id)).mappings()
    moved = []
    for r in rows:
        feedback = r["key"] == "user_score"
        payload: dict[str, object] = {
            "turn_id": r["turn_id"],
            "run_id": r["run_id"],
            "comment": r["comment"],
            "feedback_id": r["feedback_uuid"],
        }
        if feedback:
            score = r["score"]
            payload.update(rater="legacy", value=1 if score is not None and score > 0 else -1)
        else:
            payload.update(evaluator=r["key"], score=r["score"])
        moved.append(
            {
                "sink": "langsmith",
                "kind": "feedback" if feedback else "evaluation",
                "key": f"legacy:{r['feedback_uuid']}",
                "payload": payload,
                "status": "pending" if r["delivered_at"] is None else "delivered",
                "version": 1,
                "attempts": r["attempts"] or 0,
                "created_at": r["created_at"],
                "updated_at": r["delivered_at"] or r["created_at"],
                "next_attempt_at": r["next_attempt_at"],
                "delivered_at": r["delivered_at"],
                "last_error": r["last_error"],
            }
        )
    if moved:
        op.bulk_insert(outbox, moved)
    op.drop_index("ix_langsmith_outbox_turn_id", table_name="langsmith_outbox")
    op.drop_index("ix_langsmith_outbox_next_attempt_at", table_name="langsmith_outbox")
    op.drop_index("ix_langsmith_outbox_delivered_at", table_name="langsmith_outbox")
    op.drop_table("langsmith_outbox")


def downgrade() -> None:
    """Recreate ``langsmith_outbox`` with the LangSmith items; drop ``outbox``."""
    legacy = op.create_table(
        "langsmith_outbox",
        sa.Column("outbox_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("feedback_uuid", sa.String(36), nullable=False, unique=True),
        sa.Column("turn_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(200), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("comment", sa.Text),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=False),
        sa.Column("delivered_at", TZ),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_langsmith_outbox_turn_id", "langsmith_outbox", ["turn_id"])
    op.create_index("ix_langsmith_outbox_next_attempt_at", "langsmith_outbox", ["next_attempt_at"])
    op.create_index("ix_langsmith_outbox_delivered_at", "langsmith_outbox", ["delivered_at"])
    # LangSmith items go back where the old code looks for them (the old table has no room for
    # other sinks, whose items are dropped with the outbox).
    generic = sa.table(
        "outbox",
        sa.column("outbox_id", sa.Integer),
        sa.column("sink", sa.String),
        sa.column("kind", sa.String),
        sa.column("key", sa.String),
        sa.column("payload", sa.JSON),
        sa.column("status", sa.String),
        sa.column("attempts", sa.Integer),
        sa.column("created_at", TZ),
        sa.column("next_attempt_at", TZ),
        sa.column("delivered_at", TZ),
        sa.column("last_error", sa.Text),
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(generic).where(generic.c.sink == "langsmith").order_by(generic.c.outbox_id)
    ).mappings()
    back = []
    for r in rows:
        p = dict(r["payload"] or {})
        turn_id = str(p.get("turn_id", ""))
        score: float | None
        if r["kind"] == "feedback":
            key, score = "user_score", 1.0 if int(p.get("value", 0)) > 0 else 0.0
        else:
            key, score = str(p.get("evaluator", r["kind"])), p.get("score")
        back.append(
            {
                "feedback_uuid": str(p.get("feedback_id") or _uuid_for(r["kind"], r["key"])),
                "turn_id": turn_id,
                "run_id": str(p.get("run_id") or _run_id(turn_id)),
                "key": key,
                "score": score,
                "comment": p.get("comment"),
                "created_at": r["created_at"],
                "attempts": r["attempts"],
                "next_attempt_at": r["next_attempt_at"],
                "delivered_at": r["delivered_at"] if r["status"] == "delivered" else None,
                "last_error": r["last_error"],
            }
        )
    if back:
        op.bulk_insert(legacy, back)
    op.drop_index("ix_outbox_due", table_name="outbox")
    op.drop_table("outbox")


def _uuid_for(kind: str, key: str) -> str:
    # The same id monitoring._langsmith.LangSmithSink gives the item on LangSmith.
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragloop:langsmith:{kind}:{key}"))


def _run_id(turn_id: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(hex=turn_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ragloop:turn:{turn_id}"))
