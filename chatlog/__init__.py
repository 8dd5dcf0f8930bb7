"""The chat log: the durable store of turns, feedback and everything derived from them.

A leaf package: it imports none of ``chatbot``, ``retrieval``, ``monitoring`` or ``eval``. Other
packages register their tables on :data:`metadata` (evaluations, drift runs, labels), and the
schema of every one of them is versioned by the Alembic revisions in ``chatlog/migrations``
(nobody calls ``create_all``). ``chatlog.outbox`` is the one way out to vendors: the outbox table,
the :class:`~chatlog.outbox.Sink` interface and the worker that delivers.

Public API:
    ChatLog: reads and writes conversations, turns and feedback; upgrades the schema at start-up.
    FeedbackResult: what ``ChatLog.add_feedback`` did (row id, created, previous value).
    make_engine: a SQLAlchemy engine for a URL (SQLite gets WAL mode).
    metadata, conversations, turns, feedback: the tables.
    STATUS_*: turn statuses.
    upgrade, downgrade, current, head, history, Revision, SchemaError: schema migrations.
    encode_vector, decode_vector, new_id, now: helpers shared by every package.
    UnknownTurnError, UnknownConversationError: lookups of ids the log does not hold.
    redact, redact_tree: PII and secret masking for every exporter (the log keeps the original).
    TurnSweeper: closes, while the app runs, the turns a dead process left in progress.
"""

from chatlog._base import metadata, new_id, now
from chatlog._migrate import Revision, SchemaError, current, downgrade, head, history, upgrade
from chatlog._redact import redact, redact_tree
from chatlog._store import (
    STATUS_CANCELLED,
    STATUS_ERROR,
    STATUS_IN_PROGRESS,
    STATUS_NO_CONTEXT,
    STATUS_OK,
    STATUS_REJECTED,
    ChatLog,
    FeedbackResult,
    UnknownConversationError,
    UnknownTurnError,
    conversations,
    decode_vector,
    encode_vector,
    feedback,
    make_engine,
    turns,
)
from chatlog._sweeper import TurnSweeper

__all__ = [
    "STATUS_CANCELLED",
    "STATUS_ERROR",
    "STATUS_IN_PROGRESS",
    "STATUS_NO_CONTEXT",
    "STATUS_OK",
    "STATUS_REJECTED",
    "ChatLog",
    "FeedbackResult",
    "Revision",
    "SchemaError",
    "TurnSweeper",
    "UnknownConversationError",
    "UnknownTurnError",
    "conversations",
    "current",
    "decode_vector",
    "downgrade",
    "encode_vector",
    "feedback",
    "head",
    "history",
    "make_engine",
    "metadata",
    "new_id",
    "now",
    "redact",
    "redact_tree",
    "turns",
    "upgrade",
]
