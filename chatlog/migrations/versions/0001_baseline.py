"""Baseline: the chat-log schema as it was on main before the seams issue.

conversations, turns, feedback (chat log); evaluations (eval); drift_runs, drift_clusters (drift);
langsmith_outbox (the LangSmith adapter). The pre-issue code created these lazily with
``create_all(checkfirst=True)``, each package only its own tables, so a database it made may hold
any subset of them: this revision creates each table (and its indexes) only when it is missing, and
leaves an existing one untouched. A fresh database gets all of them.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def _conversations() -> None:
    op.create_table(
        "conversations",
        sa.Column("conversation_id", sa.String(64), primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("deleted_at", TZ),
    )


def _turns() -> None:
    op.create_table(
        "turns",
        sa.Column("turn_id", sa.String(64), primary_key=True),
        sa.Column("conversation_id", sa.String(64)),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("completed_at", TZ),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("user_message", sa.Text, nullable=False),
        sa.Column("standalone_question", sa.Text),
        sa.Column("query_embedding", sa.LargeBinary),
        sa.Column("answer_embedding", sa.LargeBinary),
        sa.Column("embedding_model", sa.String(200)),
        sa.Column("retrieved", sa.JSON),
        sa.Column("cited", sa.JSON),
        sa.Column("prompt_version", sa.String(64)),
        sa.Column("model", sa.String(200)),
        sa.Column("index_version", sa.String(64)),
        sa.Column("answer", sa.Text),
        sa.Column("input_tokens", sa.Integer),
        sa.Column("output_tokens", sa.Integer),
        sa.Column("retrieval_ms", sa.Float),
        sa.Column("ttft_ms", sa.Float),
        sa.Column("total_ms", sa.Float),
        sa.Column("error_type", sa.String(64)),
        sa.Column("error", sa.Text),
        sa.Column("trace_id", sa.String(32)),
        sa.Column("span_id", sa.String(16)),
        sa.Column("extra", sa.JSON),
    )
    op.create_index("ix_turns_conversation_id", "turns", ["conversation_id"])
    op.create_index("ix_turns_created_at", "turns", ["created_at"])
    op.create_index("ix_turns_status", "turns", ["status"])
    op.create_index("ix_turns_trace_id", "turns", ["trace_id"])


def _feedback() -> None:
    op.create_table(
        "feedback",
        sa.Column("feedback_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("turn_id", sa.String(64), sa.ForeignKey("turns.turn_id"), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("value", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("source", sa.String(32)),
        sa.Column("exported", sa.Boolean),
    )
    op.create_index("ix_feedback_turn_id", "feedback", ["turn_id"])


def _evaluations() -> None:
    op.create_table(
        "evaluations",
        sa.Column("evaluation_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("turn_id", sa.String(64), sa.ForeignKey("turns.turn_id"), nullable=False),
        sa.Column("evaluator", sa.String(64), nullable=False),
        sa.Column("score", sa.Float),
        sa.Column("details", sa.JSON),
        sa.Column("error", sa.Text),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("needs_judge", sa.Boolean, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("turn_id", "evaluator", name="uq_evaluations_turn_evaluator"),
    )
    op.create_index("ix_evaluations_turn_id", "evaluations", ["turn_id"])
    op.create_index("ix_evaluations_created_at", "evaluations", ["created_at"])


def _drift_runs() -> None:
    op.create_table(
        "drift_runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("window_start", TZ),
        sa.Column("window_end", TZ),
        sa.Column("reference", sa.Text),
        sa.Column("n_reference", sa.Integer),
        sa.Column("n_current", sa.Integer),
        sa.Column("alarm", sa.Boolean, nullable=False),
        sa.Column("query_p_value", sa.Float),
        sa.Column("answer_p_value", sa.Float),
        sa.Column("features_p_value", sa.Float),
        sa.Column("tests", sa.JSON),
        sa.Column("snapshot_id", sa.String(64)),
        sa.Column("report_path", sa.Text),
        sa.Column("plot_path", sa.Text),
    )
    op.create_index("ix_drift_runs_created_at", "drift_runs", ["created_at"])


def _drift_clusters() -> None:
    op.create_table(
        "drift_clusters",
        sa.Column("cluster_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("rank", sa.Integer, nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("current_share", sa.Float),
        sa.Column("reference_share", sa.Float),
        sa.Column("excess", sa.Float),
        sa.Column("examples", sa.JSON),
        sa.Column("turn_ids", sa.JSON),
    )
    op.create_index("ix_drift_clusters_run_id", "drift_clusters", ["run_id"])


def _langsmith_outbox() -> None:
    op.create_table(
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


#: In creation order (turns before the tables that reference it).
TABLES: dict[str, Callable[[], None]] = {
    "conversations": _conversations,
    "turns": _turns,
    "feedback": _feedback,
    "evaluations": _evaluations,
    "drift_runs": _drift_runs,
    "drift_clusters": _drift_clusters,
    "langsmith_outbox": _langsmith_outbox,
}


def upgrade() -> None:
    """Create each baseline table the database lacks."""
    existing = set(sa.inspect(op.get_bind()).get_table_names())
    for name, create in TABLES.items():
        if name not in existing:
            create()


def downgrade() -> None:
    """Drop every baseline table."""
    for name in reversed(TABLES):
        op.drop_table(name)
