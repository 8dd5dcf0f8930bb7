"""The hand-written FAQ sets (eval/data) load, and every row names a FAQ entry that exists."""

from __future__ import annotations

from collections import Counter

from eval._convsets import followup_cases, translated_cases
from eval._language import detect_language
from ragloop.settings import Settings


def test_the_follow_up_conversations_load_with_their_gold_entries() -> None:
    convs = followup_cases(Settings())
    assert len(convs) == 68 and len({c.case.case_id for c in convs}) == 68
    assert Counter(c.language for c in convs) == {"en": 58, "de": 4, "fr": 3, "es": 3}
    for conv in convs:
        assert conv.first and conv.first_answer and conv.case.gold_text
        assert conv.case.gold_source.endswith(".rst.txt")
        assert len(conv.case.question) < 80, "a follow-up is elliptical, not a full question"


def test_the_translated_questions_are_60_entries_in_three_languages() -> None:
    cases = translated_cases(Settings())
    assert len(cases) == 180
    assert Counter(c.extra["language"] for c in cases) == {"de": 60, "fr": 60, "es": 60}
    assert len({c.extra["english"] for c in cases}) == 60
    # The translations are what they claim to be (the detector agrees on at least 95% of them).
    agree = sum(detect_language(c.question).language == c.extra["language"] for c in cases)
    assert agree / len(cases) >= 0.95
