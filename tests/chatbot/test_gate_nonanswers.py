"""The gate on non-answers: an echo of the question, an answer cut at the length limit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from chatbot._gate import EXTRACTIVE, PASSED, GroundingGate, echoes_question


@dataclass(frozen=True)
class Chunk:
    text: str
    title: str = ""
    source: str = "doc.md"


DICT_CHUNKS = [
    Chunk(
        "Dictionaries work by computing a hash code for each key stored in the dictionary using the "
        "hash() built-in function. The hash code is then used to find the key's slot.",
        "Design FAQ > How are dictionaries implemented in CPython?",
    ),
    Chunk("`sorted(iterable)` returns a new sorted list. `list.sort()` sorts a list in place.", "Sorting"),
]


@pytest.fixture(scope="module")
def gate() -> GroundingGate:
    from ragloop.settings import Settings

    return GroundingGate.from_settings(Settings(gate_strategy="extractive"))


def run(gate: GroundingGate, answer: str, question: str, **kw: Any) -> Any:
    async def go() -> Any:
        items = [x async for x in gate.run(answer, question, DICT_CHUNKS, llm=None, config=None, **kw)]
        return items[-1]["gate"]

    return asyncio.run(go())


@pytest.mark.parametrize(
    ("answer", "question"),
    [
        ("and for dictionaries [1]?", "and for dictionaries?"),
        ("And for dictionaries? [1]", "How are dictionaries implemented in CPython?"),
        ("How are dictionaries implemented in CPython [1]?", "How are dictionaries implemented in CPython?"),
        ("Dictionaries are implemented in CPython [1].", "How are dictionaries implemented in CPython?"),
    ],
)
def test_an_answer_that_only_echoes_the_question_fails_the_gate(gate: GroundingGate, answer, question):
    assert echoes_question(answer, question, "")
    out = run(gate, answer, question)
    assert out.status == EXTRACTIVE and out.reason == "echo", out
    assert "hash code" in out.answer


@pytest.mark.parametrize(
    ("answer", "question"),
    [
        ("Each key's hash code finds its slot [1].", "How are dictionaries implemented in CPython?"),
        ("Use `sorted(iterable)` [2].", "How do I sort a list?"),
    ],
)
def test_a_short_answer_that_says_something_is_no_echo(answer: str, question: str):
    assert not echoes_question(answer, question, "Sorting")


def test_a_supported_answer_still_passes(gate: GroundingGate):
    answer = "Dictionaries compute a hash code for each key with hash() [1]."
    out = run(gate, answer, "How are dictionaries implemented in CPython?")
    assert out.status == PASSED and out.reason is None
