"""What the user reads of a gated answer: each notice once, live and reopened from the history."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from chatbot import _gate_text as gate_text
from chatbot._gate import EXTRACTIVE, WARNED, extractive_answer
from chatbot._ui import _apply_event, record_from_row, to_messages


@dataclass(frozen=True)
class Chunk:
    text: str
    title: str = ""
    source: str = "doc.md"


CHUNKS = [Chunk("`sorted(iterable)` returns a new sorted list. Both accept a key function.", "Sorting")]
QUESTION = "How do I sort a list?"
#: Words of every notice the gate writes into an answer, and of any note the page would add.
NOTICE_WORDS = ("not supported", "could not be verified", "unverified answer", "nicht belegt")


@dataclass(frozen=True)
class Event:
    kind: str
    data: dict


def _gated(language: str) -> list[tuple[str, str]]:
    """(status, answer) of each answer the gate shows with a notice in it."""
    quote, _ = extractive_answer(QUESTION, CHUNKS, language)  # type: ignore[misc]
    warned = f"{gate_text.localized(gate_text.WARNINGS, language)}\n\nThe moon is cheese."
    return [(EXTRACTIVE, quote), (WARNED, warned)]


def _notices(text: str) -> int:
    low = text.lower()
    return sum(low.count(w) for w in NOTICE_WORDS) + low.count("quotes the best passage")


@pytest.mark.parametrize("language", ["en", "de"])
def test_a_gated_answer_shows_its_notice_once_live_and_from_the_history(language: str) -> None:
    for status, answer in _gated(language):
        assert _notices(answer) == 1, answer
        # Live: the draft streams, then the gate's final answer replaces it, then done.
        rec: dict = {"question": QUESTION, "pending": True}
        _apply_event(rec, Event("token", {"text": "The moon"}))
        _apply_event(rec, Event("final", {"answer": answer, "citations": [], "gate": status}))
        result = {"turn_id": "t1", "answer": answer, "sources": [], "citations": [], "gate": status}
        _apply_event(rec, Event("done", {"result": result}))
        live = to_messages([rec])[0][1]["content"]
        # Reopened: the chat log's row.
        row = {"turn_id": "t1", "user_message": QUESTION, "answer": answer, "gate": status, "status": "ok"}
        reopened = to_messages([record_from_row(row)])[0][1]["content"]
        for shown in (live, reopened):
            assert _notices(shown) == 1, (status, shown)
            assert shown.count(answer) == 1


def test_markers_are_linked_in_prose_only_never_inside_quoted_code() -> None:
    from chatbot._ui_render import link_markers

    answer = "Quoted from [1]:\n\n> Use this:\n>\n> ```\n> last = mylist[1]\n> ```\n>\n> It keeps `x[2]` [1]"
    linked = link_markers(answer, "t1", 2)
    assert "> last = mylist[1]\n" in linked and "`x[2]`" in linked  # code as written
    assert linked.count("/ui/passage/t1/1") == 2  # the two prose markers
