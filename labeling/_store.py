"""The labeling tables (``selections``, ``pairs``, ``labels``) and :class:`PairStore`.

The tables live on :data:`chatlog.metadata`; their schema is created and changed only by the Alembic
revision ``0004`` in ``chatlog/migrations/versions``. Saving a pair enqueues a ``pair`` outbox item in
the same transaction, so every labeling backend (a sink) receives it exactly once per change.
"""

from __future__ import annotations

import importlib
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection

from chatlog import ChatLog, metadata, now
from chatlog._base import write_transaction

log = logging.getLogger(__name__)

#: The choices an annotator (or the judge) can make between responses A and B.
CHOICES = ("A", "B", "tie")
#: Why the worse answer failed; ``none`` when neither failed.
FAILURE_TYPES = ("hallucination", "retrieval_miss", "off_topic", "refusal", "wrong_language", "other", "none")
#: The outbox item kind of a saved pair.
PAIR_KIND = "pair"

selections = Table(
    "selections",
    metadata,
    Column("turn_id", String(64), ForeignKey("turns.turn_id"), primary_key=True),
    Column("reasons", JSON, nullable=False),  # ["thumbs_down", "low_faithfulness", ...]
    Column("selected_at", DateTime(timezone=True), nullable=False, index=True),
    Column("run_id", String(64), nullable=False, index=True),
)

pairs = Table(
    "pairs",
    metadata,
    Column("pair_id", String(64), primary_key=True),  # the turn id of the original answer
    Column("question", Text, nullable=False),
    Column("context", JSON, nullable=False),  # [passage text, ...] as the model saw them
    Column("response_a", Text, nullable=False),
    Column("response_b", Text, nullable=False),
    Column("a_is_original", Boolean, nullable=False),
    Column("strategy", String(32), nullable=False),  # how the alternative was made
    # {preferred, score (P(A better)), reasoning, agent, order_consistent, local_score_a, local_score_b}
    Column("judge", JSON),
    Column("meta", JSON),  # selection reasons, candidate model, prompt versions
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
)

labels = Table(
    "labels",
    metadata,
    Column("label_id", Integer, primary_key=True, autoincrement=True),
    Column("pair_id", String(64), ForeignKey("pairs.pair_id"), nullable=False, index=True),
    Column("backend", String(32), nullable=False),  # "argilla", "labelstudio", ...
    Column("annotator", String(200), nullable=False),
    Column("choice", String(8), nullable=False),  # A | B | tie
    Column("failure_type", String(32), nullable=False),
    Column("correction", Text),
    Column("labeled_at", DateTime(timezone=True), nullable=False),
    UniqueConstraint("pair_id", "backend", "annotator", name="uq_labels_pair_backend_annotator"),
)


class UnknownPairError(LookupError):
    """A label named a pair id the store does not hold."""


def _enqueue_pair(chatlog: ChatLog, conn: Connection, pair_id: str) -> None:
    """Enqueue the ``pair`` outbox item in ``conn``'s transaction (skipped while no outbox exists)."""
    try:
        outbox = importlib.import_module("chatlog.outbox")
    except ImportError:  # the outbox (issue 9) has not landed in this checkout
        log.debug("no chatlog.outbox: pair %s is saved but not enqueued", pair_id)
        return
    routes = getattr(chatlog, "routes", None)
    sinks = routes(PAIR_KIND) if callable(routes) else ()
    outbox.enqueue(conn, kind=PAIR_KIND, key=pair_id, payload={"pair_id": pair_id}, sinks=sinks)


def _upsert(conn: Connection, table: Table, values: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Insert ``values`` or update the row with the same ``keys`` (SQLite and PostgreSQL)."""
    name = conn.dialect.name
    if name in ("sqlite", "postgresql"):
        dialect = importlib.import_module(f"sqlalchemy.dialects.{name}")
        stmt = dialect.insert(table).values(**values)
        changed = {k: v for k, v in values.items() if k not in keys}
        conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=changed))
        return
    where = [table.c[k] == values[k] for k in keys]  # pragma: no cover - other databases
    if not conn.execute(update(table).where(*where).values(**values)).rowcount:
        conn.execute(insert(table).values(**values))


class PairStore:
    """Reads and writes selections, pairs and labels of one chat log."""

    def __init__(self, chatlog: ChatLog) -> None:
        """Use ``chatlog``'s engine; the tables must exist (revision ``0004``)."""
        self.chatlog = chatlog
        self.engine = chatlog.engine

    # --- selections ------------------------------------------------------------------------------
    def record_selections(self, selected: Mapping[str, Sequence[str]], run_id: str) -> int:
        """Store the reasons of each selected turn (``turn_id -> reasons``); returns the rows written."""
        at = now()
        with self.engine.begin() as conn:
            for turn_id, reasons in selected.items():
                row = {"turn_id": turn_id, "reasons": list(reasons), "selected_at": at, "run_id": run_id}
                _upsert(conn, selections, row, ["turn_id"])
        return len(selected)

    def selected_ids(self) -> set[str]:
        """Turn ids selected by any earlier run."""
        with self.engine.connect() as conn:
            return {r[0] for r in conn.execute(select(selections.c.turn_id))}

    def selection(self, turn_id: str) -> dict[str, Any] | None:
        """The selection row of a turn, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(selections).where(selections.c.turn_id == turn_id)).mappings().first()
        return dict(row) if row else None

    # --- pairs -----------------------------------------------------------------------------------
    def save_pair(
        self, pair: Mapping[str, Any], still_wanted: Callable[[Connection], bool] | None = None
    ) -> bool:
        """Insert or update one pair and enqueue it for the labeling backends, in one transaction.

        Args:
            pair: the ``pairs`` columns; ``pair_id``, ``question``, ``context``, ``response_a``,
                ``response_b``, ``a_is_original`` and ``strategy`` are required.
            still_wanted: asked inside the saving transaction (before any write); False saves and
                enqueues nothing. The thumbs-down path checks there that the rating is still
                negative, so a rating changed while the pair was being made is never pushed.

        Returns:
            True when the pair was saved (and enqueued), False when ``still_wanted`` said no.

        Raises:
            ValueError: a required column is missing or the judge's verdict is malformed.
        """
        missing = [
            k for k in ("pair_id", "question", "response_a", "response_b", "strategy") if not pair.get(k)
        ]
        if missing or "a_is_original" not in pair:
            raise ValueError(f"a pair needs {', '.join(missing or ['a_is_original'])}")
        judge = pair.get("judge")
        if judge is not None and judge.get("preferred") not in CHOICES:
            raise ValueError(f"judge.preferred must be one of {CHOICES}, got {judge.get('preferred')!r}")
        at = now()
        row = {c.name: pair[c.name] for c in pairs.columns if c.name in pair}
        row.setdefault("context", [])
        row["updated_at"] = at
        with write_transaction(self.engine) as conn:
            if still_wanted is not None and not still_wanted(conn):
                return False
            created = conn.execute(
                select(pairs.c.created_at).where(pairs.c.pair_id == row["pair_id"])
            ).first()
            row["created_at"] = created[0] if created else row.get("created_at") or at
            _upsert(conn, pairs, row, ["pair_id"])
            _enqueue_pair(self.chatlog, conn, str(row["pair_id"]))
        return True

    def mark_rating_withdrawn(self, pair_id: str, withdrawn: Mapping[str, Any] | None) -> bool:
        """Record (or clear, with None) that the thumbs-down a pair was made for has been withdrawn.

        The pair stays (it may be labeled already); its ``meta["rating_withdrawn"]`` says who
        changed the rating and when, so exports and reviewers can tell. Nothing is re-enqueued.

        Returns:
            True when the pair's meta changed.
        """
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(pairs.c.meta).where(pairs.c.pair_id == pair_id)).first()
            if row is None:
                return False
            meta = dict(row[0] or {})
            if withdrawn is None:
                if "rating_withdrawn" not in meta:
                    return False
                meta.pop("rating_withdrawn")
            else:
                if "rating_withdrawn" in meta:
                    return False
                meta["rating_withdrawn"] = dict(withdrawn)
            conn.execute(update(pairs).where(pairs.c.pair_id == pair_id).values(meta=meta))
        return True

    def get(self, pair_id: str) -> dict[str, Any] | None:
        """One pair as a dict, or None."""
        with self.engine.connect() as conn:
            row = conn.execute(select(pairs).where(pairs.c.pair_id == pair_id)).mappings().first()
        return dict(row) if row else None

    def iter_pairs(self, since: datetime | None = None, batch_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Pairs updated at or after ``since`` (all when None), oldest update first."""
        query = select(pairs).order_by(pairs.c.updated_at, pairs.c.pair_id)
        if since is not None:
            query = query.where(pairs.c.updated_at >= since)
        with self.engine.connect() as conn:
            for row in conn.execution_options(yield_per=batch_size).execute(query).mappings():
                yield dict(row)

    def count_pairs(self) -> int:
        """Number of pairs stored."""
        from sqlalchemy import func

        with self.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(pairs)).scalar_one())

    # --- labels ----------------------------------------------------------------------------------
    def record_label(
        self,
        pair_id: str,
        *,
        backend: str,
        annotator: str,
        choice: str,
        failure_type: str = "none",
        correction: str | None = None,
        labeled_at: datetime | None = None,
    ) -> None:
        """Insert or update the label of (pair, backend, annotator).

        Raises:
            ValueError: ``choice`` or ``failure_type`` is not one of :data:`CHOICES` / :data:`FAILURE_TYPES`.
            UnknownPairError: no pair has this id.
        """
        if choice not in CHOICES:
            raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
        if failure_type not in FAILURE_TYPES:
            raise ValueError(f"failure_type must be one of {FAILURE_TYPES}, got {failure_type!r}")
        row = {
            "pair_id": pair_id,
            "backend": backend,
            "annotator": annotator,
            "choice": choice,
            "failure_type": failure_type,
            "correction": (correction or "").strip() or None,
            "labeled_at": labeled_at or now(),
        }
        with self.engine.begin() as conn:
            if conn.execute(select(pairs.c.pair_id).where(pairs.c.pair_id == pair_id)).first() is None:
                raise UnknownPairError(pair_id)
            _upsert(conn, labels, row, ["pair_id", "backend", "annotator"])

    def labels_for(self, pair_id: str) -> list[dict[str, Any]]:
        """Every label of a pair, oldest first."""
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(labels)
                .where(labels.c.pair_id == pair_id)
                .order_by(labels.c.labeled_at, labels.c.label_id)
            ).mappings()
            return [dict(r) for r in rows]

    def all_labels(self) -> dict[str, list[dict[str, Any]]]:
        """Every label, grouped by pair id (each list oldest first)."""
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        with self.engine.connect() as conn:
            query = select(labels).order_by(labels.c.labeled_at, labels.c.label_id)
            for r in conn.execute(query).mappings():
                out[r["pair_id"]].append(dict(r))
        return dict(out)

    def agreement(self) -> dict[str, Any]:
        """Inter-annotator agreement on pairs labeled by at least two annotators (see :func:`agreement`)."""
        return agreement(self.all_labels().values())


def agreement(groups: Iterable[Sequence[Mapping[str, Any]]]) -> dict[str, Any]:
    """Percent agreement and Cohen's kappa of the choice, over records with two or more annotators.

    Args:
        groups: the labels of each record (dicts with ``annotator`` and ``choice``), oldest first.

    Returns:
        ``{"records": n, "percent_agreement": p, "cohen_kappa": k}``: ``p`` is the share of
        annotator pairs (every pair of annotators on a record) that chose the same; ``k`` compares
        the first two annotators of each record (scikit-learn's ``cohen_kappa_score``). Both are None
        when no record has two annotators; ``k`` is None when it is undefined (one label only).
    """
    first, second = [], []
    same = total = 0
    records = 0
    for group in groups:
        by_annotator: dict[str, str] = {}
        for label in group:
            by_annotator.setdefault(str(label["annotator"]), str(label["choice"]))
        choices = list(by_annotator.values())
        if len(choices) < 2:
            continue
        records += 1
        first.append(choices[0])
        second.append(choices[1])
        for i in range(len(choices)):
            for j in range(i + 1, len(choices)):
                total += 1
                same += choices[i] == choices[j]
    if not records:
        return {"records": 0, "percent_agreement": None, "cohen_kappa": None}
    kappa: float | None = None
    if len(set(first) | set(second)) > 1:
        from sklearn.metrics import cohen_kappa_score

        kappa = float(cohen_kappa_score(first, second))
    return {"records": records, "percent_agreement": same / total, "cohen_kappa": kappa}
