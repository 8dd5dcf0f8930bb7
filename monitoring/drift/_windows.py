"""Windows of chat-log turns and saved reference sets: extraction and embeddings (the I/O side).

A :class:`WindowData` is what the statistics need: query and answer embeddings, texts, turn ids,
conversation ids and scalar features, as plain arrays.

Only turns the bot finished answering enter a window (:data:`DRIFT_STATUSES`): a rejected message
(empty, too long, unknown conversation), an error, a cancelled or still running turn says nothing
about what users ask or what the bot answers, and has no embedding to compare.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import column, inspect, select, table

from chatlog import STATUS_NO_CONTEXT, STATUS_OK, ChatLog, feedback
from monitoring import semconv
from monitoring.drift._features import feature_columns, turn_features
from ragloop.settings import Settings

log = logging.getLogger(__name__)

_SPANS = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(weeks=1)}

#: Turn statuses that enter a drift window: answered, or declined for lack of context.
DRIFT_STATUSES = (STATUS_OK, STATUS_NO_CONTEXT)

# The evaluations table belongs to ``eval`` (one row per (turn, evaluator)); monitoring does not import
# eval, so it reads the three columns it needs through a lightweight table clause.
_evaluations = table("evaluations", column("turn_id"), column("evaluator"), column("score"))


@dataclass
class WindowData:
    """One side of a comparison.

    Attributes:
        label: how the window was chosen (shown in reports).
        start: window start (None for a saved set).
        end: window end, exclusive.
        turn_ids: chat-log turn ids (empty strings for a saved set).
        questions: standalone questions.
        answers: answer texts (None where the turn has none).
        query: ``(n, D)`` query embeddings.
        answer: ``(n, D)`` answer embeddings, NaN rows where there is no answer.
        features: scalar features, one array per feature name.
        conversation_ids: each turn's conversation (None: unknown; empty for a saved set).
    """

    label: str
    start: datetime | None
    end: datetime | None
    turn_ids: list[str]
    questions: list[str]
    answers: list[str | None]
    query: np.ndarray
    answer: np.ndarray
    features: dict[str, np.ndarray] = field(default_factory=dict)
    conversation_ids: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.questions)

    @property
    def answered(self) -> np.ndarray:
        """Answer embeddings of the rows that have a usable one (finite)."""
        return self.answer[np.isfinite(self.answer).all(axis=1)] if len(self.answer) else self.answer

    def groups(self, side: str) -> np.ndarray:
        """The permutation unit of every row: its conversation, else the row itself.

        Args:
            side: a prefix keeping the two windows' units apart ("reference", "current").
        """
        ids = self.conversation_ids if len(self.conversation_ids) == len(self) else [None] * len(self)
        return np.array(
            [f"{side}:c:{cid}" if cid else f"{side}:r:{i}" for i, cid in enumerate(ids)], dtype=object
        )


#: The window specs :func:`parse_window` accepts, as error messages name them.
WINDOW_FORMS = "hour, day, week or START/END (ISO 8601)"
#: The reference specs :func:`reference_spec` accepts.
REFERENCE_FORMS = "previous, saved:NAME, hour, day, week or START/END (ISO 8601)"


class UnknownWindowError(ValueError):
    """A window spec that is none of the accepted forms (its message already names them)."""


def _parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.strip())
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_window(spec: str, now: datetime) -> tuple[datetime, datetime]:
    """``'hour'``/``'day'``/``'week'`` (ending at ``now``) or ``'START/END'`` (ISO 8601) -> ``[start, end)``.

    Raises:
        ValueError: an unknown spec, or an end before the start.
    """
    if spec in _SPANS:
        return now - _SPANS[spec], now
    if "/" in spec:
        start, end = (_parse_time(part) for part in spec.split("/", 1))
        if end <= start:
            raise ValueError(f"window {spec!r} ends before it starts")
        return start, end
    raise UnknownWindowError(f"unknown window {spec!r}: use {WINDOW_FORMS}")


def reference_spec(spec: str, current: tuple[datetime, datetime]) -> tuple[datetime, datetime] | str:
    """Resolve a reference spec: a time window, or the name of a saved set (``'saved:NAME'``)."""
    if spec.startswith("saved:"):
        return spec.split(":", 1)[1]
    if spec == "previous":
        start, end = current
        return start - (end - start), start
    return parse_window(spec, current[0])


def _thumbs_down(chatlog: ChatLog, turn_ids: Sequence[str]) -> set[str]:
    down: set[str] = set()
    ids = list(turn_ids)
    with chatlog.engine.connect() as conn:
        for i in range(0, len(ids), 500):
            rows = conn.execute(
                select(feedback.c.turn_id).where(
                    feedback.c.turn_id.in_(ids[i : i + 500]), feedback.c.value < 0
                )
            )
            down.update(r.turn_id for r in rows)
    return down


def _faithfulness(chatlog: ChatLog, turn_ids: Sequence[str]) -> dict[str, float]:
    """Each scored turn's local faithfulness (``evaluations`` rows of evaluator ``faithfulness_local``)."""
    if not turn_ids or not inspect(chatlog.engine).has_table("evaluations"):
        return {}
    scores: dict[str, float] = {}
    ids = list(turn_ids)
    with chatlog.engine.connect() as conn:
        for i in range(0, len(ids), 500):
            rows = conn.execute(
                select(_evaluations.c.turn_id, _evaluations.c.score).where(
                    _evaluations.c.turn_id.in_(ids[i : i + 500]),
                    _evaluations.c.evaluator == semconv.SCORE_FAITHFULNESS_LOCAL,
                    _evaluations.c.score.is_not(None),  # a failed evaluation is no score
                )
            )
            scores.update((r.turn_id, float(r.score)) for r in rows)
    return scores


def _vector_matrix(vectors: Sequence[np.ndarray | None]) -> np.ndarray:
    """Stack vectors; a missing one, or one of another length (another model), is a NaN row."""
    dims = [len(v) for v in vectors if v is not None and len(v)]
    dim = max(set(dims), key=dims.count) if dims else 0
    rows = [v if v is not None and len(v) == dim else np.full(dim, np.nan, np.float32) for v in vectors]
    return np.vstack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)


def load_window(
    chatlog: ChatLog, start: datetime, end: datetime, settings: Settings, label: str = ""
) -> tuple[WindowData, list[dict[str, Any]]]:
    """Read the answered turns of ``[start, end)``; missing embeddings are NaN (see :func:`fill_embeddings`).

    Only turns with a status in :data:`DRIFT_STATUSES` are read.

    Returns:
        The window and the raw turns (the embedding step needs their texts).
    """
    turns = list(chatlog.iter_turns(since=start, until=end, statuses=DRIFT_STATUSES))
    ids = [t["turn_id"] for t in turns]
    down = _thumbs_down(chatlog, ids)
    faith = _faithfulness(chatlog, ids)
    feats = [
        turn_features(t, settings.score_threshold, t["turn_id"] in down, faith.get(t["turn_id"]))
        for t in turns
    ]

    window = WindowData(
        label=label or f"{start.isoformat()}/{end.isoformat()}",
        start=start,
        end=end,
        turn_ids=[t["turn_id"] for t in turns],
        questions=[t["standalone_question"] or t["user_message"] for t in turns],
        answers=[t["answer"] for t in turns],
        query=_vector_matrix([t["query_embedding"] for t in turns]),
        answer=_vector_matrix([t["answer_embedding"] for t in turns]),
        features=feature_columns(feats),
        conversation_ids=[t["conversation_id"] for t in turns],
    )
    log.info("window %s: %d turns", window.label, len(window))
    return window, turns


def _unusable(matrix: np.ndarray) -> np.ndarray:
    """Rows that are no embedding: missing (NaN), broken (inf) or all zeros."""
    if matrix.shape[1] == 0:
        return np.ones(len(matrix), bool)
    return ~np.isfinite(matrix).all(axis=1) | ~np.any(matrix != 0, axis=1)


def fill_embeddings(window: WindowData, settings: Settings, chatlog: ChatLog | None = None) -> WindowData:
    """Embed questions and answers whose embedding is missing or broken, writing them back to the chat log.

    A row without text (an empty question or answer) stays NaN: the statistics leave it out.
    """
    from retrieval import get_embedder

    embedder = None
    for key, texts in (("query", window.questions), ("answer", window.answers)):
        matrix = getattr(window, key)
        bad = _unusable(matrix)
        missing = [i for i in range(len(texts)) if texts[i] and str(texts[i]).strip() and bad[i]]
        if missing:
            embedder = embedder or get_embedder(settings)
            vectors = embedder.embed_documents([str(texts[i]) for i in missing], progress=len(missing) > 500)
            if matrix.shape[1] != vectors.shape[1]:  # none stored yet, or another model's
                matrix = np.full((len(texts), vectors.shape[1]), np.nan, np.float32)
            matrix[missing] = vectors
            if chatlog is not None and window.turn_ids and window.turn_ids[0]:
                for i, vector in zip(missing, vectors, strict=True):  # later runs reuse them
                    chatlog.update_turn(window.turn_ids[i], **{f"{key}_embedding": vector})
            log.info("embedded %d missing %s texts of window %s", len(missing), key, window.label)
        if len(matrix) and matrix.shape[1]:
            matrix = matrix.copy()
            matrix[_unusable(matrix)] = np.nan  # no text to embed: left out by the statistics
        setattr(window, key, matrix)
    return window


def references_dir(settings: Settings) -> Path:
    """Folder of saved reference sets."""
    return drift_dir(settings) / "references"


def drift_dir(settings: Settings) -> Path:
    """Folder of drift reports, plots, saved references and the metrics file."""
    return settings.drift_dir or settings.data_dir / "drift"


def save_reference_vectors(name: str, texts: Sequence[str], query: np.ndarray, settings: Settings) -> Path:
    """Save already-embedded texts as the reference set ``name`` (no answers)."""
    path = references_dir(settings) / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    answer = np.zeros((0, query.shape[1]), np.float32)
    np.savez_compressed(
        path, query=query.astype(np.float32), answer=answer, questions=np.array(list(texts), dtype=object)
    )
    log.info("saved reference set %s (%d vectors) at %s", name, len(texts), path)
    return path


def index_vectors(settings: Settings, limit: int) -> tuple[list[str], np.ndarray]:
    """Texts and embeddings of up to ``limit`` chunks of the indexed corpus (Chroma), for a reference.

    Chunks are not questions: their style differs, so a chunk reference mostly serves the cluster
    explanation (which asked topics the corpus lacks); prefer a question set for alarms.
    """
    from retrieval import open_collection

    got = open_collection(settings).get(include=["embeddings", "documents"], limit=limit)
    vectors = np.asarray(got["embeddings"], dtype=np.float32)
    return [str(d) for d in got["documents"]], vectors


def save_reference(
    name: str, questions: Sequence[str], settings: Settings, answers: Sequence[str] | None = None
) -> Path:
    """Embed ``questions`` (and ``answers``) and save them as the reference set ``name``.

    Used before any traffic exists: from the Python FAQ, an evaluation set or the indexed corpus.
    """
    from retrieval import get_embedder

    embedder = get_embedder(settings)
    query = embedder.embed_documents(list(questions), progress=len(questions) > 500)
    answer = embedder.embed_documents(list(answers), progress=len(answers) > 500) if answers else query[:0]
    path = references_dir(settings) / f"{name}.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, query=query, answer=answer, questions=np.array(list(questions), dtype=object))
    log.info("saved reference set %s (%d questions) at %s", name, len(questions), path)
    return path


def load_reference(name: str, settings: Settings) -> WindowData:
    """A saved reference set as a window (no turn ids, no scalar features)."""
    path = references_dir(settings) / f"{name}.npz"
    if not path.exists():
        raise FileNotFoundError(
            f"no saved reference {name!r} at {path}: build it with `ragloop drift reference`"
        )
    data = np.load(path, allow_pickle=True)
    questions = [str(q) for q in data["questions"]]
    answer = (
        data["answer"] if len(data["answer"]) == len(questions) else np.zeros((0, data["query"].shape[1]))
    )
    return WindowData(
        label=f"saved:{name}",
        start=None,
        end=None,
        turn_ids=[""] * len(questions),
        questions=questions,
        answers=[None] * len(questions),
        query=data["query"].astype(np.float32),
        answer=answer.astype(np.float32),
        features={},
    )
