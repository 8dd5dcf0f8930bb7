"""A follow-up that stands on its own keeps its own words: no previous question glued to it."""

from __future__ import annotations

import pytest

from chatbot._rewrite import ADDED_TOPIC, check_rewrite, is_standalone

#: What the local model wrote in place of a standalone question (issue 13).
ANSWERED = "To sort a list in Python, you can use the `sorted()` function. Here's how you can do it:"
HISTORY = [("and for lists?", "Use `list.index(x)` [1].")]
MESSAGE = "How do I get a default value when the key is missing?"

STANDALONE = [
    MESSAGE,
    "How do I remove duplicates from a list while keeping order?",
    "Wie kopiere ich eine Datei mit shutil?",
    "Comment convertir une chaîne en nombre ?",
    "Explain how Python's garbage collector frees memory",
]
ELLIPTICAL = [
    "and for dictionaries?",
    "and the other way round?",
    "what about copying one?",
    "and how do I delete it afterwards?",
    "same question for dict keys",
    "why does it take so long to start there?",
    "is there a tutorial?",
    "Und wie sortiere ich sie dann?",
    "et pour le supprimer ?",
    "¿y cómo lo borro después?",
    "How do I sort them?",
]


@pytest.mark.parametrize("message", STANDALONE)
def test_a_full_question_with_its_own_content_words_stands_alone(message: str) -> None:
    assert is_standalone(message)


@pytest.mark.parametrize("message", ELLIPTICAL)
def test_an_elliptical_follow_up_does_not(message: str) -> None:
    assert not is_standalone(message)


def test_a_rejected_rewrite_of_a_standalone_message_falls_back_to_the_message_alone() -> None:
    check = check_rewrite(ANSWERED, MESSAGE, HISTORY)
    assert not check.passed and check.question == MESSAGE and check.queries == (MESSAGE,)
    # An elliptical follow-up still gets the previous question (and the fused search).
    check = check_rewrite(ANSWERED, "and for dictionaries?", HISTORY)
    assert check.question == "and for lists? and for dictionaries?"
    assert check.queries == ("and for lists? and for dictionaries?", "and for dictionaries?")


@pytest.mark.parametrize(
    "rewrite",
    [f"and for lists? {MESSAGE}", "How do I get a default value for a list when the key is missing?"],
)
def test_a_rewrite_that_glues_the_previous_topic_onto_a_standalone_message_is_rejected(rewrite: str) -> None:
    check = check_rewrite(rewrite, MESSAGE, HISTORY)
    assert ADDED_TOPIC in check.failed and check.question == MESSAGE and check.queries == (MESSAGE,)
    assert check.flags()["rewrite_rejected"] == rewrite
    # The same message rewritten as itself (or reworded with its own words) is kept.
    assert check_rewrite(MESSAGE, MESSAGE, HISTORY).passed
    reworded = "How can I get a default value if a key is missing?"
    assert check_rewrite(reworded, MESSAGE, HISTORY).question == reworded
