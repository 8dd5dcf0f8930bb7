"""The LangSmith adapter: LangChain runs per turn, and feedback delivered through a durable outbox.

Runs: a ``LangChainTracer`` joins the turn's RunnableConfig, with the root run's id derived from the
turn id (so feedback can name the run without a lookup) and the turn id in the run metadata.

Feedback and evaluation scores are first written to the ``langsmith_outbox`` table of the chat log,
then delivered by a background worker that retries with backoff: a LangSmith outage or an app
restart loses nothing, and nothing waits in memory.
"""

from __future__ import annotations

import logging
import threading
import uuid
import warnings
from datetime import timedelta
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

import chatlog as cl
from monitoring._tracing import ErrorCounter
from ragloop.settings import Settings

log = logging.getLogger(__name__)

outbox = Table(
    "langsmith_outbox",
    cl.metadata,
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

#: Longest wait between two delivery attempts of one feedback item.
MAX_BACKOFF_S = 600.0


def run_id_for(turn_id: str) -> uuid.UUID:
    """The LangSmith root run id of a turn: the turn id itself when it is a UUID (it is, hex)."""
    try:
        return uuid.UUID(hex=turn_id)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"ragloop:turn:{turn_id}")


def backoff_s(attempts: int, base_s: float) -> float:
    """Seconds before retry number ``attempts`` (1, 2, ...): doubling from ``base_s``, capped."""
    return float(min(MAX_BACKOFF_S, base_s * 2 ** max(0, attempts - 1)))


class LangSmithReporter:
    """LangSmith runs for turns and an outbox-backed feedback sender."""

    def __init__(
        self,
        settings: Settings,
        client: Any | None = None,
        errors: ErrorCounter | None = None,
        engine: Any | None = None,
    ) -> None:
        """Connect to LangSmith and the chat log; start the delivery worker."""
        try:
            from langchain_core.tracers.langchain import LangChainTracer
            from langsmith import Client
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("LangSmith needs: pip install 'ragloop[langsmith]'") from exc
        self.settings = settings
        self.client = client or Client(
            api_url=settings.langsmith_endpoint, api_key=settings.langsmith_api_key
        )
        self.tracer = LangChainTracer(project_name=settings.langsmith_project, client=self.client)
        self.errors = errors or ErrorCounter()
        self.engine = engine or cl.make_engine(settings.chatlog_url)
        cl.metadata.create_all(self.engine, tables=[outbox], checkfirst=True)
        self.retry_s = settings.langsmith_retry_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._worker = threading.Thread(target=self._run, name="langsmith-outbox", daemon=True)
        self._worker.start()

    def langchain_config(self, turn: dict[str, Any]) -> dict[str, Any]:
        """Callbacks, root run id and metadata for one turn's chain run."""
        meta = {"turn_id": turn["turn_id"], "conversation_id": turn["conversation_id"]}
        return {"callbacks": [self.tracer], "run_id": run_id_for(turn["turn_id"]), "metadata": meta}

    def enqueue(self, turn_id: str, key: str, score: float | None, comment: str | None) -> None:
        """Write a feedback item to the outbox and wake the worker (a quick local insert)."""
        now = cl.now()
        with self.engine.begin() as conn:
            conn.execute(
                insert(outbox).values(
                    feedback_uuid=str(uuid.uuid4()),
                    turn_id=turn_id,
                    run_id=str(run_id_for(turn_id)),
                    key=key,
                    score=score,
                    comment=comment or None,
                    created_at=now,
                    attempts=0,
                    next_attempt_at=now,
                )
            )
        self._idle.clear()
        self._wake.set()

    def pending(self) -> list[dict[str, Any]]:
        """Undelivered outbox rows, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(outbox).where(outbox.c.delivered_at.is_(None)).order_by(outbox.c.outbox_id)
            ).mappings()
            return [dict(r) for r in rows]

    def deliver_due(self) -> int:
        """Try every due item once; returns how many were delivered."""
        with self.engine.connect() as conn:
            rows = list(
                conn.execute(
                    select(outbox)
                    .where(outbox.c.delivered_at.is_(None), outbox.c.next_attempt_at <= cl.now())
                    .order_by(outbox.c.outbox_id)
                    .limit(100)
                ).mappings()
            )
        delivered = 0
        for row in rows:
            delivered += self._deliver(row)
        return delivered

    def _deliver(self, row: Any) -> int:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # session_id deprecation: we name runs, not projects
                self.client.create_feedback(
                    run_id=row["run_id"],
                    key=row["key"],
                    score=row["score"],
                    comment=row["comment"],
                    feedback_id=row["feedback_uuid"],
                    stop_after_attempt=1,
                )
        except Exception as exc:  # noqa: BLE001 - an outage is expected; retried later
            attempts = int(row["attempts"]) + 1
            wait = backoff_s(attempts, self.retry_s)
            self.errors.failed("langsmith", f"{type(exc).__name__}; retry in {wait:.0f}s")
            with self.engine.begin() as conn:
                conn.execute(
                    update(outbox)
                    .where(outbox.c.outbox_id == row["outbox_id"])
                    .values(
                        attempts=attempts,
                        next_attempt_at=cl.now() + timedelta(seconds=wait),
                        last_error=f"{type(exc).__name__}: {exc}"[:2000],
                    )
                )
            return 0
        with self.engine.begin() as conn:
            conn.execute(
                update(outbox)
                .where(outbox.c.outbox_id == row["outbox_id"])
                .values(delivered_at=cl.now(), attempts=int(row["attempts"]) + 1, last_error=None)
            )
        return 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.deliver_due()
            except Exception:  # noqa: BLE001 - the worker must survive a database hiccup
                log.warning("LangSmith outbox pass failed", exc_info=True)
            self._idle.set()
            self._wake.wait(timeout=min(self.retry_s, 5.0))
            self._wake.clear()

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait for runs to be sent and one outbox pass to finish."""
        self._idle.clear()
        self._wake.set()
        self._idle.wait(timeout_s)
        try:
            self.tracer.wait_for_futures()
            self.client.flush()
        except Exception:  # noqa: BLE001 - flushing telemetry never raises
            log.debug("LangSmith flush failed", exc_info=True)

    def shutdown(self) -> None:
        """Stop the worker (undelivered items stay in the outbox for the next start)."""
        self._stop.set()
        self._wake.set()
        self._worker.join(timeout=10)
        try:
            self.client.flush()
        except Exception:  # noqa: BLE001
            log.debug("LangSmith flush failed", exc_info=True)
