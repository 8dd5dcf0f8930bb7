"""The grounding gate: known values on small cases (real scorer), then turns against the real LLM."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from chatbot._gate import (
    EXTRACTIVE,
    GATE_STATUSES,
    NO_SUPPORTED_ANSWER,
    PASSED,
    WARNED,
    GroundingGate,
    extractive_answer,
)


@dataclass(frozen=True)
class Chunk:
    """A retrieved passage as the chain hands it to the gate."""

    text: str
    title: str = ""
    source: str = "doc.md"


CHUNKS = [
    Chunk(
        "How do I sort a list?\n\n`sorted(iterable)` returns a new sorted list. `list.sort()` sorts a "
        "list in place. Both accept a key function.",
        "How do I sort a list?",
    ),
    Chunk("Use `int('42')` to convert a string to an integer. Invalid input raises ValueError."),
]
QUESTION = "How do I sort a list?"


@pytest.fixture(scope="module")
def gate() -> GroundingGate:
    from ragloop.settings import Settings

    return GroundingGate.from_settings(Settings(gate_strategy="extractive"))


def run(gate: GroundingGate, answer: str, chunks: list[Chunk] = CHUNKS) -> tuple[list[dict], Any]:
    async def go() -> tuple[list[dict], Any]:
        items = [x async for x in gate.run(answer, QUESTION, chunks, llm=None, config=None)]
        return items, items[-1]["gate"]

    return asyncio.run(go())


def test_extractive_answer_quotes_the_best_passage_after_its_heading():
    text, citations = extractive_answer(QUESTION, CHUNKS)  # type: ignore[misc]
    assert text.startswith("The generated answer was not supported by the sources")
    assert "quoted from source [1] (How do I sort a list?)" in text
    # The heading restates the question: the quote starts after it.
    assert "> `sorted(iterable)` returns a new sorted list." in text and "> How do I" not in text
    assert text.endswith("Both accept a key function. [1]")
    assert citations and {c["source"] for c in citations} == {1} and citations[0]["sentence"] >= 1
    assert extractive_answer("What is the capital of Peru?", CHUNKS) is None


def test_a_supported_answer_passes_with_verified_citations(gate: GroundingGate):
    items, out = run(gate, "`list.sort()` sorts a list in place [2].")
    assert [list(i) for i in items] == [["gate"]]  # no checking event: nothing to replace
    assert out.status == PASSED and out.reason is None
    assert out.answer == "`list.sort()` sorts a list in place [1]."
    assert out.citations == [{"sentence": 0, "source": 1, "score": out.citations[0]["score"]}]


@pytest.mark.parametrize(("answer", "reason"), [("[1] [2] [3]", "markers_only"), ("", "empty")])
def test_markers_only_and_empty_answers_become_extractive(gate: GroundingGate, answer: str, reason: str):
    items, out = run(gate, answer)
    assert items[0] == {"gate_checking": {"reason": reason, "retrying": False}}
    assert out.status == EXTRACTIVE and out.reason == reason
    assert "quoted from source [1]" in out.answer and out.citations
    assert out.record()["original_answer"] == answer


def test_an_unsupported_answer_is_never_shown_without_a_warning(gate: GroundingGate):
    _, out = run(gate, "The moon is made of green cheese [1].")
    assert out.status == EXTRACTIVE and out.reason in ("low_faithfulness", "uncited")
    assert "green cheese" not in out.answer
    # Nothing to quote either (no passage shares a word with the question): a warning, not the claim.
    _, out = run(gate, "[1]", [Chunk("Penguins live in the southern hemisphere.")])
    assert out.status == WARNED and out.answer == NO_SUPPORTED_ANSWER
    _, out = run(gate, "The moon is made of green cheese.", [Chunk("Penguins live in the south.")])
    assert out.status == WARNED and out.answer.startswith("⚠️") and out.answer.endswith("green cheese.")
    assert out.status in GATE_STATUSES


# Three retrieved passages of the Python FAQ index as the bench saw them (python-faq-051 and -134):
# the FAQ entry is ranked first, but a neighbour has a sentence repeating more of the question's words.
FAQ_SOURCE = [
    Chunk(
        "The latest Python source distribution is always available from python.org, at "
        "https://www.python.org/downloads/.  The latest development sources can be obtained at "
        "https://github.com/python/cpython/.",
        "General Python FAQ > General Information > How do I obtain a copy of the Python source?",
    ),
    Chunk(
        "You can do anything you want with the source, as long as you leave the copyrights in.  If "
        "you honor the copyright rules, it's OK to use Python for commercial use, to sell copies of "
        "Python in source or binary form (modified or unmodified).",
        "General Python FAQ > General Information > Are there copyright restrictions on the use of Python?",
    ),
]
FAQ_UNICODE = [
    Chunk(
        "See the unicode-howto.",
        "Programming FAQ > Numbers and strings > What does 'UnicodeDecodeError' or 'UnicodeEncodeError' error mean?",
    ),
    Chunk(
        "'UnboundLocalError', 'UnicodeDecodeError', 'UnicodeEncodeError',\n    'UnicodeError', "
        "'UnicodeTranslateError', 'UnicodeWarning', 'UserWarning',",
        "Modules > The dir Function",
    ),
]
FAQ_CONVERT = [
    Chunk(
        "To convert, e.g., the number 144 to the string '144', use the built-in type constructor str().",
        "Programming FAQ > Numbers and strings > How do I convert a number to a string?",
    ),
    Chunk(
        "For integers, use the built-in int() type constructor, e.g. int('144') == 144.",
        "Programming FAQ > Numbers and strings > How do I convert a string to a number?",
    ),
]


@pytest.mark.parametrize(
    ("question", "chunks", "source", "quoted"),
    [
        ("How do I obtain a copy of the Python source?", FAQ_SOURCE, 1, "The latest Python source"),
        ("What does 'UnicodeDecodeError' or 'UnicodeEncodeError' error  mean?", FAQ_UNICODE, 1, "See the"),
        ("How do I convert a string to a number?", FAQ_CONVERT, 2, "For integers"),
    ],
)
def test_extractive_answer_quotes_the_entry_whose_heading_is_the_question(
    question: str, chunks: list[Chunk], source: int, quoted: str
):
    text, citations = extractive_answer(question, chunks)  # type: ignore[misc]
    assert f"quoted from source [{source}]" in text and f"> {quoted}" in text
    assert {c["source"] for c in citations} == {source}


def test_extractive_label_is_in_the_users_language_and_the_quote_in_the_sources_words():
    text, citations = extractive_answer(QUESTION, CHUNKS, "de")  # type: ignore[misc]
    assert text.startswith("Die erzeugte Antwort war durch die Quellen nicht belegt.")
    assert "zitiert aus Quelle [1] (How do I sort a list?):" in text
    assert text.endswith(
        "> `sorted(iterable)` returns a new sorted list. `list.sort()` sorts a list in place. "
        "Both accept a key function. [1]"
    )
    assert citations and citations[0]["sentence"] >= 2  # the German label's two sentences are skipped
    assert extractive_answer(QUESTION, CHUNKS, "ko")[0].startswith("The generated answer")  # type: ignore[index]


GERMAN = (
    "Mit `sorted(iterable)` erhalten Sie eine neue, sortierte Liste. Die Methode `list.sort()` "
    "sortiert die Liste dagegen direkt an Ort und Stelle [1]."
)


def german_run(gate: GroundingGate, answer: str) -> tuple[list[dict], Any]:
    async def go() -> tuple[list[dict], Any]:
        items = [x async for x in gate.run(answer, QUESTION, CHUNKS, llm=None, config=None, language="de")]
        return items, items[-1]["gate"]

    return asyncio.run(go())


def test_an_answer_the_scorer_cannot_read_is_kept_with_a_warning_in_the_users_language(gate: GroundingGate):
    # The English-only scorer finds almost none of these German words in the English passage.
    assert gate.check(GERMAN, [c.text for c in CHUNKS], QUESTION).reason in ("low_faithfulness", "uncited")
    items, out = german_run(gate, GERMAN)
    assert items[0] == {"gate_checking": {"reason": out.reason, "retrying": False}}
    assert out.status == WARNED and out.event()["warning"] is True
    assert out.answer.startswith("⚠️ **Nicht überprüft:**")
    assert "Mit `sorted(iterable)` erhalten Sie eine neue, sortierte Liste." in out.answer
    assert "quoted from source" not in out.answer and "zitiert" not in out.answer
    assert out.record()["unchecked_language"] == "de" and out.record()["original_answer"] == GERMAN
    # An echo of the question under a heading says nothing in any language: quoted under a German label.
    _, out = german_run(
        gate, "How do I sort a list? > Wie sortiere ich eine Liste? Wie sortiere ich eine Liste?"
    )
    assert out.status == EXTRACTIVE and out.answer.startswith("Die erzeugte Antwort")
    # An English answer to the German question is judged as before, and quoted under a German label.
    _, out = german_run(gate, "The moon is made of green cheese [1].")
    assert out.status == EXTRACTIVE and out.answer.startswith("Die erzeugte Antwort")
    assert out.record()["unchecked_language"] is None
    # Nothing at all to show: the warning is German too.
    _, out = german_run(gate, "")
    assert out.status == EXTRACTIVE and "zitiert aus Quelle [1]" in out.answer


# --- through the app: a real OpenAI-compatible server streams scripted drafts ---------------------
# Whether the small model obeys "reply only with [1] [2]", "write [7]" or "answer in German" changes
# with the prompt version, the thread count and the build: the gate is what is tested, so the
# drafts are scripted (monitoring._instant_llm) and every path is taken on every run.


def _turn(base: str, message: str) -> tuple[dict, list[tuple[str, dict]]]:
    """POST one streamed turn; returns (the done event's result, every event)."""
    events: list[tuple[str, dict]] = []
    with httpx.stream(
        "POST", f"{base}/api/chat", json={"message": message, "stream": True}, timeout=300
    ) as resp:
        assert resp.status_code == 200, resp.read()
        kind = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: ") and kind:
                events.append((kind, json.loads(line[6:])))
    done = [d for k, d in events if k == "done"]
    assert done, events
    return done[-1]["result"], events


def test_marker_only_answer_is_gated_in_the_api_and_the_chat_log(app_factory, tmp_path, chatlog_for):  # type: ignore[no-untyped-def]
    from monitoring._instant_llm import Behaviour, InstantLLM

    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    with (
        InstantLLM(Behaviour(pieces=["[1]", " [2]"])) as llm,
        app_factory(openai_base_url=llm.base_url, database_url=db, temperature=0.0) as base,
    ):
        result, events = _turn(base, "How do I sort a list?")
    row = chatlog_for(db).get_turn(result["turn_id"])
    original = row["extra"]["gate"]["original_answer"]
    from labeling._select import is_empty_answer

    assert original == "[1] [2]" and is_empty_answer(original)
    assert row["gate"] in ("retried", "extractive", "warned") and result["gate"] == row["gate"]
    assert not is_empty_answer(row["answer"]) and row["answer"] == result["answer"]
    final = [d for k, d in events if k == "final"]
    assert final and final[-1]["answer"] == result["answer"] and final[-1]["gate"] == row["gate"]
    assert row["citations"] == result["citations"]


def test_out_of_range_marker_is_removed_from_the_api_and_the_chat_log(app_factory, tmp_path, chatlog_for):  # type: ignore[no-untyped-def]
    from monitoring._instant_llm import Behaviour, InstantLLM

    # An answer citing a passage [7] that the prompt never numbered (top_k=2), beside a real one.
    pieces = ["[7] To copy a file, use ", "shutil.copy(src, dst) [1]. ", "[7] It copies the file's data."]
    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    with (
        InstantLLM(Behaviour(pieces=pieces)) as llm,
        app_factory(openai_base_url=llm.base_url, database_url=db, temperature=0.0, max_tokens=48) as base,
    ):
        result, events = _turn(base, "How do I copy a file?")
    row = chatlog_for(db).get_turn(result["turn_id"])
    assert "[7]" in row["extra"]["gate"]["original_answer"]
    assert "[7]" not in result["answer"] and "[7]" not in row["answer"]
    final = [d for k, d in events if k == "final"]
    assert final and "[7]" not in final[-1]["answer"]
    for cited in result["citations"]:
        assert 1 <= cited["source"] <= 2  # top_k=2: only real passages are cited
    assert row["citations"] == result["citations"] and row["gate"] == result["gate"]


#: German drafts for a German question: an answer (kept: passed, or not checked under a German
#: warning), and an echo of the question under the sources' headings (quoted under a German label).
GERMAN_DRAFTS = {
    "answer": [
        "Mit `shutil.copy(src, dst)` kopieren Sie den Inhalt einer Datei ",
        "und ihre Zugriffsrechte [1]. Wenn auch Metadaten wie die Änderungszeit ",
        "erhalten bleiben sollen, nehmen Sie `shutil.copy2` [1].",
    ],
    "echo": ["How do I copy a file? > Wie kopiere ich eine Datei? ", "Wie kopiere ich eine Datei?"],
}
#: What the gate makes of each: the English-only scorer cannot read the answer; the echo says nothing.
GERMAN_GATES = {"answer": "warned", "echo": "extractive"}


@pytest.mark.parametrize("draft", sorted(GERMAN_DRAFTS))
def test_a_german_question_is_shown_in_german_or_under_a_german_label(
    app_factory, tmp_path, chatlog_for, draft
):  # type: ignore[no-untyped-def]
    from eval._language import detect_language
    from monitoring._instant_llm import Behaviour, InstantLLM

    db = f"sqlite:///{tmp_path / 'chatlog.db'}"
    # Threshold 0: the English-only embedder scores German questions low; this test is about the gate.
    overrides = {"temperature": 0.0, "max_tokens": 60, "score_threshold": 0.0}
    with (
        InstantLLM(Behaviour(pieces=GERMAN_DRAFTS[draft])) as llm,
        app_factory(openai_base_url=llm.base_url, database_url=db, **overrides) as base,
    ):
        result, events = _turn(
            base, "Wie kopiere ich eine Datei mit shutil.copy? Bitte antworte auf Deutsch."
        )
    row = chatlog_for(db).get_turn(result["turn_id"])
    gate = row["extra"]["gate"]
    assert gate["original_answer"] == "".join(GERMAN_DRAFTS[draft]) and row["gate"] == GERMAN_GATES[draft]
    shown = result["answer"]
    assert row["language"] == "de" and row["gate"] == result["gate"] and row["answer"] == shown
    prose = "\n".join(line for line in shown.splitlines() if not line.startswith(">"))
    # What the user reads outside a quotation is German: the model's answer, a German warning, or
    # a German label above the passage quoted in its own (English) words.
    assert detect_language(prose).language == "de", shown
    assert "The generated answer" not in shown and "Unverified answer" not in shown
    if draft == "answer":
        # A German draft the scorer could not read is kept, marked as not checked.
        assert gate["unchecked_language"] == "de"
        assert shown.startswith("⚠️ **Nicht überprüft:**") and "kopieren Sie den Inhalt" in shown
    else:
        # A German draft that adds nothing to the question and the titles (chatbot._gate.says_something)
        # is quoted around like an unsupported one: under the German label checked above.
        assert gate.get("unchecked_language") is None and shown.startswith("Die erzeugte Antwort")
    final = [d for k, d in events if k == "final"]
    assert final and final[-1]["answer"] == shown
