"""The one way out: a transactional outbox of items for vendor sinks, and the worker that delivers it.

A producer writes its row (a feedback rating, an evaluation) and, in the SAME transaction, one
outbox item per sink that takes that kind (:func:`enqueue`). An :class:`OutboxWorker` claims due
items, hands them to their :class:`Sink` in batches, and records the outcome:

- ``(sink, kind, key)`` is unique: enqueuing a key again updates the payload and makes the item
  pending again (an edited feedback row is re-delivered as an update, never as a second rating);
- claims take ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL (``BEGIN IMMEDIATE`` on SQLite)
  plus a lease, so two app processes never send one item at the same time; an item edited while
  it is in flight is sent again with its new payload;
- a failed send backs off (tenacity's exponential wait with jitter); after ``max_attempts`` the
  item is ``dead``: visible in :func:`counts` / :func:`status`, re-queued by :func:`retry`.

Statuses: ``pending`` (waiting or backing off), ``delivered``, ``dead``.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from chatlog._base import metadata, now, write_transaction

log = logging.getLogger(__name__)

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
STATUSES = (PENDING, DELIVERED, DEAD)

outbox = Table(
    "outbox",
    metadata,
    Column("outbox_id", Integer, primary_key=True, autoincrement=True),
    Column("sink", String(64), nullable=False),  # "langsmith", "argilla", ...
    Column("kind", String(32), nullable=False),  # "feedback", "evaluation", "turn", "pair"
    Column("key", String(255), nullable=False),  # the delivered thing's identity, e.g. "<turn>:<rater>"
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False),  # +1 per enqueue: an in-flight stale send is not "delivered"
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("lease_until", DateTime(timezone=True)),
    Column("leased_by", String(64)),
    Column("delivered_at", DateTime(timezone=True)),
    Column("last_error", Text),
    UniqueConstraint("sink", "kind", "key", name="uq_outbox_sink_kind_key"),
    Index("ix_outbox_due", "status", "next_attempt_at"),
)


@dataclass(frozen=True)
class OutboxItem:
    """One item handed to a sink.

    Attributes:
        id: the outbox row id.
        sink: the sink's name.
        kind: "feedback", "evaluation", "turn" or "pair".
        key: the delivered thing's identity; a sink must be idempotent by it.
        payload: the item's data (see docs/architecture.md for each kind's fields).
        attempts: earlier failed attempts.
        created_at: when the key was first enqueued.
        version: how often the key was enqueued (1 = first).
    """

    id: int
    sink: str
    kind: str
    key: str
    payload: dict[str, Any]
    attempts: int = 0
    created_at: datetime | None = None
    version: int = 1


@runtime_checkable
class Sink(Protocol):
    """A vendor adapter the outbox delivers to (one module per vendor, SDK imported lazily).

    Attributes:
        name: unique, stored on every outbox row ("langsmith", "argilla", ...).
        kinds: the item kinds the sink takes.
    """

    name: str
    kinds: frozenset[str]

    def send(self, items: Sequence[OutboxItem]) -> Sequence[bool]:
        """Deliver ``items``; one bool per item (True = delivered). Idempotent by key; never raises."""
        ...

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Flush and release the sink's client."""
        ...


def _insert_for(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    raise NotImplementedError(f"the outbox needs SQLite or PostgreSQL, not {conn.dialect.name}")


def enqueue(
    conn: Connection, *, kind: str, key: str, payload: Mapping[str, Any], sinks: Iterable[str]
) -> int:
    """Add (or refresh) one item per sink, inside the caller's transaction.

    Call it with the connection that writes the producer's row, so both commit or neither does.
    An existing ``(sink, kind, key)`` item gets the new payload and becomes pending again, with its
    attempts reset.

    Args:
        conn: a connection inside the producer's transaction.
        kind: the item kind.
        key: the item's identity (at most 255 characters).
        payload: JSON-serialisable data.
        sinks: the sink names to deliver to (``ChatLog.routes(kind)``); none: nothing is written.

    Returns:
        How many items were written.
    """
    names = list(dict.fromkeys(sinks))
    if not names:
        return 0
    if len(key) > 255:
        raise ValueError("outbox keys are at most 255 characters")
    stamp = now()
    insert = _insert_for(conn)
    rows = [
        {
            "sink": name,
            "kind": kind,
            "key": key,
            "payload": dict(payload),
            "status": PENDING,
            "version": 1,
            "attempts": 0,
            "created_at": stamp,
            "updated_at": stamp,
            "next_attempt_at": stamp,
        }
        for name in names
    ]
    stmt = insert(outbox).values(rows)
    stmt = stmt.on_conflict_do_update(
        index_elements=["sink", "kind", "key"],
        set_={
            "payload": stmt.excluded.payload,
            "status": PENDING,
            "version": outbox.c.version + 1,
            "attempts": 0,
            "updated_at": stamp,
            "next_attempt_at": stamp,
            "delivered_at": None,
            "last_error": None,
        },
    )
    conn.execute(stmt)
    return len(rows)


def _wait_strategy(initial_s: float, max_s: float) -> Any:
    import tenacity

    return tenacity.wait_exponential_jitter(initial=initial_s, max=max_s, jitter=initial_s)


def backoff_s(strategy: Any, attempts: int) -> float:
    """Seconds before the next try after ``attempts`` failures, from a tenacity wait strategy."""
    import tenacity

    state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
    state.attempt_number = max(1, attempts)
    return float(strategy(state))


@dataclass
class DeliveryReport:
    """What one :meth:`OutboxWorker.deliver_once` pass did."""

    claimed: int = 0
    delivered: int = 0
    failed: int = 0
    dead: int = 0
    superseded: int = 0  # sent, but re-enqueued meanwhile: goes again with the new payload
    errors: list[str] = field(default_factory=list)


class OutboxWorker:
    """Claims due outbox items and delivers them to their sinks, in a background thread.

    Safe to run in several processes against one database: claims are exclusive (row locks and a
    lease), and an item is marked delivered only by the worker holding its lease.
    """

    def __init__(
        self,
        engine: Engine,
        sinks: Sequence[Sink],
        *,
        max_attempts: int = 8,
        lease_s: float = 60.0,
        poll_s: float = 2.0,
        batch_size: int = 50,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 600.0,
        worker_id: str | None = None,
    ) -> None:
        """Deliver for ``sinks`` from the outbox of ``engine``.

        Args:
            engine: the chat log's engine.
            sinks: the active sinks (unique names).
            max_attempts: failed sends before an item is ``dead`` (RAGLOOP_OUTBOX_MAX_ATTEMPTS).
            lease_s: how long a claim is exclusive; a worker that dies mid-send frees its items
                after this (RAGLOOP_OUTBOX_LEASE_S). Must exceed the slowest sink's send.
            poll_s: seconds between passes when idle (RAGLOOP_OUTBOX_POLL_S); :meth:`wake` cuts it short.
            batch_size: items claimed per pass.
            backoff_initial_s: first retry delay; doubles (with jitter) up to ``backoff_max_s``.
            backoff_max_s: longest retry delay.
            worker_id: lease owner name (default: host pid and a random suffix).
        """
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique: {names}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.engine = engine
        self.sinks: dict[str, Sink] = {s.name: s for s in sinks}
        self.max_attempts = max_attempts
        self.lease = timedelta(seconds=lease_s)
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.wait = _wait_strategy(backoff_initial_s, backoff_max_s)
        self.worker_id = worker_id or f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_settings(cls, settings: Any, engine: Engine, sinks: Sequence[Sink]) -> OutboxWorker:
        """A worker configured by the ``RAGLOOP_OUTBOX_*`` settings."""
        return cls(
            engine,
            sinks,
            max_attempts=settings.outbox_max_attempts,
            lease_s=settings.outbox_lease_s,
            poll_s=settings.outbox_poll_s,
            backoff_initial_s=settings.outbox_backoff_s,
            backoff_max_s=settings.outbox_backoff_max_s,
        )

    # --- one pass ------------------------------------------------------------------------------
    def _claim(self) -> list[OutboxItem]:
        if not self.sinks:
            return []
        stamp = now()
        due = and_(
            outbox.c.status == PENDING,
            outbox.c.sink.in_(list(self.sinks)),
            outbox.c.next_attempt_at <= stamp,
            or_(outbox.c.lease_until.is_(None), outbox.c.lease_until < stamp),
        )
        query = select(outbox).where(due).order_by(outbox.c.outbox_id).limit(self.batch_size)
        with write_transaction(self.engine) as conn:
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            rows = list(conn.execute(query).mappings())
            if not rows:
                return []
            conn.execute(
                update(outbox)
                .where(outbox.c.outbox_id.in_([r["outbox_id"] for r in rows]))
                .values(lease_until=stamp + self.lease, leased_by=self.worker_id)
            )
        return [
            OutboxItem(
                id=int(r["outbox_id"]),
                sink=r["sink"],
                kind=r["kind"],
                key=r["key"],
                payload=dict(r["payload"] or {}),
                attempts=int(r["attempts"]),
                created_at=r["created_at"],
                version=int(r["version"]),
            )
            for r in rows
        ]

    def deliver_once(self) -> DeliveryReport:
        """Claim one batch of due items, send them, record the outcomes.

        Returns:
            Counts of claimed, delivered, failed (to retry), dead and superseded items.
        """
        report = DeliveryReport()
        items = self._claim()
        report.claimed = len(items)
        by_sink: dict[str, list[OutboxItem]] = {}
        for item in items:
            by_sink.setdefault(item.sink, []).append(item)
        outcomes: list[tuple[OutboxItem, bool, str | None]] = []
        for name, batch in by_sink.items():
            sink = self.sinks[name]
            error: str | None = None
            try:
                results = list(sink.send(batch))
                if len(results) != len(batch):
                    raise RuntimeError(f"sink {name} returned {len(results)} results for {len(batch)} items")
            except Exception as exc:  # noqa: BLE001 - a sink must not raise; if it does, retry
                error = f"{type(exc).__name__}: {exc}"
                results = [False] * len(batch)
            last = getattr(sink, "last_error", None)
            for item, ok in zip(batch, results, strict=True):
                outcomes.append((item, bool(ok), None if ok else (error or _error_of(sink, item) or last)))
        if outcomes:
            self._record(outcomes, report)
        return report

    def _record(self, outcomes: list[tuple[OutboxItem, bool, str | None]], report: DeliveryReport) -> None:
        stamp = now()
        with write_transaction(self.engine) as conn:
            for item, ok, error in outcomes:
                mine = and_(
                    outbox.c.outbox_id == item.id,
                    outbox.c.leased_by == self.worker_id,
                    outbox.c.version == item.version,
                    outbox.c.status == PENDING,
                )
                if ok:
                    values: dict[str, Any] = {
                        "status": DELIVERED,
                        "delivered_at": stamp,
                        "attempts": item.attempts + 1,
                        "last_error": None,
                    }
                else:
                    attempts = item.attempts + 1
                    dead = attempts >= self.max_attempts
                    wait = backoff_s(self.wait, attempts)
                    values = {
                        "status": DEAD if dead else PENDING,
                        "attempts": attempts,
                        "next_attempt_at": stamp + timedelta(seconds=wait),
                        "last_error": (error or "send failed")[:2000],
                    }
                res = conn.execute(
                    update(outbox).where(mine).values(lease_until=None, leased_by=None, **values)
                )
                if res.rowcount:
                    if ok:
                        report.delivered += 1
                    elif values["status"] == DEAD:
                        report.dead += 1
                        report.errors.append(f"{item.sink}/{item.kind}/{item.key}: {error}")
                    else:
                        report.failed += 1
                        report.errors.append(f"{item.sink}/{item.kind}/{item.key}: {error}")
                    continue
                # Re-enqueued while in flight (new version): free it for the new payload.
                report.superseded += 1
                conn.execute(
                    update(outbox)
                    .where(outbox.c.outbox_id == item.id, outbox.c.leased_by == self.worker_id)
                    .values(lease_until=None, leased_by=None)
                )
        for line in report.errors:
            log.warning("outbox delivery failed: %s", line)

    # --- background thread ---------------------------------------------------------------------
    def start(self) -> OutboxWorker:
        """Start delivering in a daemon thread; returns self."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="outbox-worker", daemon=True)
        self._thread.start()
        return self

    def wake(self) -> None:
        """Start the next pass now (a producer just enqueued)."""
        self._wake.set()

    def _run(self) -> None:
        failures = 0  # passes failed in a row (the database down): the wait between them doubles
        while not self._stop.is_set():
            try:
                report = self.deliver_once()
            except Exception as exc:  # noqa: BLE001 - the worker survives a database outage
                failures += 1
                wait = min(self.poll_s * 2**failures, _MAX_FAILED_PASS_WAIT_S)
                # The traceback once per outage; then one line per pass, with the next wait.
                log.warning(
                    "outbox pass failed (%d in a row, next in %.1f s): %s",
                    failures, wait, " ".join(str(exc).split())[:300], exc_info=failures == 1,
                )  # fmt: skip
                self._stop.wait(wait)
                continue
            if failures:
                log.info("outbox passes work again after %d failed", failures)
                failures = 0
            if report.claimed >= self.batch_size or report.superseded:
                continue  # more may be due right now
            self._wake.wait(timeout=self.poll_s)
            self._wake.clear()

    def stop(self, timeout_s: float = 10.0, *, shutdown_sinks: bool = True) -> None:
        """Stop after the current pass (items not yet sent stay for the next start).

        Args:
            timeout_s: longest wait for the pass in flight, then for each sink's shutdown.
            shutdown_sinks: also call every sink's ``shutdown``.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=timeout_s)
            self._thread = None
        if shutdown_sinks:
            for sink in self.sinks.values():
                try:
                    sink.shutdown(timeout_s)
                except Exception:  # noqa: BLE001 - shutting down never raises
                    log.debug("sink %s shutdown failed", sink.name, exc_info=True)

    def drain(self, timeout_s: float = 30.0) -> bool:
        """Deliver in this thread until no item of these sinks is pending (tests, shutdown).

        Items backing off are waited for; dead items do not count.

        Returns:
            True when nothing is pending, False on timeout.
        """
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.deliver_once().claimed:
                continue
            with self.engine.connect() as conn:
                pending = conn.execute(
                    select(func.count()).where(
                        outbox.c.status == PENDING, outbox.c.sink.in_(list(self.sinks))
                    )
                ).scalar_one()
            if not pending:
                return True
            time.sleep(min(0.05, self.poll_s))
        return False


#: Longest wait between failed passes (the database down), seconds.
_MAX_FAILED_PASS_WAIT_S = 10.0


def _error_of(sink: Any, item: OutboxItem) -> str | None:
    errors = getattr(sink, "errors", None)
    if isinstance(errors, Mapping):
        value = errors.get(item.key)
        return str(value) if value is not None else None
    return None


# --- operators' view -----------------------------------------------------------------------------
def counts(engine: Engine) -> dict[tuple[str, str], int]:
    """Items by (sink, status), for the ``ragloop_outbox_items{sink,status}`` gauge."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(outbox.c.sink, outbox.c.status, func.count()).group_by(outbox.c.sink, outbox.c.status)
        ).all()
    return {(str(sink), str(st)): int(n) for sink, st, n in rows}


def status(engine: Engine) -> list[dict[str, Any]]:
    """One row per (sink, status): count, oldest item, and the newest error seen."""
    out = []
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                outbox.c.sink,
                outbox.c.status,
                func.count().label("items"),
                func.min(outbox.c.created_at).label("oldest"),
                func.max(outbox.c.updated_at).label("newest"),
            )
            .group_by(outbox.c.sink, outbox.c.status)
            .order_by(outbox.c.sink, outbox.c.status)
        ).mappings()
        for r in rows:
            error = None
            if r["status"] != DELIVERED:
                error = conn.execute(
                    select(outbox.c.last_error)
                    .where(
                        outbox.c.sink == r["sink"],
                        outbox.c.status == r["status"],
                        outbox.c.last_error.is_not(None),
                    )
                    .order_by(outbox.c.updated_at.desc(), outbox.c.outbox_id.desc())
                    .limit(1)
                ).scalar()
            out.append({**dict(r), "last_error": error})
    return out


def items(
    engine: Engine, *, sink: str | None = None, status_: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    """Outbox rows, oldest first, optionally of one sink and status."""
    query = select(outbox).order_by(outbox.c.outbox_id).limit(limit)
    if sink is not None:
        query = query.where(outbox.c.sink == sink)
    if status_ is not None:
        query = query.where(outbox.c.status == status_)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def retry(engine: Engine, sink: str | None = None, ids: Sequence[int] | None = None) -> int:
    """Make ``dead`` items pending again with fresh attempts; returns how many.

    Args:
        engine: the chat log's engine.
        sink: only this sink's items.
        ids: only these outbox ids.
    """
    query = update(outbox).where(outbox.c.status == DEAD)
    if sink is not None:
        query = query.where(outbox.c.sink == sink)
    if ids is not None:
        query = query.where(outbox.c.outbox_id.in_(list(ids)))
    stamp = now()
    with engine.begin() as conn:
        res = conn.execute(
            query.values(
                status=PENDING,
                attempts=0,
                next_attempt_at=stamp,
                updated_at=stamp,
                lease_until=None,
                leased_by=None,
            )
        )
    return int(res.rowcount or 0)


__all__ = [
    "DEAD",
    "DELIVERED",
    "PENDING",
    "STATUSES",
    "DeliveryReport",
    "OutboxItem",
    "OutboxWorker",
    "Sink",
    "counts",
    "enqueue",
    "items",
    "outbox",
    "retry",
    "status",
]
