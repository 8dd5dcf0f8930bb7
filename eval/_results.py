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


#: Faithfulness results are plain evaluation results; the alias names what they measure.
FaithfulnessResult = EvalResult


def sigmoid(x: float) -> float:
    """The logistic function, safe for large magnitudes."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)
