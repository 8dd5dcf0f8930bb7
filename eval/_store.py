"""The ``evaluations`` table: one score (or recorded error) per (turn, evaluator), in the chat log.

It lives on :data:`chatlog.metadata`, beside ``turns``, so the online worker's progress is
durable: a turn is pending for an evaluator exactly while it has no row here, and a restart resumes.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    insert,
    select,
)
from sqlalchemy.exc import IntegrityError

from chatlog import STATUS_OK, ChatLog, metadata, now, turns
from eval._results import EvalResult

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


class EvaluationStore:
    """Reads and writes evaluation rows of one chat log."""

    def __init__(self, chatlog: ChatLog) -> None:
        """Use the ``evaluations`` table of ``chatlog`` (its migrations created it)."""
        self.chatlog = chatlog
        self.engine = chatlog.engine

    def pending_turns(
        self, evaluator: str, limit: int = 50, requires: str | None = None
    ) -> list[dict[str, Any]]:
        """Finished (``ok``) turns without a row for ``evaluator``, oldest first.

        Args:
            evaluator: the evaluator name.
            limit: at most this many turns.
            requires: only turns whose row for this other evaluator has ``needs_judge`` set.
        """
        mine = evaluations.alias("mine")
        query = (
            select(turns)
            .outerjoin(mine, and_(mine.c.turn_id == turns.c.turn_id, mine.c.evaluator == evaluator))
            .where(turns.c.status == STATUS_OK, turns.c.answer.is_not(None), mine.c.evaluation_id.is_(None))
            .order_by(turns.c.created_at)
            .limit(limit)
        )
        if requires is not None:
            other = evaluations.alias("other")
            query = query.join(
                other,
                and_(
                    other.c.turn_id == turns.c.turn_id,
                    other.c.evaluator == requires,
                    other.c.needs_judge.is_(True),
                ),
            )
        with self.engine.connect() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def record(
        self,
        turn_id: str,
        evaluator: str,
        result: EvalResult,
        flagged: bool = False,
        needs_judge: bool = False,
        *,
        trace_id: str | None = None,
        span_id: str | None = None,
    ) -> bool:
        """Store one result; False when the turn already had one for this evaluator (first one wins).

        A score is also enqueued as an ``evaluation`` outbox item for every sink routed that kind
        (LangSmith, Arize ...), in the same transaction as its row: both are stored or neither.
        A recorded failure (no score) is not delivered.

        Args:
            turn_id: the turn.
            evaluator: the evaluator name (``monitoring.semconv.SCORE_*``).
            result: the score or the deterministic failure.
            flagged: below the threshold (for the labeling loop).
            needs_judge: the turn is sampled for the LLM judge.
            trace_id: the turn's trace (hex), carried to the sinks.
            span_id: the turn's span (hex).

        Raises:
            sqlalchemy.exc.OperationalError: the database is unavailable or locked (transient:
                the online worker retries the turn later).
        """
        row = {
            "turn_id": turn_id,
            "evaluator": evaluator,
            "score": result.score,
            "details": _details(result),
            "error": result.error,
            "flagged": flagged,
            "needs_judge": needs_judge,
            "created_at": now(),
        }
        sinks = self.chatlog.routes("evaluation") if result.score is not None else ()
        try:
            with self.engine.begin() as conn:
                conn.execute(insert(evaluations).values(**row))
                if sinks:
                    from chatlog.outbox import enqueue

                    payload = {
                        "turn_id": turn_id,
                        "evaluator": evaluator,
                        "score": result.score,
                        "trace_id": trace_id,
                        "span_id": span_id,
                    }
                    enqueue(
                        conn, kind="evaluation", key=f"{turn_id}:{evaluator}", payload=payload, sinks=sinks
                    )
        except IntegrityError:
            return False  # another worker (or an earlier run) scored it first
        if sinks:
            self.chatlog.notify_enqueued()
        return True

    def for_turn(self, turn_id: str) -> dict[str, dict[str, Any]]:
        """Every evaluation row of a turn, keyed by evaluator."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(evaluations).where(evaluations.c.turn_id == turn_id)).mappings()
            return {r["evaluator"]: dict(r) for r in rows}

    def flagged(self, evaluators: Sequence[str] | None = None, since: datetime | None = None) -> list[str]:
        """Turn ids flagged low (e.g. low faithfulness) for the labeling loop, oldest first."""
        query = select(evaluations.c.turn_id).where(evaluations.c.flagged.is_(True))
        if evaluators:
            query = query.where(evaluations.c.evaluator.in_(list(evaluators)))
        if since is not None:
            query = query.where(evaluations.c.created_at >= since)
        with self.engine.connect() as conn:
            return list(dict.fromkeys(r[0] for r in conn.execute(query.order_by(evaluations.c.created_at))))


def _details(result: EvalResult) -> dict[str, Any]:
    d = result.to_dict()
    return {"sentences": d["sentences"], **d["details"]}
