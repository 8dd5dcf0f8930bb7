"""The candidate generator never offers the original answer as its alternative (pure logic)."""

from __future__ import annotations

from typing import Any

import pytest

from labeling._candidates import STRICT_PROMPT, CandidateGenerator, SameAnswer, same_answer

ORIGINAL = "Arthur's Magazine was published in Philadelphia."


def _turn(answer: str = ORIGINAL, draft: str | None = None) -> dict[str, Any]:
    extra = {"gate": {"original_answer": draft}} if draft is not None else {}
    return {
        "turn_id": "t1",
        "question": "Where was Arthur's Magazine published?",
        "answer": answer,
        "extra": extra,
        "retrieved": [{"text": "Arthur's Magazine (1844-1846) was published in Philadelphia."}],
    }


def _generator(replies: list[str]) -> tuple[CandidateGenerator, list[str]]:
    systems: list[str] = []

    def complete(messages: list[dict[str, str]]) -> str:
        systems.append(messages[0]["content"])
        return replies[len(systems) - 1]

    return CandidateGenerator("strict", complete, "m"), systems


def test_a_different_first_answer_is_kept() -> None:
    gen, systems = _generator(["It was published in Philadelphia, 1844-1846 [1]."])
    assert gen.generate(_turn()).answer.startswith("It was published")
    assert systems == [STRICT_PROMPT]


def test_the_same_answer_is_asked_again_with_the_other_prompt() -> None:
    gen, systems = _generator([ORIGINAL + " ", "Philadelphia [1]."])
    assert gen.generate(_turn()).answer == "Philadelphia [1]."
    assert len(systems) == 2 and systems[1] != STRICT_PROMPT


def test_twice_the_same_answer_offers_the_gates_shown_answer() -> None:
    quote = "> Arthur's Magazine (1844-1846) was published in Philadelphia."
    gen, _ = _generator([ORIGINAL, ORIGINAL.upper()])
    assert gen.generate(_turn(answer=quote, draft=ORIGINAL)).answer == quote


def test_no_alternative_at_all_is_an_error_not_a_pair() -> None:
    gen, _ = _generator([ORIGINAL, "  " + ORIGINAL])
    with pytest.raises(SameAnswer):
        gen.generate(_turn())


def test_same_answer_ignores_case_and_whitespace_only() -> None:
    assert same_answer("A  b\nc", "a b c")
    assert not same_answer("a b c", "a b c d")
