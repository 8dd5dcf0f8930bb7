import math

import openai
import pytest

from eval import LLMJudgeFaithfulness
from eval._judge import build_messages, parse_verdicts, select_context
from eval._results import TransientEvalError
from ragloop.settings import Settings


def test_parse_verdicts_strict_lines():
    assert parse_verdicts("1: yes\n2: no", 2) == [True, False]
    assert parse_verdicts("Claim 1: **yes**\n2) No, not stated", 2) == [True, False]
    with pytest.raises(ValueError, match="no verdict for claims \\[2\\]"):
        parse_verdicts("1: yes", 2)
    with pytest.raises(ValueError, match="contradictory"):
        parse_verdicts("1: yes\n1: no", 1)
    with pytest.raises(ValueError, match="3 claims|there are 1"):
        parse_verdicts("1: yes\n3: no", 1)
    with pytest.raises(ValueError):
        parse_verdicts("The answer is supported.", 1)


def test_messages_number_the_claims():
    msgs = build_messages(["A is B.", "C is D."], "A is B.", "What is A?")
    assert msgs[0]["role"] == "system"
    assert "1. A is B.\n2. C is D." in msgs[1]["content"]
    assert "QUESTION: What is A?" in msgs[1]["content"]


def test_select_context_keeps_sentences_near_the_claims():
    doc = " ".join(f"Filler sentence number {i} about weather." for i in range(50)) + " Paris is in France."
    cut = select_context([doc], "Paris is the capital of France.", max_chars=120)
    assert "Paris is in France." in cut
    assert len(cut) <= 120


def test_judge_scores_share_of_supported_claims_with_a_scripted_model():
    judge = LLMJudgeFaithfulness(lambda messages: "1: yes\n2: no", model="scripted")
    res = judge.score("Paris is in France. Paris has 90 million people.", ["Paris is in France."])
    assert res.score == 0.5
    assert [s.supported for s in res.sentences] == [True, False]


def test_judge_failure_is_an_error_not_nan():
    # A deterministic failure (a reply in no verdict format) is a recorded error, never NaN.
    res = LLMJudgeFaithfulness(lambda m: "I cannot tell.").score(
        "Paris is in France.", ["Paris is in France."]
    )
    assert res.score is None and res.error and not res.ok
    assert not math.isnan(LLMJudgeFaithfulness(lambda m: "1: yes").score("Paris is big.", ["x"]).score)


def test_a_transient_failure_raises_instead_of_recording():
    def broken(messages):
        raise ConnectionError("endpoint down")

    with pytest.raises(TransientEvalError):
        LLMJudgeFaithfulness(broken).score("Paris is in France.", ["Paris is in France."])


def test_judge_against_unreachable_endpoint_is_transient():
    # The OpenAI client's connection error: retried later by the online worker, never recorded.
    settings = Settings(openai_base_url="http://127.0.0.1:9/v1", llm_timeout_s=2)
    with pytest.raises(TransientEvalError, match="Connect") as info:
        LLMJudgeFaithfulness.from_settings(settings).score("Paris is in France.", ["Paris is in France."])
    assert isinstance(info.value.__cause__, openai.APIConnectionError)


@pytest.mark.llm
def test_judge_on_the_real_local_llm(llm_server):
    judge = LLMJudgeFaithfulness.from_settings(Settings(openai_base_url=llm_server), max_tokens=16)
    ctx = ["The Eiffel Tower is in Paris. It was completed in 1889."]
    res = judge.score("The Eiffel Tower was completed in 1889.", ctx, "When was the Eiffel Tower completed?")
    # The 0.5B model's verdict is not asserted; the contract is: a score in [0, 1] or a recorded error.
    assert (res.score is not None and 0.0 <= res.score <= 1.0) or res.error
    assert res.details["model"]
