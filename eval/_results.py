"""Result types shared by every evaluator: a score in [0, 1] with its evidence, or a recorded error."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np


class TextEmbedder(Protocol):
    """What the local evaluators need from an embedding model (``retrieval.Embedder`` fits)."""

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        """Float32, L2-normalised rows, one per text."""
        ...


@dataclass(frozen=True)
class SentenceEvidence:
    """One answer sentence (or claim) and whether the context supports it."""

    sentence: str
    supported: bool
    score: float
    source_index: int | None = None
    """0-based index of the context passage holding the best evidence, None when there is none."""
    evidence: str | None = None
    """The context sentence (or judge rationale) the verdict rests on."""


@dataclass(frozen=True)
class EvalResult:
    """An evaluator's verdict: ``score`` in [0, 1], or ``error`` set and ``score`` None (never NaN)."""

    score: float | None
    sentences: list[SentenceEvidence] = field(default_factory=list)
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The contract other tools break: a failed judgement must never masquerade as a number.
        if self.score is not None and (math.isnan(self.score) or not 0.0 <= self.score <= 1.0):
            raise ValueError(f"score must be in [0, 1], got {self.score}")
        if (self.score is None) == (self.error is None):
            raise ValueError("exactly one of score and error must be set")

    @property
    def ok(self) -> bool:
        """True when the evaluator produced a score."""
        return self.error is None

    @classmethod
    def failed(cls, error: str, **details: Any) -> EvalResult:
        """A recorded failure (no score)."""
        return cls(score=None, error=error, details=dict(details))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the chat log's ``evaluations.details`` stores)."""
        return asdict(self)


class TransientEvalError(RuntimeError):
    """A scorer could not score now (endpoint down, timeout, rate limit, database locked).

    Never recorded as a result: the turn stays pending and is scored again on a later pass.
    """


def is_transient(exc: BaseException) -> bool:
    """True for a failure that may pass by itself: retry later rather than record it as final.

    Transient: :class:`TransientEvalError`; timeouts and refused/reset connections; the OpenAI
    client's connection, timeout, rate-limit (429), conflict (409), request-timeout (408) and 5xx
    errors; httpx transport errors; SQLAlchemy's operational errors (SQLite "database is locked",
    a PostgreSQL restart) and pool timeouts. Everything else (a 4xx, an unparsable judge reply, a
    bad input) is deterministic: the same call would fail the same way.
    """
    if isinstance(exc, TransientEvalError | TimeoutError | ConnectionError):
        return True
    try:
        import openai
    except ImportError:  # pragma: no cover - a core dependency
        openai = None  # type: ignore[assignment]
    if openai is not None:
        if isinstance(exc, openai.APIConnectionError | openai.RateLimitError | openai.InternalServerError):
            return True
        if isinstance(exc, openai.APIStatusError):
            return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    try:
        import httpx

        if isinstance(exc, httpx.TransportError):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        from sqlalchemy import exc as sa_exc

        if isinstance(exc, sa_exc.OperationalError | sa_exc.TimeoutError | sa_exc.DisconnectionError):
            return True
    except ImportError:  # pragma: no cover
        pass
    cause = exc.__cause__
    return cause is not None and cause is not exc and is_transient(cause)


#: Faithfulness results are plain evaluation results; the alias names what they measure.
FaithfulnessResult = EvalResult


def sigmoid(x: float) -> float:
    """The logistic function, safe for large magnitudes."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
