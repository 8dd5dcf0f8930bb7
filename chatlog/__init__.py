"""The chat log: the durable store of turns, feedback and everything derived from them.

A leaf package: it imports none of ``chatbot``, ``retrieval``, ``monitoring`` or ``eval``. Other
packages register their tables on :data:`metadata` (evaluations, drift runs, the outbox, labels),
and the schema of every one of them is versioned by the Alembic revisions in
``chatlog/migrations``.

Public API:
    ChatLog: reads and writes conversations, turns and feedback.
    make_engine: a SQLAlchemy engine for a URL (SQLite gets WAL mode).
    metadata, conversations, turns, feedback: the tables.
    STATUS_*: turn statuses.
    encode_vector, decode_vector, new_id, now: helpers shared by every package.
    UnknownTurnError, UnknownConversationError: lookups of ids the log does not hold.
"""

from chatlog._store import (
    STATUS_ERROR,
    STATUS_IN_PROGRESS,
    STATUS_NO_CONTEXT,
    STATUS_OK,
    STATUS_REJECTED,
    ChatLog,
    UnknownConversationError,
    UnknownTurnError,
    conversations,
    decode_vector,
    encode_vector,
    feedback,
    make_engine,
    metadata,
    new_id,
    now,
    turns,
)

__all__ = [
    "STATUS_ERROR",
    "STATUS_IN_PROGRESS",
    "STATUS_NO_CONTEXT",
    "STATUS_OK",
    "STATUS_REJECTED",
    "ChatLog",
    "UnknownConversationError",
    "UnknownTurnError",
    "conversations",
    "decode_vector",
    "encode_vector",
    "feedback",
    "make_engine",
    "metadata",
    "new_id",
    "now",
    "turns",
]
