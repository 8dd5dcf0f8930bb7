"""Selection: which logged turns deserve a preference pair, and why (pure functions, then one shell).

A turn is flagged when any of these holds (each is a reason recorded on the selection):

* ``thumbs_down``: a rater gave it a thumbs-down;
* ``low_faithfulness``: its local faithfulness score is under the threshold, or the grounding gate
  replaced the model's answer for being unsupported;
* ``empty_answer``: the answer is empty or only citation markers (``"[1] [2] [3]"``);
* ``implicit_feedback``: the user's next message in the conversation rejects it (:mod:`._implicit`);
* ``drift_cluster``: it belongs to a cluster of a drift run that raised an alarm;
* ``injection``: a passage given to the model held instructions addressed to it (prompt injection
  in a retrieved document: ``turns.flags["injection"]``, set by the chain, ``retrieval._injection``),
  so the answer may have followed them.

Flagged turns are ranked (more reasons first, thumbs-down before the rest, newest first), near-duplicate
questions are dropped by the cosine similarity of their stored query embeddings, and the run is capped.
Thumbs-up turns without a thumbs-down are returned as positives (unpaired KTO data).

When the grounding gate (``chatbot/_gate.py``) replaced the model's draft, ``turns.answer`` holds what
the user saw and ``turns.extra["gate"]`` the draft and the reason: selection reads the draft
(:func:`model_answer`), since the model's answer is what a preference pair should correct.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from labeling._implicit import REPHRASE_SIMILARITY, cosine, detect

THUMBS_DOWN = "thumbs_down"
LOW_FAITHFULNESS = "low_faithfulness"
EMPTY_ANSWER = "empty_answer"
IMPLICIT_FEEDBACK = "implicit_feedback"
DRIFT_CLUSTER = "drift_cluster"
INJECTION = "injection"
#: Every reason, in ranking priority (a thumbs-down is the strongest signal).
REASONS = (THUMBS_DOWN, IMPLICIT_FEEDBACK, LOW_FAITHFULNESS, EMPTY_ANSWER, INJECTION, DRIFT_CLUSTER)
#: Turn statuses that carry an answer worth pairing.
SELECTABLE_STATUSES = ("ok", "no_context")

#: Nothing but citation markers: "[1] [2] [3]", "[1], [2].", "[1, 2]" (a bare "42" is an answer).
_ONLY_CITATIONS = re.compile(r"^\s*(?:\[\s*\d+(?:\s*[,;\-]\s*\d+)*\s*\]\s*[,.;:]?\s*)*$")


@dataclass(frozen=True)
class Signals:
    """Everything selection knows about turns besides the turns themselves.

    Attributes:
        thumbs: turn id -> every feedback value (+1 / -1) its raters gave.
        faithfulness: turn id -> local faithfulness score in [0, 1].
        drift_turn_ids: turns in a cluster of an alarmed drift run.
        threshold: faithfulness under this is ``low_faithfulness``.
        rephrase_similarity: implicit-feedback rephrase threshold.
    """

    thumbs: Mapping[str, Sequence[int]] = field(default_factory=dict)
    faithfulness: Mapping[str, float] = field(default_factory=dict)
    drift_turn_ids: frozenset[str] = frozenset()
    threshold: float = 0.5
    rephrase_similarity: float = REPHRASE_SIMILARITY


@dataclass
class Selection:
    """The outcome of one selection run.

    Attributes:
        selected: turn id -> reasons, in rank order, after de-duplication and the cap.
        positives: thumbs-up turn ids (no thumbs-down), for unpaired KTO rows.
        flagged: how many turns had at least one reason, before de-duplication and the cap.
        duplicates: flagged turns dropped as near-duplicates of a better-ranked one.
        counts: reason -> number of flagged turns with it.
    """

    selected: dict[str, list[str]] = field(default_factory=dict)
    positives: list[str] = field(default_factory=list)
    flagged: int = 0
    duplicates: int = 0
    counts: dict[str, int] = field(default_factory=dict)


#: ``turns.gate`` values meaning the model's draft failed the grounding gate and was replaced.
GATED = ("retried", "extractive", "warned")


def model_answer(turn: Mapping[str, Any]) -> str:
    """The model's own answer: the gate's draft when the gate replaced it, else ``turn["answer"]``."""
    extra = turn.get("extra")
    gate = extra.get("gate") if isinstance(extra, Mapping) else None
    if isinstance(gate, Mapping) and isinstance(gate.get("original_answer"), str):
        return str(gate["original_answer"])
    return str(turn.get("answer") or "")


def is_empty_answer(answer: str | None) -> bool:
    """True for an answer with no words: empty, whitespace, or only citation markers like ``[1] [2]``."""
    return _ONLY_CITATIONS.match(answer or "") is not None


def turn_reasons(turn: Mapping[str, Any], next_turn: Mapping[str, Any] | None, signals: Signals) -> list[str]:
    """The reasons one turn is flagged (empty when it is not), in :data:`REASONS` order.

    Args:
        turn: a chat-log turn (``turn_id``, ``user_message``, ``answer``, ``status``, optional
            ``standalone_question``, ``query_embedding`` as a vector and ``flags``).
        next_turn: the next turn of the same conversation, or None.
        signals: feedback, faithfulness and drift facts.
    """
    if turn.get("status") not in SELECTABLE_STATUSES:
        return []
    tid = turn["turn_id"]
    found = set()
    if any(v < 0 for v in signals.thumbs.get(tid, ())):
        found.add(THUMBS_DOWN)
    score = signals.faithfulness.get(tid)
    if score is not None and score < signals.threshold:
        found.add(LOW_FAITHFULNESS)
    if turn.get("status") == "ok" and is_empty_answer(model_answer(turn)):
        found.add(EMPTY_ANSWER)
    elif turn.get("gate") in GATED:  # the draft was unsupported; the shown answer may score well
        found.add(LOW_FAITHFULNESS)
    if next_turn is not None and next_turn.get("user_message"):
        sim = cosine(turn.get("query_embedding"), next_turn.get("query_embedding"))
        question = turn.get("user_message") or ""
        if detect(question, next_turn["user_message"], sim, signals.rephrase_similarity).dissatisfied:
            found.add(IMPLICIT_FEEDBACK)
    flags = turn.get("flags")
    if isinstance(flags, Mapping) and flags.get(INJECTION) is True:
        found.add(INJECTION)
    if tid in signals.drift_turn_ids:
        found.add(DRIFT_CLUSTER)
    return [r for r in REASONS if r in found]


def with_next(
    turns: Iterable[Mapping[str, Any]],
) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any] | None]]:
    """Pair each turn with the next turn of its conversation.

    ``turns`` must be ordered by (conversation id, creation time), as :func:`load_turns` reads them.
    """
    prev: Mapping[str, Any] | None = None
    for turn in turns:
        if prev is not None:
            same = prev.get("conversation_id") is not None and prev.get("conversation_id") == turn.get(
                "conversation_id"
            )
            yield prev, turn if same else None
        prev = turn
    if prev is not None:
        yield prev, None


def _rank_key(item: tuple[str, list[str], Any, Any]) -> tuple[int, int, float]:
    _, reasons, created, _ = item
    stamp = created.timestamp() if isinstance(created, datetime) else 0.0
    return (-len(reasons), 0 if THUMBS_DOWN in reasons else 1, -stamp)


def dedupe_and_cap(
    flagged: Sequence[tuple[str, list[str], Any, np.ndarray | None]],
    max_selected: int,
    similarity: float,
    exclude_vectors: np.ndarray | None = None,
) -> tuple[dict[str, list[str]], int]:
    """Rank flagged turns, drop near-duplicate questions, keep at most ``max_selected``.

    Args:
        flagged: (turn id, reasons, created_at, query embedding or None) per flagged turn.
        max_selected: the cap for this run.
        similarity: a turn whose query embedding has at least this cosine similarity to one already
            kept is a near-duplicate.
        exclude_vectors: embeddings of turns selected before, shape ``(n, dim)``: their duplicates are
            dropped too.

    Returns:
        (turn id -> reasons of the kept turns in rank order, number dropped as duplicates).
    """
    kept: dict[str, list[str]] = {}
    prior = [] if exclude_vectors is None else [_unit(v) for v in exclude_vectors]
    bank = np.zeros((len(prior) + max_selected, _dim(flagged, prior)), dtype=np.float32)
    n = 0
    for v in prior:
        bank[n], n = v, n + 1
    dropped = 0
    for tid, reasons, _, vec in sorted(flagged, key=_rank_key):
        if len(kept) >= max_selected:
            break
        if vec is not None and len(vec) == bank.shape[1]:
            unit = _unit(vec)
            if n and float(np.max(bank[:n] @ unit)) >= similarity:
                dropped += 1
                continue
            bank[n], n = unit, n + 1
        kept[tid] = reasons
    return kept, dropped


def _dim(flagged: Sequence[tuple[str, list[str], Any, np.ndarray | None]], prior: list[np.ndarray]) -> int:
    for v in prior:
        return len(v)
    for *_, vec in flagged:
        if vec is not None and len(vec):
            return len(vec)
    return 0


def _unit(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    n = float(np.linalg.norm(v))
    return v / n if n else v


def select(
    turns: Iterable[Mapping[str, Any]],
    signals: Signals,
    *,
    max_selected: int,
    dedupe_similarity: float,
    already_selected: Iterable[str] = (),
    exclude_vectors: np.ndarray | None = None,
) -> Selection:
    """Flag, rank, de-duplicate and cap turns.

    Args:
        turns: chat-log turns ordered by (conversation id, creation time); ``query_embedding`` is a
            vector, ``bytes`` (decoded here) or None.
        signals: feedback, faithfulness and drift facts for those turns.
        max_selected: at most this many turns are selected.
        dedupe_similarity: cosine similarity of query embeddings at or above which turns are duplicates.
        already_selected: turn ids selected by earlier runs: never selected again.
        exclude_vectors: query embeddings of those earlier selections, shape ``(n, dim)``: their
            near-duplicates are dropped as duplicates.

    Returns:
        The :class:`Selection`.
    """
    done = set(already_selected)
    out = Selection(counts={r: 0 for r in REASONS})
    flagged: list[tuple[str, list[str], Any, np.ndarray | None]] = []
    for turn, nxt in with_next(_decoded(turns)):
        tid = turn["turn_id"]
        reasons = turn_reasons(turn, nxt, signals)
        if reasons:
            out.flagged += 1
            for r in reasons:
                out.counts[r] += 1
            if tid not in done:
                flagged.append((tid, reasons, turn.get("created_at"), turn.get("query_embedding")))
        elif (
            turn.get("status") in SELECTABLE_STATUSES
            and signals.thumbs.get(tid)
            and min(signals.thumbs[tid]) > 0
        ):
            out.positives.append(tid)
    out.selected, out.duplicates = dedupe_and_cap(
        flagged, max_selected, dedupe_similarity, exclude_vectors=exclude_vectors
    )
    return out


def _decoded(turns: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    """Turns whose ``query_embedding`` bytes are decoded to float32 vectors (a cheap view)."""
    for turn in turns:
        vec = turn.get("query_embedding")
        if isinstance(vec, bytes | bytearray | memoryview):
            turn = {**turn, "query_embedding": np.frombuffer(bytes(vec), dtype="<f4")}
        yield turn


# --- the I/O shell: read the chat log ------------------------------------------------------------


def load_turns(chatlog: Any, since: datetime | None = None) -> Iterator[dict[str, Any]]:
    """Stream the columns selection needs, ordered by (conversation id, creation time)."""
    from sqlalchemy import select as sql_select

    from chatlog import conversations, turns

    cols = [
        turns.c.turn_id,
        turns.c.conversation_id,
        turns.c.created_at,
        turns.c.status,
        turns.c.user_message,
        turns.c.answer,
        turns.c.query_embedding,
        turns.c.gate,
        turns.c.extra,
        turns.c.flags,
    ]
    # A deleted conversation's turns stay in the log for monitoring, but never become training data.
    query = (
        sql_select(*cols)
        .outerjoin(conversations, conversations.c.conversation_id == turns.c.conversation_id)
        .where(conversations.c.deleted_at.is_(None))
        .order_by(turns.c.conversation_id, turns.c.created_at, turns.c.turn_id)
    )
    if since is not None:
        query = query.where(turns.c.created_at >= since)
    with chatlog.engine.connect() as conn:
        for row in conn.execution_options(yield_per=2000).execute(query).mappings():
            yield dict(row)


def load_vectors(chatlog: Any, turn_ids: Iterable[str], chunk: int = 500) -> np.ndarray | None:
    """Query embeddings of ``turn_ids`` (turns without one are skipped), shape ``(n, dim)``, or None."""
    from sqlalchemy import select as sql_select

    from chatlog import decode_vector, turns

    ids, out = list(turn_ids), []
    with chatlog.engine.connect() as conn:
        for start in range(0, len(ids), chunk):
            rows = conn.execute(
                sql_select(turns.c.query_embedding).where(turns.c.turn_id.in_(ids[start : start + chunk]))
            )
            out += [v for (blob,) in rows if (v := decode_vector(blob)) is not None and v.size]
    return np.vstack(out) if out else None


def load_signals(
    chatlog: Any,
    *,
    since: datetime | None,
    threshold: float,
    rephrase_similarity: float = REPHRASE_SIMILARITY,
    turn_ids: Sequence[str] | None = None,
) -> Signals:
    """Feedback, faithfulness scores and alarmed drift clusters from the chat log.

    Args:
        chatlog: the chat log.
        since: only evaluations and drift runs at or after this time (None: all).
        threshold: faithfulness under this is low.
        rephrase_similarity: the implicit-feedback rephrase threshold.
        turn_ids: only these turns' feedback and scores (the event-driven path reads one turn).
    """
    from sqlalchemy import select as sql_select
    from sqlalchemy import true

    from chatlog import feedback
    from eval import LocalFaithfulness, evaluations

    thumbs: dict[str, list[int]] = {}
    faith: dict[str, float] = {}
    drift: set[str] = set()
    with chatlog.engine.connect() as conn:
        fb_query = sql_select(feedback.c.turn_id, feedback.c.value)
        if turn_ids is not None:
            fb_query = fb_query.where(feedback.c.turn_id.in_(list(turn_ids)))
        for tid, value in conn.execute(fb_query):
            thumbs.setdefault(tid, []).append(int(value))
        query = sql_select(evaluations.c.turn_id, evaluations.c.score).where(
            evaluations.c.evaluator == LocalFaithfulness.name, evaluations.c.score.is_not(None)
        )
        if since is not None:
            query = query.where(evaluations.c.created_at >= since)
        if turn_ids is not None:
            query = query.where(evaluations.c.turn_id.in_(list(turn_ids)))
        faith = {tid: float(score) for tid, score in conn.execute(query)}
        runs, clusters = _drift_tables()
        query = (
            sql_select(clusters.c.turn_ids)
            .join(runs, runs.c.run_id == clusters.c.run_id)
            .where(runs.c.alarm == true(), clusters.c.excess > 0)
        )
        if since is not None:
            query = query.where(runs.c.created_at >= since)
        try:
            for (ids,) in conn.execute(query):
                drift.update(ids or [])
        except Exception:  # noqa: BLE001 - no drift run yet (tables absent on a fresh log)
            drift = set()
    return Signals(thumbs, faith, frozenset(drift), threshold, rephrase_similarity)


def _drift_tables() -> tuple[Any, Any]:
    """Light table handles for the drift tables (owned by ``monitoring.drift``; read only here)."""
    from sqlalchemy import JSON, Boolean, DateTime, Float, String, column, table

    runs = table(
        "drift_runs", column("run_id", String), column("alarm", Boolean), column("created_at", DateTime)
    )
    clusters = table(
        "drift_clusters", column("run_id", String), column("excess", Float), column("turn_ids", JSON)
    )
    return runs, clusters
