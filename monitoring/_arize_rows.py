"""Chat-log rows -> Arize rows: pure functions, no I/O and no SDK (known-value tested).

One OpenInference span row per turn (:func:`span_row`), one evaluation row
(``eval.<evaluator>.score/label``) and one annotation row (``annotation.user_feedback.*``) per span,
all keyed by the span id a turn is sent under (:func:`span_ids`). ``monitoring._arize`` validates
them with the SDK's own validators and sends them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np

from monitoring import semconv
from monitoring._attributes import redact

# --- Arize / OpenInference column names (the SDK's ``arize.spans.columns``) -----------------------
SPAN_ID = "context.span_id"
TRACE_ID = "context.trace_id"
SPAN_NAME = "name"
START_TIME = "start_time"
END_TIME = "end_time"
STATUS_CODE = "status_code"
STATUS_MESSAGE = "status_message"
ATTR = "attributes."
SPAN_KIND = ATTR + semconv.OPENINFERENCE_SPAN_KIND
INPUT = ATTR + semconv.INPUT_VALUE
OUTPUT = ATTR + semconv.OUTPUT_VALUE
SESSION = ATTR + semconv.SESSION_ID
EMBEDDINGS = ATTR + "embedding.embeddings"
EMBEDDING_MODEL = ATTR + "embedding.model_name"
EMBEDDING_VECTOR = "embedding.vector"
EMBEDDING_TEXT = "embedding.text"
LLM_MODEL = ATTR + "llm.model_name"
TOKENS_PROMPT = ATTR + "llm.token_count.prompt"
TOKENS_COMPLETION = ATTR + "llm.token_count.completion"
METADATA = ATTR + "metadata"
FEEDBACK_ANNOTATION = "user_feedback"
"""Annotation name of thumbs: ``annotation.user_feedback.{label,score,text,updated_by,updated_at}``."""

_OK_STATUSES = {"ok", "no_context", "rejected"}
_EVAL_NAME_BAD = re.compile(r"[^a-zA-Z0-9_]")


# --- mapping -----------------------------------------------------------------------------------
def span_ids(turn_id: str, trace_id: str | None = None, span_id: str | None = None) -> tuple[str, str]:
    """The ``(trace_id, span_id)`` a turn is sent under: the traced ids, else ones derived from its id.

    Derived ids are the first 32 and the next 16 hex digits of ``sha256("ragloop:" + turn_id)``, so
    a turn logged with tracing off maps to the same span on every send.
    """
    if trace_id and span_id:
        return trace_id, span_id
    digest = hashlib.sha256(f"ragloop:{turn_id}".encode()).hexdigest()
    return trace_id or digest[:32], span_id or digest[32:48]


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    # SQLite hands back naive datetimes; the chat log stores UTC everywhere.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _vector(value: Any) -> list[float] | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    return [float(x) for x in arr] if arr.size else None


@dataclass(frozen=True)
class TextPolicy:
    """How text leaves the process: ``content`` False drops it, ``redact`` masks e-mails, keys, phones."""

    content: bool = True
    redact: bool = True

    def __call__(self, text: str | None) -> str | None:
        """Apply the policy to one text."""
        if text is None or not self.content:
            return None
        return redact(text) if self.redact else text


def span_row(
    turn: Mapping[str, Any], answer_vector: Any = None, text: TextPolicy = TextPolicy()
) -> dict[str, Any]:
    """One chat-log turn as one Arize span row (OpenInference columns).

    Args:
        turn: a ``turns`` row (vectors decoded, as ``ChatLog.get_turn`` returns it).
        answer_vector: the answer's embedding when the row has none (shape ``(dim,)``).
        text: the content/redaction policy for input, output and embedding texts.

    Returns:
        Column name -> value; ``attributes.embedding.embeddings`` holds the query's and (when there is
        an answer) the answer's ``{"embedding.vector": [...], "embedding.text": ...}``.
    """
    trace_id, span_id = span_ids(turn["turn_id"], turn.get("trace_id"), turn.get("span_id"))
    start = _utc(turn["created_at"])
    status = str(turn.get("status") or "")
    question = turn.get("standalone_question") or turn["user_message"]
    answer = turn.get("answer") or None
    stored_answer = turn.get("answer_embedding")
    pairs = [(turn.get("query_embedding"), question)]
    if answer is not None:
        pairs.append((stored_answer if stored_answer is not None else answer_vector, answer))
    embeddings = [
        {EMBEDDING_VECTOR: values, EMBEDDING_TEXT: text(said) or ""}
        for vector, said in pairs
        if (values := _vector(vector)) is not None
    ]
    row: dict[str, Any] = {
        SPAN_ID: span_id,
        TRACE_ID: trace_id,
        SPAN_NAME: semconv.SPAN_TURN,
        START_TIME: start,
        END_TIME: _utc(turn.get("completed_at")) or start,
        STATUS_CODE: "OK" if status in _OK_STATUSES else "ERROR",
        STATUS_MESSAGE: turn.get("error") or "",
        SPAN_KIND: "CHAIN",
        INPUT: text(turn["user_message"]),
        OUTPUT: text(answer),
        SESSION: turn.get("conversation_id"),
        EMBEDDINGS: embeddings,
        EMBEDDING_MODEL: turn.get("embedding_model"),
        LLM_MODEL: turn.get("model"),
        TOKENS_PROMPT: turn.get("input_tokens"),
        TOKENS_COMPLETION: turn.get("output_tokens"),
        METADATA: {
            k: turn.get(k)
            for k in (
                "turn_id",
                "status",
                "prompt_version",
                "index_version",
                "retrieval_ms",
                "ttft_ms",
                "total_ms",
            )
            if turn.get(k) is not None
        },
    }
    return row


def eval_name(evaluator: str) -> str:
    """An evaluator name as an Arize eval name (letters, digits and ``_``; others become ``_``)."""
    return _EVAL_NAME_BAD.sub("_", evaluator) or "evaluator"


def evaluation_rows(
    payloads: Sequence[Mapping[str, Any]], threshold: float | None = None
) -> list[dict[str, Any]]:
    """Evaluation payloads as Arize eval rows: one row per span, ``eval.<name>.score`` (and label).

    Args:
        payloads: outbox ``evaluation`` payloads (turn_id, evaluator, score, trace_id, span_id).
        threshold: faithfulness threshold; evaluators named ``faithfulness*`` also get a label,
            ``faithful`` at or above it, ``unfaithful`` below.

    Returns:
        Rows keyed by ``context.span_id`` in first-seen order; a later payload for the same span and
        evaluator replaces the earlier one.
    """
    rows: dict[str, dict[str, Any]] = {}
    for p in payloads:
        _, span_id = span_ids(p["turn_id"], p.get("trace_id"), p.get("span_id"))
        name = eval_name(str(p["evaluator"]))
        row = rows.setdefault(span_id, {SPAN_ID: span_id})
        score = p.get("score")
        row[f"eval.{name}.score"] = float(score) if score is not None else None
        if threshold is not None and name.startswith("faithfulness") and score is not None:
            row[f"eval.{name}.label"] = "faithful" if float(score) >= threshold else "unfaithful"
    return list(rows.values())


def feedback_label(value: int) -> str:
    """``thumbs_up`` for +1, ``thumbs_down`` for -1.

    Raises:
        ValueError: any other value.
    """
    if value not in (1, -1):
        raise ValueError(f"feedback value must be 1 or -1, got {value!r}")
    return "thumbs_up" if value == 1 else "thumbs_down"


def annotation_rows(
    payloads: Sequence[Mapping[str, Any]], updated_at_ms: int, text: TextPolicy = TextPolicy()
) -> list[dict[str, Any]]:
    """Feedback payloads as Arize annotation rows (``annotation.user_feedback.*``), one per span.

    Arize keeps one value per (span, annotation name), so when two raters rated one turn the later
    payload is the one sent; the chat log keeps both.

    Args:
        payloads: outbox ``feedback`` payloads (turn_id, rater, value, comment, trace_id, span_id).
        updated_at_ms: ``updated_at`` of the annotations, milliseconds since the epoch (UTC).
        text: the content/redaction policy for comments.

    Raises:
        ValueError: a payload's value is not +1 or -1.
    """
    prefix = f"annotation.{FEEDBACK_ANNOTATION}"
    rows: dict[str, dict[str, Any]] = {}
    for p in payloads:
        _, span_id = span_ids(p["turn_id"], p.get("trace_id"), p.get("span_id"))
        value = int(p["value"])
        rows[span_id] = {
            SPAN_ID: span_id,
            f"{prefix}.label": feedback_label(value),
            f"{prefix}.score": float(value),
            f"{prefix}.text": text(p.get("comment") or None),
            f"{prefix}.updated_by": str(p.get("rater") or "user")[:100],
            f"{prefix}.updated_at": int(updated_at_ms),
        }
    return list(rows.values())
