"""``ragloop arize backfill --since ...``: send past turns, their feedback and scores to Arize.

Backfill goes through the outbox like live traffic: every turn since the date (and each rating and
evaluation of it) is enqueued for the ``arize`` sink, then delivered here in batches with a progress
bar. Keys are the live ones (``<turn>``, ``<turn>:<rater>``, ``<turn>:<evaluator>``), so running it
again re-sends each key once with the same span id: Arize upserts by span id, nothing duplicates.
Whatever cannot be delivered now stays in the outbox for the app's worker (``ragloop outbox status``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from chatlog import ChatLog
    from ragloop.settings import Settings

app = typer.Typer(help="Arize: embeddings, feedback and evaluations as spans.", no_args_is_help=True)


@app.callback()
def _arize() -> None:
    """Send turns (query and answer embeddings), feedback and scores to Arize."""


_RELATIVE = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``2026-11-01``, ``2026-11-01T08:00`` (UTC unless it says otherwise) or ``30m``/``12h``/``7d``/``2w``.

    Raises:
        ValueError: anything else, or a time in the future.
    """
    current = now or datetime.now(UTC)
    value = text.strip()
    match = _RELATIVE.match(value.lower())
    if match:
        since = current - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    else:
        try:
            since = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"--since {text!r}: use a date (2026-11-01), a time (2026-11-01T08:00) "
                "or an age (30m, 12h, 7d, 2w)"
            ) from None
        since = since.replace(tzinfo=UTC) if since.tzinfo is None else since.astimezone(UTC)
    if since > current:
        raise ValueError(f"--since {text!r} is in the future")
    return since


def _chunks(values: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _enqueue_turns(chatlog: ChatLog, turn_ids: Sequence[str], sink: str, batch: int) -> dict[str, set[str]]:
    """Enqueue the turns, then their feedback and evaluations (so spans go before what refers to them)."""
    from chatlog._base import write_transaction
    from chatlog.outbox import enqueue

    keys: dict[str, set[str]] = {"turn": set(), "feedback": set(), "evaluation": set()}
    for chunk in _chunks(turn_ids, batch):
        with write_transaction(chatlog.engine) as conn:
            for turn_id in chunk:
                enqueue(conn, kind="turn", key=turn_id, payload={"turn_id": turn_id}, sinks=[sink])
                keys["turn"].add(turn_id)
    for chunk in _chunks(turn_ids, batch):
        with write_transaction(chatlog.engine) as conn:
            for kind, key, payload in _related(conn, chunk):
                enqueue(conn, kind=kind, key=key, payload=payload, sinks=[sink])
                keys[kind].add(key)
    return keys


def _related(conn: Connection, turn_ids: Sequence[str]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Feedback and evaluation payloads of ``turn_ids``, as their producers enqueue them."""
    from sqlalchemy import column, select, table

    from chatlog import feedback, turns

    ids = {
        r.turn_id: (r.trace_id, r.span_id)
        for r in conn.execute(
            select(turns.c.turn_id, turns.c.trace_id, turns.c.span_id).where(turns.c.turn_id.in_(turn_ids))
        )
    }
    for r in conn.execute(select(feedback).where(feedback.c.turn_id.in_(turn_ids))).mappings():
        trace_id, span_id = ids[r["turn_id"]]
        payload = {
            "feedback_id": r["feedback_id"],
            "turn_id": r["turn_id"],
            "rater": r["rater"],
            "value": r["value"],
            "comment": r["comment"],
            "source": r["source"],
            "trace_id": trace_id,
            "span_id": span_id,
        }
        yield "feedback", f"{r['turn_id']}:{r['rater']}", payload
    # The evaluations table belongs to `eval` (a sibling feature package): read it by name.
    evaluations = table("evaluations", column("turn_id"), column("evaluator"), column("score"))
    for r in conn.execute(select(evaluations).where(evaluations.c.turn_id.in_(turn_ids))).mappings():
        trace_id, span_id = ids[r["turn_id"]]
        payload = {
            "turn_id": r["turn_id"],
            "evaluator": r["evaluator"],
            "score": r["score"],
            "trace_id": trace_id,
            "span_id": span_id,
        }
        yield "evaluation", f"{r['turn_id']}:{r['evaluator']}", payload


def _turn_ids(chatlog: ChatLog, since: datetime, until: datetime | None) -> list[str]:
    from sqlalchemy import select

    from chatlog import STATUS_IN_PROGRESS, turns

    query = select(turns.c.turn_id).where(turns.c.created_at >= since, turns.c.status != STATUS_IN_PROGRESS)
    if until is not None:
        query = query.where(turns.c.created_at < until)
    with chatlog.engine.connect() as conn:
        return [r[0] for r in conn.execute(query.order_by(turns.c.created_at, turns.c.turn_id))]


def _recheck(chatlog: ChatLog, sink: str, keys: dict[str, set[str]]) -> int:
    """Make this run's failed feedback/evaluation items due now (their span may have just arrived)."""
    from sqlalchemy import and_, update

    from chatlog._base import now, write_transaction
    from chatlog.outbox import PENDING, outbox

    n = 0
    with write_transaction(chatlog.engine) as conn:
        for kind in ("feedback", "evaluation"):
            for chunk in _chunks(sorted(keys[kind]), 500):
                cond = and_(
                    outbox.c.sink == sink,
                    outbox.c.kind == kind,
                    outbox.c.key.in_(chunk),
                    outbox.c.status == PENDING,
                )
                n += int(conn.execute(update(outbox).where(cond).values(next_attempt_at=now())).rowcount or 0)
    return n


@app.command("backfill")
def backfill(
    since: str = typer.Option(
        ..., "--since", help="From: a date (2026-11-01), a UTC time, or an age (7d, 12h)."
    ),
    until: str | None = typer.Option(None, "--until", help="Up to (exclusive), same forms; default: now."),
    batch_size: int | None = typer.Option(
        None, "--batch-size", min=1, help="Items per upload (RAGLOOP_ARIZE_BATCH_SIZE)."
    ),
    enqueue_only: bool = typer.Option(
        False, "--enqueue-only", help="Only enqueue; the app's outbox worker sends."
    ),
) -> None:
    """Send every finished turn since a date, with its feedback and evaluations, to Arize (idempotent)."""
    from ragloop.settings import Settings

    try:
        start = parse_since(since)
        end = parse_since(until) if until else None
    except ValueError as exc:
        raise _user_error(str(exc)) from None
    settings = Settings()
    size = batch_size or settings.arize_batch_size
    from chatlog import ChatLog
    from monitoring._arize import NAME, ArizeNotInstalledError, configured, from_settings

    if not configured(settings):
        raise _user_error("Arize is not configured: set ARIZE_API_KEY and ARIZE_SPACE_ID")

    chatlog = ChatLog(settings.chatlog_url, auto_upgrade=settings.db_auto_upgrade)
    try:
        try:
            sink = from_settings(settings, chatlog)
        except ArizeNotInstalledError as exc:
            raise _user_error(str(exc)) from None
        assert sink is not None  # configured() was checked above
        turn_ids = _turn_ids(chatlog, start, end)
        keys = _enqueue_turns(chatlog, turn_ids, NAME, size)
        total = sum(len(v) for v in keys.values())
        typer.echo(
            f"enqueued {len(keys['turn'])} turns, {len(keys['feedback'])} ratings and "
            f"{len(keys['evaluation'])} evaluations since {start.isoformat()} for Arize"
        )
        if enqueue_only or not total:
            return
        delivered, failed = _deliver(chatlog, sink, settings, size, total, keys)
    finally:
        chatlog.close()
    typer.echo(f"delivered {delivered} of {total} items to Arize project {settings.arize_project_name!r}")
    if failed:
        typer.echo(
            f"{total - delivered} items wait in the outbox for a retry: see `ragloop outbox status`", err=True
        )
        raise typer.Exit(1)


def _deliver(
    chatlog: ChatLog, sink: Any, settings: Settings, size: int, total: int, keys: dict[str, set[str]]
) -> tuple[int, int]:
    from tqdm import tqdm

    from chatlog.outbox import OutboxWorker

    worker = OutboxWorker(
        chatlog.engine,
        [sink],
        batch_size=size,
        max_attempts=settings.outbox_max_attempts,
        backoff_initial_s=settings.outbox_backoff_s,
        backoff_max_s=settings.outbox_backoff_max_s,
    )
    delivered = failed = 0
    with tqdm(total=total, unit="item", desc="arize") as bar:
        for second_chance in (False, True):
            if second_chance:
                if not failed or not _recheck(chatlog, sink.name, keys):
                    break
                failed = 0
            while True:
                report = worker.deliver_once()
                if not report.claimed:
                    break
                delivered += report.delivered
                failed += report.failed + report.dead
                bar.update(report.delivered)
    return delivered, failed


def _user_error(message: str) -> Exception:
    """A user error: ``ragloop.cli.main`` prints it as one ``Error: ...`` line, exit code 2."""
    from ragloop.errors import UserError

    return UserError(message)
