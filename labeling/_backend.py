"""The small interface every labeling backend implements, and the outbox sink built on it.

A backend (Argilla, Label Studio) knows two things: how to *push* pairs so annotators see them
(idempotent by pair id: pushing again updates, never duplicates) and how to *pull* what annotators
submitted. :class:`BackendSink` turns any backend into an outbox sink for ``pair`` items, and
:func:`pull_labels` writes pulled answers into the chat log as label rows.

The presentation helpers here are pure functions shared by both backends.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from chatlog import redact, redact_tree
from labeling._store import CHOICES, FAILURE_TYPES, PAIR_KIND, UnknownPairError

log = logging.getLogger(__name__)

#: What annotators see instead of an empty answer (an empty answer is itself a selection reason).
EMPTY_ANSWER = "(empty answer)"
#: What annotators see when a turn retrieved nothing.
NO_CONTEXT = "(no context was retrieved)"


@dataclass(frozen=True)
class PulledLabel:
    """One annotator's submitted answer on one pair, as read from a backend.

    Attributes:
        pair_id: the pair (= the original turn's id).
        annotator: the backend's user name of the annotator.
        choice: "A", "B" or "tie".
        failure_type: one of :data:`labeling._store.FAILURE_TYPES`.
        correction: the corrected answer, or None.
        labeled_at: when the answer was last submitted (timezone-aware).
    """

    pair_id: str
    annotator: str
    choice: str
    failure_type: str
    correction: str | None
    labeled_at: datetime


class LabelingBackend(Protocol):
    """A labeling tool behind one interface: push pairs, pull submitted labels."""

    name: str
    failures: dict[str, str]
    """pair id -> why it failed, for the last push (or the answers the last pull skipped)."""

    def push(self, pairs: Sequence[Mapping[str, Any]]) -> list[bool]:
        """Create or update one record/task per pair; one bool per pair (True = stored).

        Idempotent by ``pair_id``: pushing a pair again updates it. May raise on a network error.
        """
        ...

    def pull(self, since: datetime | None = None) -> list[PulledLabel]:
        """Every submitted answer (updated at or after ``since`` when given)."""
        ...

    def count(self) -> int:
        """Records (tasks) the backend holds for our pairs."""
        ...

    def close(self) -> None:
        """Release the client."""
        ...


class PairSource(Protocol):
    """What a sink needs from :class:`labeling.PairStore`."""

    def get(self, pair_id: str) -> dict[str, Any] | None:
        """One pair, or None."""
        ...


class BackendSink:
    """An outbox sink (``chatlog.outbox.Sink``) delivering ``pair`` items to a labeling backend.

    The outbox item carries only the pair id; the sink reads the pair's current row from the chat
    log, so a retry always sends the newest version. ``send`` never raises: a failed push returns
    False for its items (they stay pending and back off), the reason goes to :attr:`errors`
    (per item key) or :attr:`last_error` (the whole batch).

    Attributes:
        name: the backend's name ("argilla", "labelstudio"): the outbox routes by it.
        kinds: ``{"pair"}``.
    """

    kinds: frozenset[str] = frozenset({PAIR_KIND})

    def __init__(self, backend: LabelingBackend, store: PairSource) -> None:
        """Deliver the pairs of ``store`` to ``backend``."""
        self.backend = backend
        self.store = store
        self.name: str = backend.name
        self.errors: dict[str, str] = {}
        self.last_error: str | None = None
        self._lock = threading.Lock()

    def send(self, items: Sequence[Any]) -> list[bool]:
        """Push the pairs of ``items`` (``OutboxItem``s of kind ``pair``); one bool per item."""
        self.errors = {}
        self.last_error = None
        results = [False] * len(items)
        found: list[tuple[int, dict[str, Any]]] = []
        try:
            for i, item in enumerate(items):
                pair_id = str((item.payload or {}).get("pair_id") or item.key)
                pair = self.store.get(pair_id)
                if pair is None:
                    self.errors[item.key] = f"pair {pair_id} is not in the chat log"
                    continue
                found.append((i, pair))
            if not found:
                return results
            with self._lock:  # one push at a time per backend (the worker and a manual push)
                pushed = self.backend.push([pair for _, pair in found])
            for (i, _), ok in zip(found, pushed, strict=True):
                results[i] = bool(ok)
                if not ok:
                    self.errors[items[i].key] = f"{self.name} did not store the pair"
        except Exception as exc:  # noqa: BLE001 - a sink never raises; the items are retried
            self.last_error = f"{self.name}: {type(exc).__name__}: {exc}"[:2000]
            log.warning("labeling sink %s: push failed: %s", self.name, self.last_error)
            return [False] * len(items)
        return results

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Close the backend's client."""
        try:
            self.backend.close()
        except Exception:  # noqa: BLE001 - shutting down never raises
            log.debug("closing %s failed", self.name, exc_info=True)


@dataclass
class PullReport:
    """What :func:`pull_labels` did: labels read, stored, and skipped with the reason."""

    pulled: int = 0
    recorded: int = 0
    unknown_pairs: list[str] = field(default_factory=list)
    invalid: list[str] = field(default_factory=list)


class LabelSink(Protocol):
    """What :func:`pull_labels` needs from :class:`labeling.PairStore`."""

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
        """Upsert one label row."""
        ...


def pull_labels(store: LabelSink, backend: LabelingBackend, since: datetime | None = None) -> PullReport:
    """Read submitted answers from ``backend`` into the chat log (one upserted row per pair and annotator).

    A label for a pair the chat log does not hold, or with a value outside the schema, is skipped
    and named in the report; the others are stored.
    """
    report = PullReport()
    for label in backend.pull(since):
        report.pulled += 1
        try:
            store.record_label(
                label.pair_id,
                backend=backend.name,
                annotator=label.annotator,
                choice=label.choice,
                failure_type=label.failure_type,
                correction=label.correction,
                labeled_at=label.labeled_at,
            )
        except UnknownPairError:
            report.unknown_pairs.append(label.pair_id)
        except ValueError as exc:
            report.invalid.append(f"{label.pair_id}/{label.annotator}: {exc}")
        else:
            report.recorded += 1
    return report


# --- pure presentation helpers shared by the backends -----------------------------------------------
#: The keys of a pair that hold user or model text: masked before a push (``RAGLOOP_REDACT``).
PAIR_TEXT_FIELDS = ("question", "context", "response_a", "response_b")


def outgoing_pair(pair: Mapping[str, Any], redaction: bool = True) -> Mapping[str, Any]:
    """The pair as it may leave the process: PII and secrets masked in its texts and the judge's reasoning.

    Ids, the strategy and the judge's verdict stay as they are (pulling labels matches on the id);
    the chat log keeps the original. ``redaction`` False returns ``pair`` itself.
    """
    if not redaction:
        return pair
    out = {k: redact_tree(v) if k in PAIR_TEXT_FIELDS and v is not None else v for k, v in pair.items()}
    judge = out.get("judge")
    if isinstance(judge, Mapping) and isinstance(judge.get("reasoning"), str):
        out["judge"] = {**judge, "reasoning": redact(judge["reasoning"])}
    return out


def context_text(context: Any) -> str:
    """The retrieved passages as one numbered text.

    Args:
        context: a list of passage strings, or dicts with ``text`` (or ``page_content``) and
            optionally ``source``; None or empty means nothing was retrieved.

    Returns:
        The passages numbered ``[1] (source) text``, separated by blank lines, or :data:`NO_CONTEXT`.
    """
    parts = []
    for i, passage in enumerate(context or [], start=1):
        if isinstance(passage, Mapping):
            text = str(passage.get("text") or passage.get("page_content") or "")
            source = passage.get("source")
            parts.append(f"[{i}] ({source}) {text}" if source else f"[{i}] {text}")
        else:
            parts.append(f"[{i}] {passage}")
    return "\n\n".join(parts) if parts else NO_CONTEXT


def shown(answer: str | None) -> str:
    """An answer as annotators see it (:data:`EMPTY_ANSWER` for a blank one)."""
    return answer if answer and answer.strip() else EMPTY_ANSWER


def judge_suggestion(judge: Mapping[str, Any] | None) -> tuple[str, float | None, str | None] | None:
    """The judge's verdict as a suggestion: (choice, confidence in that choice, agent), or None.

    The judge's ``score`` is P(A better) in [0, 1]; the confidence in "A" is the score, in "B" its
    complement, in "tie" how close it is to 0.5 (1 at 0.5, 0 at either end).

    Raises:
        ValueError: ``preferred`` is not one of :data:`CHOICES` or the score is outside [0, 1].
    """
    if not judge:
        return None
    choice = judge.get("preferred")
    if choice not in CHOICES:
        raise ValueError(f"judge.preferred must be one of {CHOICES}, got {choice!r}")
    score = judge.get("score")
    confidence: float | None = None
    if score is not None:
        p = float(score)
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"judge.score is P(A better), in [0, 1]; got {p}")
        confidence = {"A": p, "B": 1.0 - p, "tie": 1.0 - abs(2.0 * p - 1.0)}[str(choice)]
        confidence = round(confidence, 6)
    agent = judge.get("agent")
    return str(choice), confidence, (str(agent) if agent else None)


def check_label(choice: Any, failure_type: Any) -> tuple[str, str]:
    """Validate an annotator's choice and failure type (failure type defaults to "none").

    Raises:
        ValueError: a value outside :data:`CHOICES` / :data:`FAILURE_TYPES`.
    """
    failure = failure_type or "none"
    if choice not in CHOICES:
        raise ValueError(f"choice must be one of {CHOICES}, got {choice!r}")
    if failure not in FAILURE_TYPES:
        raise ValueError(f"failure type must be one of {FAILURE_TYPES}, got {failure!r}")
    return str(choice), str(failure)
