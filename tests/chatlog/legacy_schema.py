"""The chat-log schema exactly as it landed on main before the seams issue (commit 3e054ea).

Frozen copies of the Table definitions of ``monitoring/chatlog.py``, ``eval/_store.py``,
``monitoring/drift/_store.py`` and ``monitoring/_langsmith.py`` at that commit, on a metadata of
their own: :func:`create_legacy` builds a database the way the pre-issue code did
(``create_all(checkfirst=True)``, no ``alembic_version``). Do not edit: it is history.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Engine

metadata = MetaData()

conversations = Table(
    "conversations",
    metadata,
    Column("conversation_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
)


turns = Table(
    "turns",
    metadata,
    Column("turn_id", String(64), primary_key=True),
    # Not a foreign key: a turn for an unknown conversation is still logged, with its error.
    Column("conversation_id", String(64), index=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("completed_at", DateTime(timezone=True)),
    Column("status", String(32), nullable=False, index=True),
    Column("user_message", Text, nullable=False),
    Column("standalone_question", Text),
    Column("query_embedding", LargeBinary),  # float32 little-endian, see encode_vector
    Column("answer_embedding", LargeBinary),
    Column("embedding_model", String(200)),
    Column("retrieved", JSON),  # [{"chunk_id", "score", "text", "source", "title"}]
    Column("cited", JSON),  # [1-based source numbers the answer cites]
    Column("prompt_version", String(64)),
    Column("model", String(200)),
    Column("index_version", String(64)),
    Column("answer", Text),
    Column("input_tokens", Integer),
    Column("output_tokens", Integer),
    Column("retrieval_ms", Float),
    Column("ttft_ms", Float),
    Column("total_ms", Float),
    Column("error_type", String(64)),
    Column("error", Text),
    Column("trace_id", String(32), index=True),
    Column("span_id", String(16)),
    Column("extra", JSON),
)


feedback = Table(
    "feedback",
    metadata,
    Column("feedback_id", Integer, primary_key=True, autoincrement=True),
    Column("turn_id", String(64), ForeignKey("turns.turn_id"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("value", Integer, nullable=False),  # +1 thumbs up, -1 thumbs down
    Column("comment", Text),
    Column("source", String(32)),  # "ui", "api"
    Column("exported", Boolean, default=False),
)


evaluations = Table(
    "evaluations",
    metadata,
    Column("evaluation_id", Integer, primary_key=True, autoincrement=True),
    Column("turn_id", String(64), ForeignKey("turns.turn_id"), nullable=False, index=True),
    Column("evaluator", String(64), nullable=False),
    Column("score", Float),  # NULL when the evaluator failed: see error
    Column("details", JSON),  # sentences/evidence, version, model
    Column("error", Text),
    Column("flagged", Boolean, nullable=False, default=False),  # below threshold: for the labeling loop
    # Set on the local row of turns sampled for the LLM judge, so the judge's backlog is one query.
    Column("needs_judge", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    UniqueConstraint("turn_id", "evaluator", name="uq_evaluations_turn_evaluator"),
)


drift_runs = Table(
    "drift_runs",
    metadata,
    Column("run_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("window_start", DateTime(timezone=True)),
    Column("window_end", DateTime(timezone=True)),
    Column("reference", Text),  # how the reference was chosen, e.g. "previous:2026-11-25T00..2026-11-26T00"
    Column("n_reference", Integer),
    Column("n_current", Integer),
    Column("alarm", Boolean, nullable=False),
    Column("query_p_value", Float),
    Column("answer_p_value", Float),
    Column("features_p_value", Float),
    Column("tests", JSON),  # [DriftTest.as_dict(), ...]
    Column("snapshot_id", String(64)),
    Column("report_path", Text),
    Column("plot_path", Text),
)


drift_clusters = Table(
    "drift_clusters",
    metadata,
    Column("cluster_id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("rank", Integer, nullable=False),
    Column("size", Integer, nullable=False),
    Column("current_share", Float),
    Column("reference_share", Float),
    Column("excess", Float),
    Column("examples", JSON),  # representative standalone questions, closest to the centroid first
    Column("turn_ids", JSON),  # every member turn
)


langsmith_outbox = Table(
    "langsmith_outbox",
    metadata,
    Column("outbox_id", Integer, primary_key=True, autoincrement=True),
    Column("feedback_uuid", String(36), nullable=False, unique=True),  # idempotent re-delivery
    Column("turn_id", String(64), nullable=False, index=True),
    Column("run_id", String(36), nullable=False),
    Column("key", String(200), nullable=False),
    Column("score", Float),
    Column("comment", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False, index=True),
    Column("delivered_at", DateTime(timezone=True), index=True),
    Column("last_error", Text),
)


#: Every legacy table, creation order.
TABLES = [conversations, turns, feedback, evaluations, drift_runs, drift_clusters, langsmith_outbox]


def create_legacy(engine: Engine, tables: list[Table] | None = None) -> None:
    """Create the pre-issue tables (all, or ``tables``) as the old code did."""
    metadata.create_all(engine, tables=tables or TABLES, checkfirst=True)
