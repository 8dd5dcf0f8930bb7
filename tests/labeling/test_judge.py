"""The pairwise judge: parsing, soft scores, both orders, the combination; one call of the real local LLM."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from labeling._judge import (
    JUDGE_PROMPT_VERSION,
    JudgeParseError,
    PairwiseJudge,
    build_messages,
    combine,
    openai_complete,
    parse_reply,
    preferred_of,
)


def test_stated_confidence_maps_to_a_probability() -> None:
    r = parse_reply("Reasoning: A is in the context.\nVerdict: A\nConfidence: 8")
    assert r.p_first == pytest.approx(0.9)
    assert r.reasoning == "A is in the context."
    assert r.source == "stated"
    assert parse_reply("Reasoning: x\nVerdict: B\nConfidence: 10").p_first == pytest.approx(0.0)
    assert parse_reply("Verdict: tie\nConfidence: 9").p_first == 0.5
    assert parse_reply("Verdict: **B**").p_first == pytest.approx(0.25)  # no confidence: 5
    assert parse_reply("Verdict: A\nConfidence: 37").p_first == pytest.approx(1.0)  # clipped to 10
    # The last verdict wins (small models restate the question's wording first).
    assert parse_reply(
        "Is A better? Verdict: A. On reflection, Verdict: B\nConfidence: 6"
    ).p_first == pytest.approx(0.2)


#: A reply as the 0.5B judge writes it: it echoes both answers before its reasoning.
ECHOING_REPLY = (
    "Answer A: The 'with' statement does not do anything.\n"
    "Answer B: The 'with' statement closes the file when the block ends.\n"
    "Reasoning: B matches the context, which says the file is closed after the block.\n"
    "Verdict: B\nConfidence: 8"
)


def test_the_reasoning_is_the_judges_not_the_echoed_answers() -> None:
    want = "B matches the context, which says the file is closed after the block."
    assert parse_reply(ECHOING_REPLY).reasoning == want
    # reasoning after the verdict, markdown emphasis, a multi-line echo without a marker
    assert parse_reply("Verdict: A\nConfidence: 7\nReasoning: A cites [1].").reasoning == "A cites [1]."
    assert parse_reply("**Reasoning:** A cites [1]. **Verdict:** A").reasoning == "A cites [1]."
    echo_block = "ANSWER A:\nThe with statement does nothing.\n\nB is grounded in [1].\nVerdict: B"
    assert parse_reply(echo_block).reasoning == "B is grounded in [1]."
    # both orders: the stored reasoning holds the judge's words, never the answers
    judge = PairwiseJudge(lambda messages: (ECHOING_REPLY, None), "m")
    _, _, reasoning = judge.judge_llm("q", ["ctx"], "x", "y")
    assert reasoning == f"A,B order: {want} | B,A order: {want}"
    assert "does not do anything" not in reasoning


def test_local_only_judging_claims_no_order_consistency() -> None:
    v = PairwiseJudge(None, "m", _local(0.9)).judge("q", ["c"], "good", "bad")
    assert v.order_consistent is None and v.to_dict()["order_consistent"] is None
    assert v.preferred == "A" and v.llm_score is None


def test_no_verdict_is_an_error_not_a_score() -> None:
    with pytest.raises(JudgeParseError):
        parse_reply("Reasoning: both answers look fine to me")


def test_logprobs_of_the_verdict_token_give_the_soft_score() -> None:
    text = "Reasoning: r\nVerdict: B\nConfidence: 9"
    tokens = [
        "Reason",
        "ing",
        ":",
        " r",
        "\n",
        "Ver",
        "dict",
        ":",
        " B",
        "\n",
        "Conf",
        "idence",
        ":",
        " ",
        "9",
    ]
    assert "".join(tokens) == text
    lp = [{"token": t, "logprob": -0.1, "top_logprobs": []} for t in tokens]
    lp[8]["top_logprobs"] = [
        {"token": " B", "logprob": math.log(0.6)},
        {"token": " A", "logprob": math.log(0.3)},
        {"token": " tie", "logprob": math.log(0.1)},
    ]
    r = parse_reply(text, lp)
    assert r.source == "logprobs"
    assert r.p_first == pytest.approx(0.3 / 0.9)
    # Tokens that do not line up with the text fall back to the stated confidence.
    assert parse_reply(text, lp[:3]).source == "stated"


def test_preferred_and_combination() -> None:
    assert [preferred_of(s) for s in (0.9, 0.56, 0.55, 0.5, 0.45, 0.44, 0.0)] == [
        "A",
        "A",
        "tie",
        "tie",
        "tie",
        "B",
        "B",
    ]
    assert combine(0.2, 0.9, weight=0.8) == pytest.approx(0.76)
    assert combine(None, 0.9) == 0.9 and combine(0.3, None) == 0.3
    with pytest.raises(ValueError):
        combine(None, None)


class Scripted:
    """A ``Complete`` that answers by which answer is shown first (the shape of position bias)."""

    def __init__(self, replies: dict[str, str]) -> None:
        self.replies = replies
        self.calls: list[list[dict[str, str]]] = []

    def __call__(self, messages: list[dict[str, str]]) -> tuple[str, None]:
        self.calls.append(messages)
        first = messages[1]["content"].split("ANSWER A:\n", 1)[1].split("\n", 1)[0]
        return self.replies.get(first, "I cannot decide."), None


def test_both_orders_cancel_position_bias_and_flag_disagreement() -> None:
    # Always prefers whatever is shown first: the two orders disagree and average to a tie.
    biased = Scripted({"good": "Verdict: A\nConfidence: 8", "bad": "Verdict: A\nConfidence: 8"})
    judge = PairwiseJudge(biased, "m")
    p, consistent, _ = judge.judge_llm("q", ["ctx"], "good", "bad")
    assert p == pytest.approx(0.5) and consistent is False
    assert len(biased.calls) == 2
    assert "ANSWER A:\ngood" in biased.calls[0][1]["content"]
    assert "ANSWER A:\nbad" in biased.calls[1][1]["content"]
    # A consistent judge: prefers "good" in either position.
    fair = Scripted({"good": "Verdict: A\nConfidence: 8", "bad": "Verdict: B\nConfidence: 6"})
    p, consistent, reasoning = PairwiseJudge(fair, "m").judge_llm("q", ["ctx"], "good", "bad")
    assert p == pytest.approx((0.9 + 0.8) / 2) and consistent is True
    assert "A,B order" in reasoning and "B,A order" in reasoning


def test_a_reply_without_verdict_gets_one_follow_up() -> None:
    replies = iter(["Reasoning: the first answer is long and", "Verdict: A\nConfidence: 10"] * 2)
    calls = []

    def complete(messages: list[dict[str, str]]) -> tuple[str, None]:
        calls.append(messages)
        return next(replies), None

    p, _, reasoning = PairwiseJudge(complete, "m").judge_llm("q", ["c"], "x", "y")
    assert len(calls) == 4 and calls[1][-1]["content"].startswith("Now give only your verdict")
    assert p == pytest.approx(0.5)  # A in both orders: position bias again
    assert "the first answer is long" in reasoning


def _local(p_good: float) -> Callable[[str, str, object, object], tuple[float, float, float]]:
    """A local comparison that prefers "good" with probability ``p_good`` (antisymmetric)."""
    scores = {"good": 0.9, "bad": 0.1}

    def compare(a: str, b: str, contexts: object, question: object) -> tuple[float, float, float]:
        return (p_good if a == "good" else 1.0 - p_good), scores[a], scores[b]

    return compare


def test_verdict_records_identity_and_falls_back_to_the_local_comparison() -> None:
    def broken(messages: object) -> tuple[str, None]:
        raise ConnectionError("judge down")

    # Sure locally (0.7): no LLM call. Unsure (0.52, inside the 0.05 band): asked, fails, local stands.
    v = PairwiseJudge(broken, "qwen", _local(0.7), local_weight=0.8).judge("q", ["c"], "bad", "good")
    assert v.preferred == "B" and v.llm_score is None and v.order_consistent is None
    assert v.llm_consulted is False and v.score == pytest.approx(0.3)  # sure enough: no LLM call
    v = PairwiseJudge(broken, "qwen", _local(0.52), local_weight=0.8).judge("q", ["c"], "bad", "good")
    assert v.llm_consulted is True and v.llm_score is None and v.score == pytest.approx(0.48)
    assert v.local_score_a == 0.1 and v.local_score_b == 0.9
    assert v.agent == f"qwen/{JUDGE_PROMPT_VERSION}+local-pairwise/w0.8/band0.05"
    assert "judge failed" in v.reasoning
    assert set(v.to_dict()) >= {
        "preferred",
        "score",
        "reasoning",
        "agent",
        "order_consistent",
        "local_score_a",
        "llm_consulted",
    }
    with pytest.raises(ConnectionError):
        PairwiseJudge(broken, "qwen").judge("q", ["c"], "a", "b")
    with pytest.raises(ValueError):
        PairwiseJudge(None, "m")
    with pytest.raises(ValueError):
        PairwiseJudge(None, "m", _local(0.9), llm_band=0.7)


def test_the_llm_is_asked_only_where_the_local_comparison_is_unsure() -> None:
    fair = Scripted({"good": "Verdict: A\nConfidence: 8", "bad": "Verdict: B\nConfidence: 6"})
    sure = PairwiseJudge(fair, "m", _local(0.95)).judge("q", ["c"], "good", "bad")
    assert not fair.calls and sure.llm_consulted is False and sure.llm_score is None
    assert sure.preferred == "A" and sure.score == pytest.approx(0.95)
    assert "not needed" in sure.reasoning
    unsure = PairwiseJudge(fair, "m", _local(0.53)).judge("q", ["c"], "good", "bad")
    assert len(fair.calls) == 2 and unsure.llm_consulted is True
    assert unsure.score == pytest.approx(0.8 * 0.53 + 0.2 * (0.9 + 0.8) / 2)
    # band 0.5: always ask; band 0: never (with a local comparison).
    always = PairwiseJudge(fair, "m", _local(0.99), llm_band=0.5)
    assert always.needs_llm(0.99) and not PairwiseJudge(fair, "m", _local(0.5), llm_band=0.0).needs_llm(0.5)
    assert PairwiseJudge(fair, "m").needs_llm(None)


def test_prompt_puts_context_question_and_both_answers() -> None:
    msgs = build_messages("Q?", ["first passage", "second"], "ans one", "")
    user = msgs[1]["content"]
    assert "[1] first passage" in user and "[2] second" in user and "QUESTION: Q?" in user
    assert "ANSWER A:\nans one" in user and "ANSWER B:\n(empty)" in user
    assert "Reasoning:" in msgs[0]["content"] and "Verdict: A" in msgs[0]["content"]


@pytest.mark.llm
def test_the_real_local_model_judges_both_orders(llm_server: str) -> None:
    complete = openai_complete(llm_server, "sk-local", "qwen2.5-coder-0.5b-instruct", timeout_s=300)
    judge = PairwiseJudge(complete, "qwen2.5-coder-0.5b-instruct")
    ctx = ["Arthur's Magazine (1844-1846) was an American literary periodical published in Philadelphia."]
    p, consistent, reasoning = judge.judge_llm(
        "Where was Arthur's Magazine published?", ctx, "In Philadelphia.", "In London, from 1950."
    )
    assert 0.0 <= p <= 1.0
    assert isinstance(consistent, bool)
    assert reasoning.startswith("A,B order:")
