"""Pure prompt helpers and input validation: known values."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chatbot import ChatError, validate_message
from chatbot._prompts import clean_condensed, condense_prompt, format_sources, parse_citations, user_prompt


@dataclass
class _Chunk:
    text: str
    title: str
    source: str


def test_sources_are_numbered_in_order_with_titles() -> None:
    block = format_sources(
        [_Chunk(" Lists are mutable. ", "Data Structures", "a.rst"), _Chunk("Tuples.", "", "b")]
    )
    assert block == "[1] Data Structures\nLists are mutable.\n\n[2]\nTuples."
    assert user_prompt("Why?", block).endswith("Question: Why?")


@pytest.mark.parametrize(
    ("answer", "n", "expected"),
    [
        ("Lists are mutable [2]. See also [1, 2] and [9].", 3, [2, 1]),
        ("No citations here.", 3, []),
        ("[3][1]", 3, [3, 1]),
        ("[0] is not a source", 2, []),
    ],
)
def test_parse_citations(answer: str, n: int, expected: list[int]) -> None:
    assert parse_citations(answer, n) == expected


def test_condense_prompt_and_cleanup() -> None:
    assert condense_prompt([("What is a list?", "A sequence.")], "And a tuple?") == (
        "User: What is a list?\nAssistant: A sequence.\nUser: And a tuple?"
    )
    assert clean_condensed('\n Question: "What is a tuple?"\nextra', "x") == "What is a tuple?"
    assert clean_condensed("   ", "fallback") == "fallback"


@pytest.mark.parametrize(
    ("message", "status", "code"),
    [
        ("", 422, "empty_message"),
        ("   \n\t", 422, "empty_message"),
        (None, 422, "empty_message"),
        (42, 422, "invalid_message"),
        (["How do I sort?"], 422, "invalid_message"),
        ("x" * 101, 413, "message_too_long"),
        ("bad\x00byte", 422, "control_characters"),
        ("bell\x07", 422, "control_characters"),
    ],
)
def test_bad_messages_are_rejected_with_a_clear_error(message: object, status: int, code: str) -> None:
    with pytest.raises(ChatError) as info:
        validate_message(message, max_chars=100)
    assert (info.value.status_code, info.value.code) == (status, code)
    assert info.value.message


def test_good_messages_are_stripped_and_keep_newlines() -> None:
    assert validate_message("  What is\na list?\t ", max_chars=100) == "What is\na list?"
