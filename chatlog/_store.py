"""The chat log: the product's durable source of truth for every turn and every piece of feedback.

Drift detection, evaluation and labeling all read from here, so a turn row carries everything they
need: the query embedding, the retrieved chunks with their scores and text, token counts and the
latency breakdown. A turn is inserted (status ``in_progress``) before the model is called and
updated before the response completes, so a crash mid-answer still leaves the question behind.

SQLite in WAL mode is the embedded default; any SQLAlchemy URL (PostgreSQL via psycopg2) works.
Other modules add their own tables to :data:`metadata` and create them with ``checkfirst``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
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
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine

metadata = MetaData()

#: Turn statuses. ``in_progress`` rows are turns whose answer has not completed (yet, or ever).
STATUS_IN_PROGRESS = "in_progress"
STATUS_OK = "ok"
STATUS_NO_CONTEXT = "no_context"
STATUS_REJECTED = "rejected"
STATUS_ERROR = "error"

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


class UnknownTurnError(LookupError):
    """Feedback or a lookup named a turn id the log does not hold."""


class UnknownConversationError(LookupError):
    """A turn named a conversation that does not exist or was deleted."""


def now() -> datetime:
    """Timezone-aware UTC now (the log stores UTC everywhere)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A fresh random id for a turn or conversation."""
    return uuid.uuid4().hex


def encode_vector(vector: Sequence[float] | np.ndarray | None) -> bytes | None:
    """Pack an embedding as float32 bytes (1.5 KB for 384 dimensions, portable across databases)."""
    if vector is None:
        return None
    return np.asarray(vector, dtype="<f4").tobytes()


def decode_vector(blob: bytes | None) -> np.ndarray | None:
    """Unpack an embedding written by :func:`encode_vector`."""
    if blob is None:
        return None
    return np.frombuffer(blob, dtype="<f4")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets the app write while drift/eval jobs read; NORMAL sync is durable across app crashes.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; SQLite gets WAL mode and its parent folder created."""
    if url.startswith("sqlite"):
        from pathlib import Path

        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if url.startswith("postgresql"):
        try:
            import psycopg2  # noqa: F401
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("PostgreSQL chat log needs: pip install 'ragloop[postgres]'") from exc
    return create_engine(url, pool_pre_ping=True)


class ChatLog:
    """Reads and writes turns, conversations and feedback."""

    def __init__(self, url: str) -> None:
        """Connect to ``url`` and create the tables that do not exist yet."""
        self.url = url
        self.engine = make_engine(url)
        metadata.create_all(self.engine, tables=[conversations, turns, feedback], checkfirst=True)

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # --- conversations -------------------------------------------------------------------------
    def create_conversation(self, conversation_id: str | None = None) -> str:
        """Start a conversation and return its id."""
        cid = conversation_id or new_id()
        with self.engine.begin() as conn:
            conn.execute(insert(conversations).values(conversation_id=cid, created_at=now()))
        return cid

    def conversation_exists(self, conversation_id: str) -> bool:
        """True when the conversation exists and was not deleted."""
        with self.engine.connect() as conn:
            row = conn.execute(
                select(conversations.c.deleted_at).where(conversations.c.conversation_id == conversation_id)
            ).first()
        return row is not None and row.deleted_at is None

    def delete_conversation(self, conversation_id: str) -> bool:
        """Mark a conversation deleted (its turns stay for monitoring); False if it was unknown."""
        with self.engine.begin() as conn:
            res = conn.execute(
                update(conversations)
                .where(
                    conversations.c.conversation_id == conversation_id, conversations.c.deleted_at.is_(None)
                )
                .values(deleted_at=now())
            )
        return bool(res.rowcount)

    # --- turns ---------------------------------------------------------------------------------
    def start_turn(self, **fields: Any) -> str:
        """Insert a turn; ``turn_id``, ``created_at`` and ``status`` are filled in when missing."""
        fields.setdefault("turn_id", new_id())
        fields.setdefault("created_at", now())
        fields.setdefault("status", STATUS_IN_PROGRESS)
        for key in ("query_embedding", "answer_embedding"):
            if key in fields and not isinstance(fields[key], bytes | type(None)):
                fields[key] = encode_vector(fields[key])
        with self.engine.begin() as conn:
            conn.execute(insert(turns).values(**fields))
        return str(fields["turn_id"])

    def update_turn(self, turn_id: str, **fields: Any) -> None:
        """Update columns of a turn (vectors are encoded)."""
        for key in ("query_embedding", "answer_embedding"):
            if key in fields and not isinstance(fields[key], bytes | type(None)):
                fields[key] = encode_vector(fields[key])
        with self.engine.begin() as conn:
            conn.execute(update(turns).where(turns.c.turn_id == turn_id).values(**fields))

    def finish_turn(self, turn_id: str, status: str, **fields: Any) -> None:
        """Record a turn's outcome and completion time."""
        self.update_turn(turn_id, status=status, completed_at=now(), **fields)

    def get_turn(self, turn_id: str) -> dict[str, Any] | None:
        """One turn as a dict (vectors decoded), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(turns).where(turns.c.turn_id == turn_id)).mappings().first()
        return _turn_dict(row) if row else None

    def history(self, conversation_id: str, limit: int) -> list[tuple[str, str]]:
        """The last ``limit`` completed (question, answer) pairs of a conversation, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(turns.c.user_message, turns.c.answer)
                .where(turns.c.conversation_id == conversation_id, turns.c.status == STATUS_OK)
                .order_by(turns.c.created_at.desc())
                .limit(limit)
            ).all()
        return [(r.user_message, r.answer or "") for r in reversed(rows)]

    def iter_turns(
        self,
        since: datetime | None = None,
        until: datetime | None = None,
        statuses: Sequence[str] | None = None,
        batch_size: int = 1000,
    ) -> Iterator[dict[str, Any]]:
        """Stream turns created in ``[since, until)`` in creation order, vectors decoded."""
        query = select(turns).order_by(turns.c.created_at)
        if since is not None:
            query = query.where(turns.c.created_at >= since)
        if until is not None:
            query = query.where(turns.c.created_at < until)
        if statuses:
            query = query.where(turns.c.status.in_(list(statuses)))
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch_size).execute(query).mappings()
            for row in result:
                yield _turn_dict(row)

    def count_turns(self) -> int:
        """Number of turns logged."""
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(turns)).scalar_one())

    # --- feedback ------------------------------------------------------------------------------
    def add_feedback(self, turn_id: str, value: int, comment: str | None = None, source: str = "api") -> int:
        """Attach thumbs up (+1) or down (-1) and an optional comment to a turn.

        Raises:
            UnknownTurnError: no turn has this id.
            ValueError: ``value`` is not +1 or -1.
        """
        if value not in (1, -1):
            raise ValueError("feedback value must be 1 (thumbs up) or -1 (thumbs down)")
        with self.engine.begin() as conn:
            exists = conn.execute(select(turns.c.turn_id).where(turns.c.turn_id == turn_id)).first()
            if exists is None:
                raise UnknownTurnError(turn_id)
            res = conn.execute(
                insert(feedback).values(
                    turn_id=turn_id, created_at=now(), value=value, comment=comment or None, source=source
                )
            )
        key = res.inserted_primary_key
        assert key is not None  # an INSERT always reports its key
        return int(key[0])

    def feedback_for(self, turn_id: str) -> list[dict[str, Any]]:
        """All feedback rows of a turn, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(feedback).where(feedback.c.turn_id == turn_id).order_by(feedback.c.feedback_id)
            ).mappings()
            return [dict(r) for r in rows]


def _turn_dict(row: Any) -> dict[str, Any]:
    out = dict(row)
    out["query_embedding"] = decode_vector(out.get("query_embedding"))
    out["answer_embedding"] = decode_vector(out.get("answer_embedding"))
    return out
