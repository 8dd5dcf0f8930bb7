"""What the analytics tab shows, read from the chat log: read-only SQL aggregates on plain data.

Every figure but the latency percentiles is an aggregate query over an indexed time window
(``turns.created_at``, ``evaluations.created_at``); only the handful of rows a table shows
(comments, refused questions, drift clusters) reach Python. Latency percentiles are nearest-rank
(the value at rank ``ceil(p * n)`` of the sorted values), computed by numpy over one narrow scan
``(day, total_ms, ttft_ms)`` of the answered turns: SQLite has no percentile function, and ranking
with window functions took three times as long. A turn row is large (it holds the query
embedding), so ``turns`` is scanned twice per load: once for counts and tokens, once for latency.
Days are UTC calendar days.

Free text (feedback comments, refused questions, drift example questions) belongs to the user who
wrote it. With ``owner`` given, :func:`load_analytics` reads only that user's text (their own
conversations, their own ratings); the aggregate figures stay global either way.

``monitoring`` may not import ``eval`` or ``labeling`` (docs/architecture.md), so the few columns
of their tables read here are named with :func:`sqlalchemy.table`; the tests run these queries on
the migrated schema, so a renamed column fails them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import (
    DateTime,
    Float,
    Integer,
    String,
    and_,
    case,
    cast,
    column,
    exists,
    extract,
    func,
    select,
    table,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql.elements import ColumnElement

from chatlog import (
    STATUS_CANCELLED,
    STATUS_ERROR,
    STATUS_NO_CONTEXT,
    STATUS_OK,
    STATUS_REJECTED,
    conversations,
    feedback,
    now,
    turns,
)
from monitoring import semconv as sc
from monitoring._attributes import Price, estimate_cost
from monitoring.drift._store import drift_clusters, drift_runs

__all__ = [
    "BIN_EDGES",
    "FAITHFULNESS_EVALUATORS",
    "REFUSAL_STATUSES",
    "Analytics",
    "Percentiles",
    "Window",
    "load_analytics",
]

#: Statuses counted as a refusal: no passage was relevant (``no_context``, as drift counts it) or
#: the bot declined (``refusal``).
REFUSAL_STATUSES = (STATUS_NO_CONTEXT, "refusal")
#: The evaluators whose scores make the faithfulness distribution.
FAITHFULNESS_EVALUATORS = (sc.SCORE_FAITHFULNESS_LOCAL, sc.SCORE_FAITHFULNESS_LLM)
#: Upper edges of the faithfulness bins (the Prometheus score buckets): bin i is [edge[i-1], edge[i]).
BIN_EDGES = sc.SCORE_BUCKETS
#: Percentiles reported for latency and time to first token.
PERCENTILES = (50, 95)

_EPOCH = date(1970, 1, 1)

_evaluations = table(
    "evaluations",
    column("turn_id", String),
    column("evaluator", String),
    column("score", Float),
    column("created_at", DateTime(timezone=True)),
)
_pairs = table("pairs", column("pair_id", String))
_labels = table("labels", column("pair_id", String))
_selections = table("selections", column("turn_id", String))


@dataclass(frozen=True)
class Window:
    """The time window ``[since, until)`` of an analytics read (UTC)."""

    since: datetime
    until: datetime

    @classmethod
    def last_days(cls, days: int, until: datetime | None = None) -> Window:
        """The ``days`` calendar days (UTC) that end with the day of ``until`` (default: now).

        Raises:
            ValueError: ``days`` is below 1.
        """
        if days < 1:
            raise ValueError("the analytics window must cover at least one day")
        end = until or now()
        start = datetime.combine(end.date() - timedelta(days=days - 1), datetime.min.time(), end.tzinfo)
        return cls(start, end)

    def days(self) -> list[str]:
        """Every UTC day of the window, ``YYYY-MM-DD``, oldest first."""
        first, last = self.since.date(), self.until.date()
        return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


@dataclass(frozen=True)
class Percentiles:
    """Nearest-rank percentiles of one measure (milliseconds); None without values."""

    n: int
    p50: float | None
    p95: float | None


@dataclass
class Analytics:
    """Everything the analytics tab shows, for one window.

    Attributes:
        window: the time window read.
        turns_per_day: ``{"day", "turns", "ok", "refused", "errors", "cancelled", "rejected"}``;
            ``turns`` leaves out ``rejected`` (bad input refused before any answer).
        feedback: ``{"up", "down", "up_share"}`` (one row per rater and turn; share None without
            feedback).
        feedback_per_day: ``{"day", "up", "down"}``.
        comments: newest comments first, ``{"at", "value", "comment", "question", "turn_id"}``.
        faithfulness: per evaluator, ``{"evaluator", "n", "low", "low_share", "threshold",
            "bins": [counts per BIN_EDGES bin]}``.
        refused: ``{"question", "count", "last"}`` most often refused first.
        latency: total latency percentiles of answered turns, overall.
        ttft: time-to-first-token percentiles of answered turns, overall.
        latency_per_day: ``{"day", "n", "total_p50", "total_p95", "ttft_p50", "ttft_p95"}``.
        usage_per_day: ``{"day", "input_tokens", "output_tokens", "cost_usd", "unknown_usage"}``;
            ``unknown_usage`` counts answered turns without token counts (their cost is unknown,
            not zero).
        drift: the newest run ``{"run_id", "created_at", "status", "alarm", "window_start",
            "window_end", "n_reference", "n_current", "query_p_value", "answer_p_value",
            "features_p_value", "insufficient"}`` or None before the first run.
        drift_clusters: that run's top clusters ``{"rank", "size", "current_share",
            "reference_share", "excess", "examples"}``.
        labeling: ``{"selected", "pairs", "labeled", "pending"}``; pending pairs have no label yet.
        injections: turns whose passages held instructions to the model (``turns.flags``
            ``injection``, prompt injection in a retrieved document): ``{"turns", "share",
            "recent": [{"at", "question", "sources", "rules", "turn_id"}]}``, newest first.
    """

    window: Window
    turns_per_day: list[dict[str, Any]] = field(default_factory=list)
    feedback: dict[str, Any] = field(default_factory=dict)
    feedback_per_day: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    faithfulness: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)
    latency: Percentiles = Percentiles(0, None, None)
    ttft: Percentiles = Percentiles(0, None, None)
    latency_per_day: list[dict[str, Any]] = field(default_factory=list)
    usage_per_day: list[dict[str, Any]] = field(default_factory=list)
    drift: dict[str, Any] | None = None
    drift_clusters: list[dict[str, Any]] = field(default_factory=list)
    labeling: dict[str, int] = field(default_factory=dict)
    injections: dict[str, Any] = field(default_factory=dict)

    def totals(self) -> dict[str, Any]:
        """Window totals of the daily series: turns, rejected, refused, refusal share, tokens, cost.

        ``turns`` counts the turns that reached the bot (answered, refused, failed, cancelled);
        ``rejected`` the requests refused as bad input before any answer (e.g. a message too long).
        """
        n = sum(d["turns"] for d in self.turns_per_day)
        rejected = sum(d.get("rejected", 0) for d in self.turns_per_day)
        refused = sum(d["refused"] for d in self.turns_per_day)
        answered_or_refused = refused + sum(d["ok"] for d in self.turns_per_day)
        return {
            "turns": n,
            "rejected": rejected,
            "refused": refused,
            "refusal_share": refused / answered_or_refused if answered_or_refused else None,
            "input_tokens": sum(d["input_tokens"] for d in self.usage_per_day),
            "output_tokens": sum(d["output_tokens"] for d in self.usage_per_day),
            "cost_usd": sum(d["cost_usd"] for d in self.usage_per_day),
            "unknown_usage": sum(d["unknown_usage"] for d in self.usage_per_day),
        }


def load_analytics(
    engine: Engine,
    window: Window,
    *,
    prices: Mapping[str, Price] | None = None,
    faithfulness_threshold: float = 0.5,
    top: int = 10,
    comments: int = 10,
    owner: str | None = None,
) -> Analytics:
    """Read every analytics figure of ``window`` in one read transaction (one consistent snapshot).

    Args:
        engine: the chat log's engine (SQLite or PostgreSQL, schema at head).
        window: the time window.
        prices: the price table (``monitoring._attributes.parse_prices(settings.prices)``);
            None prices nothing (cost 0).
        faithfulness_threshold: scores below it are "low" (RAGLOOP_FAITHFULNESS_THRESHOLD).
        top: how many refused questions and drift clusters to list.
        comments: how many recent comments to list.
        owner: None reads everyone's free text (an admin); a user id reads only that user's
            comments, refused questions and drift example questions (``conversations.user_id``,
            ``feedback.rater``). Counts, shares, latency, cost and drift status stay global.

    Returns:
        The figures; empty series (zero-filled days) on an empty log.
    """
    with engine.connect() as conn:
        daily, latency = _daily_rows(conn, window), _latency_values(conn, window)
        total, ttft = latency_percentiles(conn, window, latency)
        run = latest_drift(conn)
        return Analytics(
            window=window,
            turns_per_day=turns_per_day(conn, window, daily),
            feedback=feedback_share(conn, window),
            feedback_per_day=feedback_per_day(conn, window),
            comments=recent_comments(conn, window, comments, owner=owner),
            faithfulness=faithfulness_distribution(conn, window, faithfulness_threshold),
            refused=top_refused(conn, window, top, owner=owner),
            latency=total,
            ttft=ttft,
            latency_per_day=latency_per_day(conn, window, latency),
            usage_per_day=usage_per_day(conn, window, prices or {}, daily),
            drift=run,
            drift_clusters=top_clusters(conn, run["run_id"], top, owner=owner) if run else [],
            labeling=labeling_queue(conn),
            injections=injected_turns(
                conn, window, sum(r.n for r in daily if r.status != STATUS_REJECTED), top, owner=owner
            ),
        )


def _day(conn: Connection, col: Any) -> ColumnElement[str]:
    """``YYYY-MM-DD`` of a timestamp column, in UTC."""
    if conn.dialect.name == "sqlite":
        return func.date(col)  # the log stores UTC as 'YYYY-MM-DD HH:MM:SS.ffffff'
    return func.to_char(func.timezone("UTC", col), "YYYY-MM-DD")


def _in(col: Any, window: Window) -> ColumnElement[bool]:
    return and_(col >= window.since, col < window.until)


def _count_if(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _fill(days: Sequence[str], rows: Mapping[str, dict[str, Any]], zero: dict[str, Any]) -> list[dict]:
    """One row per day of the window: the query's row, else ``zero``."""
    return [{"day": d, **rows.get(d, zero)} for d in days]


def _daily_rows(conn: Connection, window: Window) -> list[Any]:
    """One scan of the window's turns, grouped by (day, status, model): counts and known tokens.

    A turn row is large (it holds the query embedding), so each scan of ``turns`` is what costs:
    turns per day and usage per day come from this one.
    """
    known = and_(turns.c.input_tokens.is_not(None), turns.c.output_tokens.is_not(None))
    day = _day(conn, turns.c.created_at).label("day")
    query = (
        select(
            day,
            turns.c.status,
            turns.c.model,
            func.count().label("n"),
            func.coalesce(func.sum(case((known, turns.c.input_tokens), else_=0)), 0).label("inp"),
            func.coalesce(func.sum(case((known, turns.c.output_tokens), else_=0)), 0).label("out"),
            _count_if(~known).label("unknown"),
        )
        .where(_in(turns.c.created_at, window))
        .group_by(day, turns.c.status, turns.c.model)
    )
    return list(conn.execute(query))


_OUTCOMES = ("turns", "ok", "refused", "errors", "cancelled", "rejected")


def _outcome(status: str) -> str | None:
    if status == STATUS_OK:
        return "ok"
    if status in REFUSAL_STATUSES:
        return "refused"
    return {STATUS_ERROR: "errors", STATUS_CANCELLED: "cancelled", STATUS_REJECTED: "rejected"}.get(status)


def turns_per_day(
    conn: Connection, window: Window, rows: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Turns per UTC day of the window, by outcome (zero-filled); ``turns`` leaves out ``rejected``.

    Args:
        conn: an open connection.
        window: the time window.
        rows: :func:`_daily_rows` already read (None reads them).
    """
    out: dict[str, dict[str, Any]] = {}
    for r in _daily_rows(conn, window) if rows is None else rows:
        row = out.setdefault(str(r.day), dict.fromkeys(_OUTCOMES, 0))
        if r.status != STATUS_REJECTED:  # bad input never became a turn the bot answered
            row["turns"] += int(r.n)
        kind = _outcome(r.status)
        if kind:
            row[kind] += int(r.n)
    return _fill(window.days(), out, dict.fromkeys(_OUTCOMES, 0))


def feedback_share(conn: Connection, window: Window) -> dict[str, Any]:
    """Thumbs up and down given (last set) in the window; ``up_share`` is None without any."""
    value = feedback.c.value
    row = conn.execute(
        select(_count_if(value > 0).label("up"), _count_if(value < 0).label("down")).where(
            _in(feedback.c.updated_at, window)
        )
    ).one()
    up, down = int(row.up), int(row.down)
    return {"up": up, "down": down, "up_share": up / (up + down) if up + down else None}


def feedback_per_day(conn: Connection, window: Window) -> list[dict[str, Any]]:
    """Thumbs up and down per UTC day of their last change (zero-filled)."""
    day = _day(conn, feedback.c.updated_at).label("day")
    query = (
        select(
            day, _count_if(feedback.c.value > 0).label("up"), _count_if(feedback.c.value < 0).label("down")
        )
        .where(_in(feedback.c.updated_at, window))
        .group_by(day)
    )
    rows = {str(r.day): {"up": int(r.up), "down": int(r.down)} for r in conn.execute(query)}
    return _fill(window.days(), rows, {"up": 0, "down": 0})


def _owned(owner: str) -> ColumnElement[bool]:
    """The turn (``turns`` row) is in one of ``owner``'s conversations."""
    return turns.c.conversation_id.in_(
        select(conversations.c.conversation_id).where(conversations.c.user_id == owner)
    )


def recent_comments(
    conn: Connection, window: Window, limit: int = 10, *, owner: str | None = None
) -> list[dict[str, Any]]:
    """The newest non-empty feedback comments with the question they are about.

    Args:
        conn: an open connection.
        window: the time window.
        limit: how many to list.
        owner: only the comments ``owner`` wrote on their own turns (None: everyone's).
    """
    query = (
        select(
            feedback.c.updated_at.label("at"),
            feedback.c.value,
            feedback.c.comment,
            turns.c.user_message.label("question"),
            feedback.c.turn_id,
        )
        .join(turns, turns.c.turn_id == feedback.c.turn_id)
        .where(_in(feedback.c.updated_at, window), feedback.c.comment.is_not(None), feedback.c.comment != "")
        .order_by(feedback.c.updated_at.desc(), feedback.c.feedback_id.desc())
        .limit(limit)
    )
    if owner is not None:
        query = query.where(feedback.c.rater == owner, _owned(owner))
    return [dict(r._mapping) for r in conn.execute(query)]


def _bin(score: Any) -> ColumnElement[int]:
    """The index of a score's bin in :data:`BIN_EDGES` (scores at or above the last edge: last bin)."""
    whens = [(score < edge, i) for i, edge in enumerate(BIN_EDGES[:-1])]
    return case(*whens, else_=len(BIN_EDGES) - 1)


def faithfulness_distribution(
    conn: Connection, window: Window, threshold: float, evaluators: Sequence[str] = FAITHFULNESS_EVALUATORS
) -> list[dict[str, Any]]:
    """Score histogram and the share below ``threshold``, per evaluator with scores in the window."""
    ev = _evaluations.c
    scope = and_(_in(ev.created_at, window), ev.score.is_not(None), ev.evaluator.in_(list(evaluators)))
    bin_, low = _bin(ev.score).label("bin"), case((ev.score < threshold, 1), else_=0).label("low")
    hist = conn.execute(
        select(ev.evaluator, bin_, low, func.count().label("n"))
        .where(scope)
        .group_by(ev.evaluator, bin_, low)
    ).all()
    out = []
    for name in evaluators:
        bins, k = [0] * len(BIN_EDGES), 0
        for r in hist:
            if r.evaluator == name:
                bins[int(r.bin)] += int(r.n)
                k += int(r.n) * int(r.low)
        n = sum(bins)
        if n:
            out.append(
                {
                    "evaluator": name,
                    "n": n,
                    "low": k,
                    "low_share": k / n,
                    "threshold": threshold,
                    "bins": bins,
                }
            )
    return out


def top_refused(
    conn: Connection, window: Window, limit: int = 10, *, owner: str | None = None
) -> list[dict[str, Any]]:
    """The questions refused most often (case and surrounding blanks ignored), most first.

    With ``owner``, only the questions asked in ``owner``'s conversations.
    """
    question = func.lower(func.trim(turns.c.user_message)).label("question")
    query = (
        select(question, func.count().label("n"), func.max(turns.c.created_at).label("last"))
        .where(_in(turns.c.created_at, window), turns.c.status.in_(REFUSAL_STATUSES))
        .group_by(question)
        .order_by(func.count().desc(), func.max(turns.c.created_at).desc())
        .limit(limit)
    )
    if owner is not None:
        query = query.where(_owned(owner))
    return [{"question": r.question, "count": int(r.n), "last": _when(r.last)} for r in conn.execute(query)]


def _when(value: Any) -> Any:
    """A timestamp as a datetime (SQLite's ``max()`` of a timestamp comes back as text)."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def _epoch_day(conn: Connection, col: Any) -> ColumnElement[int]:
    """Days since 1970-01-01 (UTC) of a timestamp column, as an integer."""
    if conn.dialect.name == "sqlite":
        return cast(func.strftime("%s", col), Integer) // 86400
    return cast(func.floor(extract("epoch", col) / 86400), Integer)


def _latency_values(conn: Connection, window: Window) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(epoch day, total_ms, ttft_ms) of every answered turn of the window; NaN where unknown.

    The one aggregate not left to SQL: SQLite has no percentile function, and ranking with window
    functions (one sort per measure and grouping) cost three times this narrow scan plus numpy.
    Numbers only, so the rows become one float array in a single conversion.
    """
    query = select(_epoch_day(conn, turns.c.created_at), turns.c.total_ms, turns.c.ttft_ms).where(
        _in(turns.c.created_at, window), turns.c.status == STATUS_OK
    )
    # Plain tuples: numpy converts a list of SQLAlchemy rows fifty times slower.
    values = np.array([tuple(r) for r in conn.execute(query)], dtype=float).reshape(-1, 3)
    return values[:, 0], values[:, 1], values[:, 2]


def _iso_day(epoch_day: float) -> str:
    return (_EPOCH + timedelta(days=int(epoch_day))).isoformat()


def nearest_rank(values: np.ndarray, percentiles: Sequence[int] = PERCENTILES) -> list[float | None]:
    """The nearest-rank percentiles (value at rank ``ceil(p/100 * n)`` of the sorted values), NaN ignored.

    The same definition as numpy's ``method="inverted_cdf"``; None for each when no value is known.
    """
    v = np.sort(values[~np.isnan(values)])
    return [float(v[(p * len(v) + 99) // 100 - 1]) if len(v) else None for p in percentiles]


def _per_day(days: np.ndarray, values: np.ndarray) -> dict[str, tuple[int, list[float]]]:
    """Nearest-rank :data:`PERCENTILES` of ``values`` per epoch day: ``{"YYYY-MM-DD": (n, [p50, p95])}``."""
    keep = ~np.isnan(values)
    d, v = days[keep], values[keep]
    order = np.lexsort((v, d))
    d, v = d[order], v[order]
    uniq, start, count = np.unique(d, return_index=True, return_counts=True)
    picks = [v[start + (p * count + 99) // 100 - 1] for p in PERCENTILES]
    return {_iso_day(day): (int(count[i]), [float(x[i]) for x in picks]) for i, day in enumerate(uniq)}


def latency_percentiles(
    conn: Connection, window: Window, values: tuple[np.ndarray, ...] | None = None
) -> tuple[Percentiles, Percentiles]:
    """Total latency and time to first token of answered turns: (total, ttft) percentiles in ms.

    Args:
        conn: an open connection.
        window: the time window.
        values: :func:`_latency_values` already read (None reads them).
    """
    _, total, ttft = _latency_values(conn, window) if values is None else values
    out = []
    for v in (total, ttft):
        p50, p95 = nearest_rank(v)
        out.append(Percentiles(int((~np.isnan(v)).sum()), p50, p95))
    return out[0], out[1]


def latency_per_day(
    conn: Connection, window: Window, values: tuple[np.ndarray, ...] | None = None
) -> list[dict[str, Any]]:
    """Per UTC day: p50/p95 of total latency and of time to first token (ms; None without data)."""
    days, total, ttft = _latency_values(conn, window) if values is None else values
    zero: dict[str, Any] = {"n": 0, "total_p50": None, "total_p95": None, "ttft_p50": None, "ttft_p95": None}
    out: dict[str, dict[str, Any]] = {}
    for name, v in (("total", total), ("ttft", ttft)):
        for day, (n, (p50, p95)) in _per_day(days, v).items():
            row = out.setdefault(day, dict(zero))
            row[f"{name}_p50"], row[f"{name}_p95"] = p50, p95
            if name == "total":
                row["n"] = n
    return _fill(window.days(), out, zero)


def usage_per_day(
    conn: Connection, window: Window, prices: Mapping[str, Price], rows: Sequence[Any] | None = None
) -> list[dict[str, Any]]:
    """Tokens and estimated cost per UTC day (zero-filled), priced per model by the price table.

    A turn counts toward tokens and cost only when both its counts are known; the cost of the
    known counts is exact because :func:`~monitoring._attributes.estimate_cost` is linear.
    ``unknown_usage`` counts answered turns without counts (their cost is unknown, not zero).

    Args:
        conn: an open connection.
        window: the time window.
        prices: the price table.
        rows: :func:`_daily_rows` already read (None reads them).
    """
    zero = {"input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0, "unknown_usage": 0}
    out: dict[str, dict[str, Any]] = {}
    for r in _daily_rows(conn, window) if rows is None else rows:
        row = out.setdefault(str(r.day), dict(zero))
        row["input_tokens"] += int(r.inp)
        row["output_tokens"] += int(r.out)
        row["cost_usd"] += estimate_cost(prices, r.model, int(r.inp), int(r.out)) or 0.0
        if r.status == STATUS_OK:
            row["unknown_usage"] += int(r.unknown)
    return _fill(window.days(), out, zero)


_RUN_KEYS: tuple[str, ...] = ("run_id", "created_at", "alarm", "window_start", "window_end")
_RUN_KEYS += ("n_reference", "n_current", "query_p_value", "answer_p_value", "features_p_value")


def latest_drift(conn: Connection) -> dict[str, Any] | None:
    """The newest drift run and its status (``alarm``, ``no drift``, ``insufficient data``), or None."""
    row = (
        conn.execute(select(drift_runs).order_by(drift_runs.c.created_at.desc()).limit(1)).mappings().first()
    )
    if row is None:
        return None
    tests = row["tests"] or []
    insufficient = [t.get("name") for t in tests if t.get("status") == "insufficient_data"]
    decided = [t for t in tests if t.get("status", "decided") == "decided"]
    status = (
        "alarm" if row["alarm"] else ("insufficient data" if insufficient and not decided else "no drift")
    )
    return {**{k: row[k] for k in _RUN_KEYS}, "status": status, "insufficient": insufficient}


def top_clusters(
    conn: Connection, run_id: str, limit: int = 10, *, owner: str | None = None
) -> list[dict[str, Any]]:
    """The top clusters of a drift run by rank, with their example questions.

    The stored examples are anyone's questions: with ``owner``, each cluster's examples are
    instead ``owner``'s own questions among its member turns (none when they have none there).
    """
    c = drift_clusters.c
    query = (
        select(c.rank, c.size, c.current_share, c.reference_share, c.excess, c.examples)
        .add_columns(*([c.turn_ids] if owner is not None else []))
        .where(c.run_id == run_id)
        .order_by(c.rank)
        .limit(limit)
    )
    rows = [dict(r._mapping) for r in conn.execute(query)]
    if owner is None:
        return [{**r, "examples": list(r["examples"] or [])} for r in rows]
    members = {r["rank"]: [str(t) for t in r.pop("turn_ids", None) or []] for r in rows}
    wanted = sorted({t for ids in members.values() for t in ids})
    mine: dict[str, str] = {}
    for start in range(0, len(wanted), 500):  # bounded IN lists
        found = select(turns.c.turn_id, turns.c.user_message).where(
            turns.c.turn_id.in_(wanted[start : start + 500]), _owned(owner)
        )
        mine.update({t: q for t, q in conn.execute(found) if q})
    out = []
    for r in rows:
        own = list(dict.fromkeys(mine[t] for t in members[r["rank"]] if t in mine))
        out.append({**r, "examples": own[:3]})
    return out


def labeling_queue(conn: Connection) -> dict[str, int]:
    """The labeling loop's queue: turns selected, pairs built, pairs labeled, pairs pending a label."""
    labeled = exists().where(_labels.c.pair_id == _pairs.c.pair_id)
    row = conn.execute(
        select(
            select(func.count()).select_from(_selections).scalar_subquery().label("selected"),
            select(func.count()).select_from(_pairs).scalar_subquery().label("pairs"),
            select(func.count()).select_from(_pairs).where(labeled).scalar_subquery().label("labeled"),
        )
    ).one()
    selected, n_pairs, n_labeled = int(row.selected), int(row.pairs), int(row.labeled)
    return {"selected": selected, "pairs": n_pairs, "labeled": n_labeled, "pending": n_pairs - n_labeled}


def injected_turns(
    conn: Connection, window: Window, n_turns: int, limit: int = 10, *, owner: str | None = None
) -> dict[str, Any]:
    """Turns of the window flagged for prompt injection (``turns.flags["injection"]`` true).

    Args:
        conn: an open connection.
        window: the time window.
        n_turns: all turns of the window (the share's denominator).
        limit: how many of the newest flagged turns to list.
        owner: list only ``owner``'s flagged turns (the count stays global).
    """
    flagged = and_(_in(turns.c.created_at, window), turns.c.flags["injection"].as_boolean().is_(True))
    n = int(conn.execute(select(func.count()).select_from(turns).where(flagged)).scalar_one())
    query = (
        select(turns.c.turn_id, turns.c.created_at, turns.c.user_message, turns.c.flags)
        .where(flagged)
        .order_by(turns.c.created_at.desc(), turns.c.turn_id)
        .limit(limit)
    )
    if owner is not None:
        query = query.where(_owned(owner))
    recent = [
        {
            "at": r.created_at,
            "question": r.user_message,
            "sources": list((r.flags or {}).get("injection_sources") or []),
            "rules": list((r.flags or {}).get("injection_rules") or []),
            "turn_id": r.turn_id,
        }
        for r in conn.execute(query)
    ]
    return {"turns": n, "share": n / n_turns if n_turns else None, "recent": recent}


def _float(v: Any) -> float | None:
    return None if v is None else float(v)
