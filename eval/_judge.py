"""LLM-judge faithfulness: decompose the answer into claims, ask an OpenAI-compatible model to verify each.

Claims are the answer's sentences, split locally (deterministic, free, and reliable where a 0.5B
model's own decomposition is not); the model verifies all of them in one call and must answer in a
strict line format, ``<claim number>: yes|no``. Anything else is a recorded error, never a score:
the judge never returns NaN. The call goes through the OpenAI client (the one ``langchain-openai``
uses for the chain); a transient failure (endpoint down, timeout, 429, 5xx) raises
:class:`~eval._results.TransientEvalError` so the online worker retries the turn later instead of
recording a failure.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from eval._features import answer_sentences, best_sentences, index_context
from eval._results import FaithfulnessResult, SentenceEvidence, TransientEvalError, is_transient
from monitoring import semconv
from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: Version of the judge prompt, recorded with every score.
JUDGE_PROMPT_VERSION = "judge-faithfulness-1"

SYSTEM_PROMPT = (
    "You check facts. You get CONTEXT and numbered CLAIMS. For each claim decide if the CONTEXT "
    "states or directly implies it. Reply with one line per claim and nothing else, exactly in the "
    "form '<number>: yes' or '<number>: no'."
)
_VERDICT = re.compile(
    r"^\W*(?:claim\s*)?(\d+)\s*[:.)\-]\s*\**\s*(yes|no|supported|unsupported)\b", re.I | re.M
)

#: ``complete(messages) -> text``: the one call the judge makes; swap it to use another client.
Complete = Callable[[list[dict[str, str]]], str]


def build_messages(claims: Sequence[str], context: str, question: str | None) -> list[dict[str, str]]:
    """The chat messages for one verification call."""
    numbered = "\n".join(f"{i}. {c}" for i, c in enumerate(claims, 1))
    q = f"QUESTION: {question.strip()}\n\n" if question else ""
    user = f"CONTEXT:\n{context.strip()}\n\n{q}CLAIMS:\n{numbered}\n\nVerdicts:"
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_verdicts(text: str, n_claims: int) -> list[bool]:
    """Strictly parse ``<n>: yes|no`` lines; every claim needs exactly one verdict.

    Raises:
        ValueError: a claim has no verdict or contradictory ones, or a number is out of range.
    """
    found: dict[int, bool] = {}
    for num, word in _VERDICT.findall(text or ""):
        i = int(num)
        if not 1 <= i <= n_claims:
            raise ValueError(f"verdict for claim {i}, but there are {n_claims} claims")
        verdict = word.lower() in ("yes", "supported")
        if found.get(i, verdict) != verdict:
            raise ValueError(f"contradictory verdicts for claim {i}")
        found[i] = verdict
    missing = [i for i in range(1, n_claims + 1) if i not in found]
    if missing:
        raise ValueError(f"no verdict for claims {missing} in judge output {text[:200]!r}")
    return [found[i] for i in range(1, n_claims + 1)]


def select_context(contexts: Sequence[str], claims_text: str, max_chars: int) -> str:
    """The context, or for long documents its sentences most related to the claims, in order."""
    joined = "\n\n".join(contexts)
    if len(joined) <= max_chars:
        return joined
    ctx = index_context(list(contexts))
    from eval._text import tokenize

    ranked = best_sentences(tokenize(claims_text), ctx, len(ctx.sentences))
    keep: list[int] = []
    used = 0
    for j in ranked:
        if used + len(ctx.sentences[j]) > max_chars:
            continue
        keep.append(j)
        used += len(ctx.sentences[j]) + 1
    return " ".join(ctx.sentences[j] for j in sorted(keep))


def openai_complete(settings: Settings, max_tokens: int = 64) -> Complete:
    """A :data:`Complete` on the OpenAI client: ``settings.llm_base_url``, ``llm_model``, temperature 0.

    The client does not retry by itself (``max_retries=0``): the online worker retries a turn
    whose call failed transiently on a later pass, with backoff. The client's exceptions
    (``openai.APIConnectionError``, ``APITimeoutError``, ``RateLimitError``, ``APIStatusError``)
    propagate; :meth:`LLMJudgeFaithfulness.score` sorts them into transient and final.
    """
    from openai import OpenAI

    client = OpenAI(
        base_url=settings.llm_base_url,
        api_key=settings.openai_api_key.get_secret_value(),
        timeout=settings.llm_timeout_s,
        max_retries=0,
    )

    def complete(messages: list[dict[str, str]]) -> str:
        resp = client.chat.completions.create(
            model=settings.llm_model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0,
            max_tokens=max_tokens,
        )
        return str(resp.choices[0].message.content or "")

    return complete


class LLMJudgeFaithfulness:
    """Claim-by-claim verification by the configured OpenAI-compatible model."""

    name = semconv.SCORE_FAITHFULNESS_LLM
    version = JUDGE_PROMPT_VERSION

    def __init__(
        self, complete: Complete, model: str = "", max_claims: int = 8, max_context_chars: int = 2500
    ):
        """Build the judge.

        Args:
            complete: sends chat messages, returns the reply text (see :func:`openai_complete`).
            model: the model name, recorded in the details.
            max_claims: sentences verified per answer (the rest are left out, and said so).
            max_context_chars: longer contexts are cut to their sentences nearest the claims.
        """
        self.complete = complete
        self.model = model
        self.max_claims = max_claims
        self.max_context_chars = max_context_chars

    @classmethod
    def from_settings(cls, settings: Settings, max_tokens: int = 64) -> LLMJudgeFaithfulness:
        """A judge on ``settings.llm_base_url`` / ``settings.llm_model``."""
        return cls(openai_complete(settings, max_tokens), model=settings.llm_model)

    def score(self, answer: str, contexts: Sequence[str], question: str | None = None) -> FaithfulnessResult:
        """Verify each claim; the score is the share of supported claims, or an error (never NaN).

        Raises:
            TransientEvalError: the endpoint could not answer now (down, timeout, 429, 5xx).
        """
        claims = [s for s, _ in answer_sentences(answer)][: self.max_claims]
        details: dict[str, Any] = {"version": self.version, "model": self.model}
        if not claims:
            return FaithfulnessResult(score=1.0, details=details | {"claims": 0})
        started = time.perf_counter()
        try:
            context = select_context(contexts, " ".join(claims), self.max_context_chars)
            reply = self.complete(build_messages(claims, context, question))
            verdicts = parse_verdicts(reply, len(claims))
        except Exception as exc:  # noqa: BLE001 - sorted below: retry later, or a recorded error
            if is_transient(exc):
                raise TransientEvalError(f"LLM judge unavailable: {type(exc).__name__}: {exc}") from exc
            log.info("LLM judge failed: %s", exc)
            return FaithfulnessResult.failed(f"{type(exc).__name__}: {exc}", **details)
        details["latency_ms"] = round((time.perf_counter() - started) * 1000, 1)
        evidence = [SentenceEvidence(c, v, 1.0 if v else 0.0) for c, v in zip(claims, verdicts, strict=True)]
        return FaithfulnessResult(score=sum(verdicts) / len(verdicts), sentences=evidence, details=details)
