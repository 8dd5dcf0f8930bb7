"""The pairwise AI judge: which of two answers is better, why, and how sure (RLAIF-style).

Lessons from the RLAIF paper (Lee et al., 2023), applied:

* **both orders**: each pair is judged as (A, B) and as (B, A) and the two probabilities averaged,
  which cancels position bias; when the two orders prefer different answers the verdict is marked
  ``order_consistent = False``;
* **reasoning before the verdict**: the model writes its reasons first, the verdict last;
* **a soft score**: P(A better) from the log-probabilities of the verdict token when the endpoint
  returns them, else from a stated 1-10 confidence mapped to [0, 1].

The LLM's view is combined with the local faithfulness evidence used pairwise
(:class:`eval.LocalPairwise`: both answers' evidence against the same context, compared): the local
verdict stands alone when it is sure (its P(A better) outside ``0.5 +- llm_band``), and the LLM is
asked only inside that band, where :func:`combine` mixes the two. On this machine the local 0.5B
judge takes seconds per pair and is position-biased, the local comparison milliseconds
(bench/bench_judge.py measures both). The judge's output is a *suggestion* for annotators, stored
with its identity (model and prompt version), never ground truth.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

#: Version of the judge prompt and of :func:`combine`, recorded in every verdict's agent.
JUDGE_PROMPT_VERSION = "pairwise-judge-1"
#: Scores within this distance of 0.5 are a tie.
TIE_MARGIN = 0.05
#: Weight of the local pairwise probability in the combined score (the LLM gets the rest); fixed a
#: priori, not tuned: the 0.5B judge is weak.
LOCAL_WEIGHT = 0.8
#: The LLM is asked only when the local P(A better) is within this distance of 0.5: where the local
#: comparison is close to a coin flip. On HaluEval's held-out pairs that is 9% of dialogue pairs,
#: 2% of summaries and under 1% of QA pairs (bench/bench_judge.py).
LLM_BAND = 0.05

SYSTEM_PROMPT = (
    "You compare two answers to a question. Use only the CONTEXT: the better answer states facts "
    "the CONTEXT supports and answers the question; an answer with facts the CONTEXT does not "
    "support is worse, however fluent. First write 'Reasoning:' and one short sentence (at most 30 words). "
    "Then write 'Verdict: A' or 'Verdict: B' (or 'Verdict: tie'), then 'Confidence: N' with N "
    "from 1 (a guess) to 10 (certain)."
)
#: Sent when a reply ended before its verdict (small models ramble past the token cap).
FOLLOW_UP = (
    "Now give only your verdict: 'Verdict: A' or 'Verdict: B' (or 'Verdict: tie'), then 'Confidence: N'."
)
_VERDICT = re.compile(r"verdict\s*[:\-]?\s*\**\s*(?:answer\s*)?(A|B|tie)\b", re.I)
_REASONING = re.compile(r"\**\s*reasoning\s*\**\s*[:\-]\s*\**", re.I)
_REASONING_STOP = re.compile(
    r"(?:^|\n)\s*\**\s*(?:verdict|confidence|answer\s+[AB])\b|\bverdict\s*[:\-]", re.I
)
_ECHO = re.compile(r"^\s*\**\s*(?:answer|response)\s+[AB]\s*\**\s*[:\-]", re.I)
_CONFIDENCE = re.compile(r"confidence\s*[:\-]?\s*\**\s*(\d{1,2})(?:\s*/\s*10)?", re.I)

#: ``complete(messages) -> (text, logprobs)``; logprobs: [{"token", "logprob", "top_logprobs": [...]}].
Complete = Callable[[list[dict[str, str]]], tuple[str, list[dict[str, Any]] | None]]
#: ``compare(a, b, contexts, question) -> (P(A better), faithfulness of A, faithfulness of B)``.
LocalCompare = Callable[[str, str, Sequence[str], str | None], tuple[float, float, float]]


class JudgeParseError(ValueError):
    """The judge's reply held no verdict."""


@dataclass(frozen=True)
class OneOrder:
    """The judge's view of a pair shown in one order."""

    p_first: float
    """P(the answer shown first is better), in [0, 1]."""
    reasoning: str
    source: str
    """``logprobs`` or ``stated``."""


@dataclass(frozen=True)
class Verdict:
    """A pairwise verdict about responses A and B (the stored ``judge`` JSON)."""

    preferred: str
    score: float
    """P(A better) in [0, 1]."""
    reasoning: str
    agent: str
    order_consistent: bool | None
    local_score_a: float | None = None
    local_score_b: float | None = None
    llm_score: float | None = None
    local_pairwise: float | None = None
    """The local comparison's P(A better)."""
    llm_consulted: bool = False
    """Whether the LLM was asked (the local comparison was unsure, or there is no local one)."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON stored in ``pairs.judge``."""
        return asdict(self)


def build_messages(question: str, contexts: Sequence[str], first: str, second: str) -> list[dict[str, str]]:
    """The chat messages for one order; the first answer is labeled A, the second B."""
    ctx = "\n\n".join(f"[{i}] {c.strip()}" for i, c in enumerate(contexts, 1)) or "(none)"
    user = (
        f"CONTEXT:\n{ctx}\n\nQUESTION: {question.strip()}\n\n"
        f"ANSWER A:\n{first.strip() or '(empty)'}\n\nANSWER B:\n{second.strip() or '(empty)'}\n\n"
        "Which answer is better?"
    )
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def preferred_of(score: float, margin: float = TIE_MARGIN) -> str:
    """``"A"``, ``"B"`` or ``"tie"`` for P(A better) = ``score``."""
    if score > 0.5 + margin:
        return "A"
    if score < 0.5 - margin:
        return "B"
    return "tie"


def reasoning_of(text: str, verdict_at: int | None = None) -> str:
    """The judge's own reasoning in a reply, without echoed answers, verdict or confidence.

    Small models often echo the prompt (``Answer A: ...``, ``Answer B: ...``) before their
    ``Reasoning:`` line, or write the reasoning after the verdict. The reasoning is the text after
    the last ``Reasoning:`` marker before the verdict (else the first one after it), up to the next
    ``Verdict``/``Confidence``/``Answer A|B`` line; with no marker, the text before the verdict
    with echoed ``Answer A:``/``Answer B:`` lines removed.

    Args:
        text: the reply.
        verdict_at: where the verdict starts in ``text`` (None: no verdict, the whole text counts).
    """
    text = text or ""
    end = len(text) if verdict_at is None else verdict_at
    markers = list(_REASONING.finditer(text))
    before = [m for m in markers if m.start() < end]
    chosen = before[-1] if before else (markers[0] if markers else None)
    if chosen is not None:
        body = text[chosen.end() :]
        stop = _REASONING_STOP.search(body)
        return " ".join((body[: stop.start()] if stop else body).split()).strip(" *")
    kept: list[str] = []
    in_echo = False  # inside an echoed "Answer A:" block whose text starts on the next line
    for line in text[:end].splitlines():
        echo = _ECHO.match(line)
        if echo:
            in_echo = not line[echo.end() :].strip()
        elif not line.strip():
            in_echo = False
        elif not in_echo:
            kept.append(line)
    return " ".join(" ".join(kept).split()).strip(" *")


def parse_reply(text: str, logprobs: list[dict[str, Any]] | None = None) -> OneOrder:
    """P(first answer better) and the reasoning from one reply.

    The verdict is the last ``Verdict: A|B|tie`` in the text. Its probability comes from the
    verdict token's top log-probabilities when they name both A and B; otherwise from the stated
    confidence N (1-10): P = 0.5 + 0.5 * N / 10 toward the chosen side (0.5 for a tie; N = 5 when
    the confidence is missing).

    Raises:
        JudgeParseError: no verdict in the text.
    """
    found = list(_VERDICT.finditer(text or ""))
    if not found:
        raise JudgeParseError(f"no verdict in the judge's reply: {text[:200]!r}")
    last = found[-1]
    choice = last.group(1).upper() if last.group(1).lower() != "tie" else "tie"
    reasoning = reasoning_of(text, last.start())
    p = _from_logprobs(logprobs, last.start(1)) if logprobs and choice != "tie" else None
    if p is not None:
        return OneOrder(p, reasoning, "logprobs")
    conf_match = _CONFIDENCE.search(text[last.end() :]) or _CONFIDENCE.search(text)
    conf = min(10, max(1, int(conf_match.group(1)))) if conf_match else 5
    if choice == "tie":
        return OneOrder(0.5, reasoning, "stated")
    lean = 0.5 * conf / 10
    return OneOrder(0.5 + lean if choice == "A" else 0.5 - lean, reasoning, "stated")


def _from_logprobs(logprobs: list[dict[str, Any]], at: int) -> float | None:
    """P(A) among {A, B} at the token covering character ``at`` (the verdict letter).

    Returns None when the tokens do not line up with the text or the top log-probabilities name
    neither A nor B.
    """
    pos = 0
    for tok in logprobs:
        text = str(tok.get("token", ""))
        if pos <= at < pos + len(text):
            if text.strip() not in ("A", "B"):
                return None
            mass = {"A": 0.0, "B": 0.0}
            for alt in tok.get("top_logprobs") or [tok]:
                key = str(alt.get("token", "")).strip()
                if key in mass:
                    mass[key] += math.exp(float(alt.get("logprob", -math.inf)))
            total = mass["A"] + mass["B"]
            return mass["A"] / total if total > 0 else None
        pos += len(text)
    return None


def combine(llm: float | None, local: float | None, weight: float = LOCAL_WEIGHT) -> float:
    """The combined P(A better): ``weight * local + (1 - weight) * llm`` (either alone if the other is None).

    Raises:
        ValueError: both are None.
    """
    if llm is None and local is None:
        raise ValueError("nothing to combine: neither the LLM judge nor the local scorer gave a score")
    if llm is None:
        return float(local)  # type: ignore[arg-type]
    if local is None:
        return float(llm)
    return weight * local + (1.0 - weight) * llm


class PairwiseJudge:
    """Judges (question, context, A, B) with an LLM in both orders and the local scorer pairwise."""

    def __init__(
        self,
        complete: Complete | None,
        model: str,
        local_compare: LocalCompare | None = None,
        *,
        local_weight: float = LOCAL_WEIGHT,
        llm_band: float = LLM_BAND,
        local_name: str = "local-pairwise",
    ) -> None:
        """Build a judge.

        Args:
            complete: one LLM call (see :data:`Complete`); None judges with the local comparison alone.
            model: the judge model's name, recorded in the verdict's agent.
            local_compare: the local pairwise comparison (see :data:`LocalCompare`; e.g.
                :meth:`eval.LocalPairwise.compare`); None judges with the LLM alone.
            local_weight: weight of the local comparison where both are used.
            llm_band: ask the LLM only when the local P(A better) is within this of 0.5 (0: never
                when there is a local comparison; 0.5: always).
            local_name: the local comparison's name and version, recorded in the agent.

        Raises:
            ValueError: neither ``complete`` nor ``local_compare`` is given, or ``llm_band`` is
                outside [0, 0.5].
        """
        if complete is None and local_compare is None:
            raise ValueError("a judge needs an LLM, a local comparison, or both")
        if not 0.0 <= llm_band <= 0.5:
            raise ValueError(f"llm_band must be in [0, 0.5], got {llm_band}")
        self.complete = complete
        self.model = model
        self.local_compare = local_compare
        self.local_weight = local_weight
        self.llm_band = llm_band
        self.local_name = local_name

    @property
    def agent(self) -> str:
        """The judge's identity: model and prompt version (``local`` when no LLM is used)."""
        parts = []
        if self.complete is not None:
            parts.append(f"{self.model}/{JUDGE_PROMPT_VERSION}")
        if self.local_compare is not None:
            parts.append(f"{self.local_name}/w{self.local_weight:g}/band{self.llm_band:g}")
        return "+".join(parts)

    def judge_llm(self, question: str, contexts: Sequence[str], a: str, b: str) -> tuple[float, bool, str]:
        """P(A better) averaged over both orders, whether the orders agree, and the reasoning.

        Raises:
            JudgeParseError: a reply held no verdict.
            Exception: whatever the LLM client raises (callers record it).
        """
        first = self._ask(build_messages(question, contexts, a, b))
        swapped = self._ask(build_messages(question, contexts, b, a))
        p_a = (first.p_first + (1.0 - swapped.p_first)) / 2.0
        consistent = preferred_of(first.p_first) == preferred_of(1.0 - swapped.p_first)
        reasoning = f"A,B order: {first.reasoning} | B,A order: {swapped.reasoning}"
        return p_a, consistent, reasoning

    def _ask(self, messages: list[dict[str, str]]) -> OneOrder:
        """One order; a reply that ran out before its verdict gets one short follow-up asking for it."""
        assert self.complete is not None
        text, logprobs = self.complete(messages)
        try:
            return parse_reply(text, logprobs)
        except JudgeParseError:
            follow = [
                *messages,
                {"role": "assistant", "content": text},
                {"role": "user", "content": FOLLOW_UP},
            ]
            text2, logprobs2 = self.complete(follow)
            verdict = parse_reply(text2, logprobs2)
            reasoning = reasoning_of(text) or verdict.reasoning
            return OneOrder(verdict.p_first, reasoning, verdict.source)

    def needs_llm(self, local: float | None) -> bool:
        """Whether the LLM is asked, given the local P(A better) (None: no local comparison)."""
        if self.complete is None:
            return False
        return local is None or abs(local - 0.5) < self.llm_band

    def judge(self, question: str, contexts: Sequence[str], a: str, b: str) -> Verdict:
        """The verdict about A and B; the LLM is asked only where the local comparison is unsure.

        An LLM failure falls back to the local comparison.

        Raises:
            Exception: only when nothing produced a verdict (the LLM failed and there is no local one).
        """
        sa = sb = local = None
        if self.local_compare is not None:
            local, sa, sb = self.local_compare(a, b, contexts, question)
        llm = consistent = None
        reasoning = ""
        consulted = self.needs_llm(local)
        if consulted:
            try:
                llm, consistent, reasoning = self.judge_llm(question, contexts, a, b)
            except Exception as exc:
                if local is None:
                    raise
                log.warning("LLM judge failed, using the local scorer alone: %s", exc)
                reasoning = f"LLM judge failed ({type(exc).__name__}); local faithfulness only."
        if local is not None and not reasoning:
            reasoning = (
                f"Local evidence comparison: P(A better) {local:.2f} "
                f"(faithfulness A {sa:.2f}, B {sb:.2f}); the LLM judge was not needed."
            )
        score = combine(llm, local, self.local_weight)
        return Verdict(
            preferred=preferred_of(score),
            score=round(score, 4),
            reasoning=reasoning,
            agent=self.agent,
            order_consistent=consistent,
            local_score_a=sa,
            local_score_b=sb,
            llm_score=llm,
            local_pairwise=local,
            llm_consulted=consulted,
        )


def openai_complete(
    base_url: str, api_key: str, model: str, *, timeout_s: float = 120.0, max_tokens: int = 96
) -> Complete:
    """A :data:`Complete` on any OpenAI-compatible endpoint via langchain-openai's ChatOpenAI.

    Asks for log-probabilities (``top_logprobs=5``); endpoints that ignore the request simply return
    none and the stated confidence is used.
    """
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=base_url,
        api_key=api_key,  # type: ignore[arg-type]
        model=model,
        temperature=0.0,
        max_tokens=max_tokens,  # type: ignore[call-arg]
        timeout=timeout_s,
        max_retries=1,
        logprobs=True,
        top_logprobs=5,
    )

    def complete(messages: list[dict[str, str]]) -> tuple[str, list[dict[str, Any]] | None]:
        msg = llm.invoke(messages)
        content = msg.content if isinstance(msg.content, str) else str(msg.content)
        lp = (msg.response_metadata or {}).get("logprobs") or {}
        return content, (lp.get("content") if isinstance(lp, dict) else None)

    return complete
