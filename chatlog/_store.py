"""The chat log: the product's durable source of truth for every turn and every piece of feedback.

Drift detection, evaluation and labeling all read from here, so a turn row carries everything they
need: the query embedding, the retrieved chunks with their scores and text, token counts and the
latency breakdown. A turn is inserted (status ``in_progress``) before the model is called and
updated before the response completes, so a crash mid-answer still leaves the question behind.

SQLite in WAL mode is the embedded default; any SQLAlchemy URL (PostgreSQL via psycopg2) works.
Other modules add their own tables to :data:`metadata`; the schema of all of them is created and
changed only by the Alembic revisions in ``chatlog/migrations`` (see ``chatlog._migrate``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
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
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from chatlog._base import metadata, new_id, now, write_transaction
from chatlog._migrate import ensure_schema
from chatlog.outbox import enqueue

#: Turn statuses. ``in_progress`` rows are turns whose answer has not completed (yet, or ever).
STATUS_IN_PROGRESS = "in_progress"
STATUS_OK = "ok"
STATUS_NO_CONTEXT = "no_context"
STATUS_REJECTED = "rejected"
STATUS_ERROR = "error"
#: A turn that never finished: cancelled by its client or the server, or left by a crash.
STATUS_CANCELLED = "cancelled"

conversations = Table(
    "conversations",
    metadata,
    Column("conversation_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("deleted_at", DateTime(timezone=True)),
    # Who owns the conversation: the authenticated user, else an anonymous cookie id (0005).
    Column("user_id", String(200), index=True),
    Column("title", Text),
    Column("updated_at", DateTime(timezone=True)),
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
    # 0005: verified citations [{"sentence", "source", "score"}], what the grounding gate did
    # ("passed", "retried", "extractive", "warned"), the question's language (ISO 639-1), the turn
    # this one regenerates, and flags such as {"injection": true}.
    Column("citations", JSON),
    Column("gate", String(32)),
    Column("language", String(16)),
    Column("retry_of", String(64), index=True),
    Column("flags", JSON),
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
    # Who rated: the API caller's rater id, the UI session; "legacy:<id>" for rows before 0003.
    Column("rater", String(200), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("turn_id", "rater", name="uq_feedback_turn_rater"),
)


class UnknownTurnError(LookupError):
    """Feedback or a lookup named a turn id the log does not hold."""


class UnknownConversationError(LookupError):
    """A turn named a conversation that does not exist or was deleted."""


@dataclass(frozen=True)
class FeedbackResult:
    """What :meth:`ChatLog.add_feedback` did.

    Attributes:
        feedback_id: the rater's one feedback row of the turn.
        created: True when the rater had not rated the turn before.
        previous_value: the rater's value before this call (None when ``created``).
        value: the value now stored.
    """

    feedback_id: int
    created: bool
    previous_value: int | None
    value: int

    @property
    def changed(self) -> bool:
        """True when the rater's value is new or different (a comment alone changes nothing)."""
        return self.previous_value != self.value


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
    # Deleted and overwritten content is zeroed on its page, not left in the file (a deleted
    # conversation's text must not be readable in chatlog.db; see chatlog._purge.scrub_sqlite).
    cur.execute("PRAGMA secure_delete=ON")
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

    def __init__(self, url: str, *, auto_upgrade: bool | None = None) -> None:
        """Connect to ``url`` and bring its schema to the newest revision.

        Args:
            url: SQLAlchemy URL (``sqlite:///path`` or ``postgresql+psycopg2://...``).
            auto_upgrade: upgrade an older schema at once; False refuses to start on one instead.
                None (the default) takes ``Settings().db_auto_upgrade`` (RAGLOOP_DB_AUTO_UPGRADE),
                so every entry point that opens the log honours the switch.

        Raises:
            SchemaError: the schema is older and ``auto_upgrade`` is False, or newer than this code.
        """
        self.url = url
        if auto_upgrade is None:
            from ragloop.settings import Settings

            auto_upgrade = Settings().db_auto_upgrade
        self.engine = make_engine(url)
        try:
            ensure_schema(self.engine, auto_upgrade=auto_upgrade)
        except BaseException:
            self.engine.dispose()
            raise
        self._routes: dict[str, tuple[str, ...]] = {}
        self._listeners: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        #: Seconds after a deletion when ``erase`` sinks are asked again (spans still in flight to
        #: a trace store land after the first erase); the Phoenix sink sets it from its settings.
        self.erase_settle_s = 60.0

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()

    # --- outbox routing ------------------------------------------------------------------------
    def set_routes(self, routes: Mapping[str, Sequence[str]]) -> None:
        """Which sinks take each item kind, e.g. ``{"feedback": ["langsmith", "argilla"]}``.

        The composition root sets this from the active sinks' ``kinds``; producers read it with
        :meth:`routes` to enqueue an outbox item per sink.
        """
        with self._lock:
            self._routes = {kind: tuple(dict.fromkeys(names)) for kind, names in routes.items()}

    def routes(self, kind: str) -> tuple[str, ...]:
        """The sink names that take items of ``kind`` (empty: nothing to enqueue)."""
        return self._routes.get(kind, ())

    def on_enqueue(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` after a transaction of this log enqueued outbox items (wakes workers)."""
        with self._lock:
            self._listeners.append(listener)

    def notify_enqueued(self) -> None:
        """Tell the :meth:`on_enqueue` listeners that items are waiting (listener errors are dropped)."""
        for listener in list(self._listeners):
            try:
                listener()
            except Exception:  # noqa: BLE001 - a wake-up hook must never fail the producer
                pass

    # --- conversations -------------------------------------------------------------------------
    def create_conversation(
        self, conversation_id: str | None = None, *, user_id: str | None = None, title: str | None = None
    ) -> str:
        """Start a conversation and return its id.

        Args:
            conversation_id: the id to use (a fresh one when None).
            user_id: its owner: the authenticated user, or the browser's anonymous id.
            title: a display title (the UI sets it from the first question).
        """
        cid = conversation_id or new_id()
        stamp = now()
        with self.engine.begin() as conn:
            conn.execute(
                insert(conversations).values(
                    conversation_id=cid, created_at=stamp, updated_at=stamp, user_id=user_id, title=title
                )
            )
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

    def get_conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """A live (not deleted) conversation's row as a dict, or None."""
        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(conversations).where(
                        conversations.c.conversation_id == conversation_id,
                        conversations.c.deleted_at.is_(None),
                    )
                )
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def owns_conversation(self, conversation_id: str, user_id: str) -> bool:
        """True when the live conversation belongs to ``user_id``."""
        row = self.get_conversation(conversation_id)
        return row is not None and row["user_id"] == user_id

    def list_conversations(
        self, user_id: str, *, query: str | None = None, limit: int = 50
    ) -> list[dict[str, Any]]:
        """``user_id``'s live conversations, most recently updated first.

        Args:
            user_id: the owner (``conversations.user_id``); other users' rows are never returned.
            query: keep conversations whose title, or any question or answer, contains this text
                (case-insensitive); None or blank keeps all.
            limit: at most this many.

        Returns:
            Dicts with ``conversation_id``, ``title``, ``created_at``, ``updated_at``.
        """
        cols = [conversations.c.conversation_id, conversations.c.title]
        stmt = select(*cols, conversations.c.created_at, conversations.c.updated_at).where(
            conversations.c.user_id == user_id, conversations.c.deleted_at.is_(None)
        )
        text = (query or "").strip().lower()
        if text:
            in_turns = select(turns.c.conversation_id).where(
                func.lower(turns.c.user_message).contains(text, autoescape=True)
                | func.lower(func.coalesce(turns.c.answer, "")).contains(text, autoescape=True)
            )
            stmt = stmt.where(
                func.lower(func.coalesce(conversations.c.title, "")).contains(text, autoescape=True)
                | conversations.c.conversation_id.in_(in_turns)
            )
        order = func.coalesce(conversations.c.updated_at, conversations.c.created_at)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(order.desc()).limit(limit)).mappings().all()
        return [dict(r) for r in rows]

    def rename_conversation(self, conversation_id: str, user_id: str, title: str) -> bool:
        """Set the title of ``user_id``'s conversation; False when it is not theirs (or gone)."""
        with self.engine.begin() as conn:
            res = conn.execute(
                update(conversations)
                .where(
                    conversations.c.conversation_id == conversation_id,
                    conversations.c.user_id == user_id,
                    conversations.c.deleted_at.is_(None),
                )
                .values(title=title.strip()[:200] or None)
            )
        return bool(res.rowcount)

    def touch_conversation(self, conversation_id: str, *, title: str | None = None) -> None:
        """Mark a conversation updated now; set its title when it has none yet."""
        with self.engine.begin() as conn:
            conn.execute(
                update(conversations)
                .where(conversations.c.conversation_id == conversation_id)
                .values(updated_at=now())
            )
            if title:
                conn.execute(
                    update(conversations)
                    .where(
                        conversations.c.conversation_id == conversation_id, conversations.c.title.is_(None)
                    )
                    .values(title=title[:200])
                )

    def conversation_turns(self, conversation_id: str) -> list[dict[str, Any]]:
        """Every turn of a conversation, oldest first, without the embeddings (for reopening it)."""
        cols = [c for c in turns.c if c.name not in ("query_embedding", "answer_embedding")]
        with self.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(*cols)
                    .where(turns.c.conversation_id == conversation_id)
                    .order_by(turns.c.created_at, turns.c.turn_id)
                )
                .mappings()
                .all()
            )
        return [dict(r) for r in rows]

    def purge_conversation(self, conversation_id: str, user_id: str | None) -> dict[str, int] | None:
        """Delete a conversation and its content everywhere the product stores it.

        In one transaction: the turns (question and answer texts, passages, embeddings), their
        feedback, evaluations, labeling rows (selections, pairs, labels), every outbox item about
        them (keys ``<turn>`` and ``<turn>:<...>``), the questions quoted as drift-cluster
        examples, and the conversation row itself. Other packages' tables are addressed by name
        (their schema is this package's migrations), so this leaf imports none of them.

        Outside the chat log: in the same transaction an ``erase`` outbox item (payload
        ``conversation_id``, ``turn_ids``, ``trace_ids``) is enqueued for every sink routed
        ``erase`` (the Phoenix sink deletes the traces), once now and once
        :attr:`erase_settle_s` later. On SQLite, after the commit, the WAL is checkpointed and
        truncated: with ``secure_delete`` on, no byte of the deleted text stays in either file.

        Args:
            conversation_id: the conversation.
            user_id: its owner; None skips the ownership check (an operator's command).

        Returns:
            Rows removed per table, or None when the conversation is not ``user_id``'s (or unknown).
            Also ``traces`` (distinct trace ids of the turns), ``erase:<sink>`` (erase requests
            queued), ``sent:<sink>`` (items about these turns the sink had already received: their
            copies stay at the vendor) and, on SQLite, ``sqlite_scrubbed`` (1: the WAL was
            truncated; 0: a reader held it, the deleted text may stay in it until the next one).
        """
        from chatlog._purge import delivered_copies, enqueue_erasure, purge_turns, scrub_sqlite

        with write_transaction(self.engine) as conn:
            where = [conversations.c.conversation_id == conversation_id]
            if user_id is not None:
                where.append(conversations.c.user_id == user_id)
            if conn.execute(select(conversations.c.conversation_id).where(*where)).first() is None:
                return None
            rows = conn.execute(
                select(turns.c.turn_id, turns.c.trace_id).where(turns.c.conversation_id == conversation_id)
            ).all()
            ids = [r.turn_id for r in rows]
            sent = delivered_copies(conn, ids)
            counts = purge_turns(conn, ids)
            counts["conversations"] = conn.execute(
                conversations.delete().where(conversations.c.conversation_id == conversation_id)
            ).rowcount
            counts.update(sent)
            trace_ids = sorted({r.trace_id for r in rows if r.trace_id})
            counts["traces"] = len(trace_ids)
            sinks = self.routes("erase")
            counts.update(enqueue_erasure(conn, conversation_id, trace_ids, sinks, self.erase_settle_s, ids))
        if any(k.startswith("erase:") for k in counts):
            self.notify_enqueued()
        if self.engine.dialect.name == "sqlite":
            counts["sqlite_scrubbed"] = int(scrub_sqlite(self.engine))
        return counts

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
        """Record a turn's outcome and completion time.

        In the same transaction a ``turn`` outbox item (key: the turn id, payload ``turn_id`` and
        ``status``; the sink reads the row) is enqueued for every sink routed ``turn``.
        """
        for key in ("query_embedding", "answer_embedding"):
            if key in fields and not isinstance(fields[key], bytes | type(None)):
                fields[key] = encode_vector(fields[key])
        sinks = self.routes("turn")
        with self.engine.begin() as conn:
            conn.execute(
                update(turns)
                .where(turns.c.turn_id == turn_id)
                .values(status=status, completed_at=now(), **fields)
            )
            payload = {"turn_id": turn_id, "status": status}
            enqueued = enqueue(conn, kind="turn", key=turn_id, payload=payload, sinks=sinks)
        if enqueued:
            self.notify_enqueued()

    def get_turn(self, turn_id: str) -> dict[str, Any] | None:
        """One turn as a dict (vectors decoded), or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(turns).where(turns.c.turn_id == turn_id)).mappings().first()
        return _turn_dict(row) if row else None

    def history(self, conversation_id: str, limit: int) -> list[tuple[str, str]]:
        """The last ``limit`` completed (question, answer) pairs of a conversation, oldest first.

        A turn another turn regenerated (``retry_of``: a retry, an edited question) is left out.
        """
        retried = select(turns.c.retry_of).where(
            turns.c.conversation_id == conversation_id, turns.c.retry_of.is_not(None)
        )
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(turns.c.user_message, turns.c.answer)
                .where(
                    turns.c.conversation_id == conversation_id,
                    turns.c.status == STATUS_OK,
                    turns.c.turn_id.not_in(retried),
                )
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

    def close_interrupted_turns(self, older_than_s: float = 0.0) -> int:
        """Mark turns left ``in_progress`` (by a crash) ``cancelled``, error type ``interrupted``.

        Call at start-up, before serving. With one app process, any turn still in progress then
        belongs to a process that is gone (``older_than_s=0``). When several app processes share
        one database, pass the longest a live turn can take (the LLM timeout plus a margin), so a
        starting process leaves the turns its running peers are answering alone.

        Args:
            older_than_s: only turns created at least this many seconds ago are closed.

        Returns:
            How many turns were closed.
        """
        cutoff = now() - timedelta(seconds=max(0.0, older_than_s))
        with self.engine.begin() as conn:
            res = conn.execute(
                update(turns)
                .where(turns.c.status == STATUS_IN_PROGRESS, turns.c.created_at <= cutoff)
                .values(
                    status=STATUS_CANCELLED,
                    error_type="interrupted",
                    error="the process ended before the turn finished",
                    completed_at=now(),
                )
            )
        return int(res.rowcount or 0)

    # --- feedback ------------------------------------------------------------------------------
    def add_feedback(
        self,
        turn_id: str,
        value: int,
        comment: str | None = None,
        *,
        rater: str = "anonymous",
        source: str = "api",
    ) -> FeedbackResult:
        """Set ``rater``'s thumbs up (+1) or down (-1) on a turn: one row per (turn, rater).

        A second call by the same rater updates that row in place (a toggle, or a comment sent
        after the thumbs). In the same transaction a ``feedback`` outbox item keyed
        ``"<turn_id>:<rater>"`` is enqueued for every sink routed for feedback, so a sink sees the
        update of one rating, never a second rating.

        Args:
            turn_id: the rated turn.
            value: +1 or -1.
            comment: a comment to attach; None keeps the row's comment, "" clears it.
            rater: who rated (API body field ``rater``, a UI session id); at most 200 characters.
            source: where the rating came from ("api", "ui").

        Returns:
            The row id, whether it was created, and the rater's previous value.

        Raises:
            UnknownTurnError: no turn has this id.
            ValueError: ``value`` is not +1 or -1, or ``rater`` is empty or too long.
        """
        if value not in (1, -1):
            raise ValueError("feedback value must be 1 (thumbs up) or -1 (thumbs down)")
        if not rater or len(rater) > 200:
            raise ValueError("feedback rater must be 1 to 200 characters")
        for attempt in range(2):
            try:
                result, enqueued = self._upsert_feedback(turn_id, value, comment, rater, source)
                break
            except IntegrityError:
                if attempt:  # a concurrent first rating by the same rater won twice: give up
                    raise
        if enqueued:
            self.notify_enqueued()
        return result

    def _upsert_feedback(
        self, turn_id: str, value: int, comment: str | None, rater: str, source: str
    ) -> tuple[FeedbackResult, bool]:
        stamp = now()
        with write_transaction(self.engine) as conn:
            turn = conn.execute(
                select(turns.c.trace_id, turns.c.span_id).where(turns.c.turn_id == turn_id)
            ).first()
            if turn is None:
                raise UnknownTurnError(turn_id)
            query = select(feedback.c.feedback_id, feedback.c.value, feedback.c.comment).where(
                feedback.c.turn_id == turn_id, feedback.c.rater == rater
            )
            if conn.dialect.name != "sqlite":
                query = query.with_for_update()
            row = conn.execute(query).first()
            if row is None:
                res = conn.execute(
                    insert(feedback).values(
                        turn_id=turn_id,
                        rater=rater,
                        created_at=stamp,
                        updated_at=stamp,
                        value=value,
                        comment=comment or None,
                        source=source,
                    )
                )
                key = res.inserted_primary_key
                assert key is not None  # an INSERT always reports its key
                result = FeedbackResult(int(key[0]), True, None, value)
                stored_comment = comment or None
            else:
                stored_comment = row.comment if comment is None else (comment or None)
                conn.execute(
                    update(feedback)
                    .where(feedback.c.feedback_id == row.feedback_id)
                    .values(value=value, comment=stored_comment, source=source, updated_at=stamp)
                )
                result = FeedbackResult(int(row.feedback_id), False, int(row.value), value)
            sinks = self.routes("feedback")
            payload = {
                "feedback_id": result.feedback_id,
                "turn_id": turn_id,
                "rater": rater,
                "value": value,
                "comment": stored_comment,
                "source": source,
                "trace_id": turn.trace_id,
                "span_id": turn.span_id,
            }
            enqueued = enqueue(conn, kind="feedback", key=f"{turn_id}:{rater}", payload=payload, sinks=sinks)
        return result, bool(enqueued)

    def feedback_for(self, turn_id: str) -> list[dict[str, Any]]:
        """All feedback rows of a turn (one per rater), oldest first."""
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
