"""The gate on non-answers: an echo of the question, an answer cut at the length limit."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from chatbot._gate import EXTRACTIVE, PASSED, GroundingGate, echoes_question
from tests.chatbot.test_gate import _turn  # one streamed turn through the app's API


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
    # A title may name the function a short answer rightly points to.
    assert not echoes_question("Use shutil.copy [1].", "How do I copy a file?", "shutil > copy files")


def test_a_supported_answer_still_passes(gate: GroundingGate):
    answer = "Dictionaries compute a hash code for each key with hash() [1]."
    out = run(gate, answer, "How are dictionaries implemented in CPython?")
    assert out.status == PASSED and out.reason is None


# --- an answer cut at max_tokens: a real OpenAI-compatible server ends the stream with "length" ----

CUT = ["To copy a file, use `shutil.copy(src, dst)` [1]. ", "To keep its metadata, use "]


@pytest.mark.parametrize("gate_enabled", [True, False])
def test_an_answer_cut_at_the_length_limit_says_so_and_the_turn_records_it(
    app_factory, tmp_path, chatlog_for, gate_enabled: bool
):  # type: ignore[no-untyped-def]
    from chatbot._gate_text import CUT_NOTES
    from monitoring._instant_llm import Behaviour, InstantLLM

    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    overrides = {"temperature": 0.0, "gate_enabled": gate_enabled, "gate_strategy": "extractive"}
    with (
        InstantLLM(Behaviour(pieces=CUT, finish_reason="length")) as llm,
        app_factory(openai_base_url=llm.base_url, database_url=db, **overrides) as base,
    ):
        result, _ = _turn(base, "How do I copy a file?")
    row = chatlog_for(db).get_turn(result["turn_id"])
    assert row["flags"] == {"truncated": True}
    assert row["answer"] == result["answer"]
    if gate_enabled:
        assert row["extra"]["gate"]["truncated"] is True
    if row["gate"] in (None, "passed", "warned", "retried"):
        # The model's cut text is shown: the note follows it.
        assert "To keep its metadata, use" in result["answer"]
        assert result["answer"].rstrip().endswith(CUT_NOTES["en"]), result["answer"]
    else:  # the quote replaced it: nothing shown is cut
        assert CUT_NOTES["en"] not in result["answer"]
    # A complete answer gets no note and no flag.
    with (
        InstantLLM(Behaviour(pieces=CUT[:1])) as llm,
        app_factory(openai_base_url=llm.base_url, database_url=db, **overrides) as base,
    ):
        result, _ = _turn(base, "How do I copy a file?")
    row = chatlog_for(db).get_turn(result["turn_id"])
    assert not row.get("flags") and CUT_NOTES["en"] not in result["answer"]
