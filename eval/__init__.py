"""Evaluation: faithfulness, answer and context relevance, the online worker and the offline harness.

Public API:
    LocalFaithfulness: per-turn groundedness from embeddings + lexical evidence (no network).
    LocalPairwise, PairwisePreference: that evidence used pairwise: which of two answers is better.
    LLMJudgeFaithfulness: claim verification by an OpenAI-compatible model (errors, never NaN).
    AnswerRelevance, ContextRelevance: local, embedding-based relevance scorers.
    EvalResult (alias FaithfulnessResult), SentenceEvidence: a score in [0, 1] with evidence, or an error.
    OnlineEvaluator: background scoring of chat-log turns; EvaluationStore: the ``evaluations`` table.
    get_encoder: the shared, lean evaluation encoder (all-MiniLM-L6-v2).
    CitationVerifier, Citation, CitationResult, parse_answer, attribute: verified citations, each
        answer sentence attributed to the passage that supports it.
"""

from eval._citations import (
    Citation,
    CitationResult,
    CitationVerifier,
    Verified,
    align_evidence,
    attribute,
    parse_answer,
)
from eval._embed import get_encoder
from eval._faithfulness import LOCAL_FAITHFULNESS_VERSION, LocalFaithfulness
from eval._judge import JUDGE_PROMPT_VERSION, LLMJudgeFaithfulness
from eval._online import OnlineEvaluator, ScoreCallback, telemetry_callback
from eval._pairwise import LOCAL_PAIRWISE_VERSION, LocalPairwise, PairwisePreference
from eval._relevance import AnswerRelevance, ContextRelevance
from eval._results import EvalResult, FaithfulnessResult, SentenceEvidence, TextEmbedder
from eval._store import EvaluationStore, evaluations

__all__ = [
    "JUDGE_PROMPT_VERSION",
    "LOCAL_FAITHFULNESS_VERSION",
    "LOCAL_PAIRWISE_VERSION",
    "AnswerRelevance",
    "Citation",
    "CitationResult",
    "CitationVerifier",
    "ContextRelevance",
    "EvalResult",
    "EvaluationStore",
    "FaithfulnessResult",
    "LLMJudgeFaithfulness",
    "LocalFaithfulness",
    "LocalPairwise",
    "OnlineEvaluator",
    "PairwisePreference",
    "ScoreCallback",
    "SentenceEvidence",
    "TextEmbedder",
    "Verified",
    "align_evidence",
    "attribute",
    "evaluations",
    "get_encoder",
    "parse_answer",
    "telemetry_callback",
]
