"""Two hand-written FAQ sets for the rewrite and language work (issue 13), loaded as plain cases.

* ``eval/data/faq_followups.jsonl``: 68 two-turn conversations on the Python FAQ: a question, then an
  elliptical follow-up ("and dictionaries?", "und wie lösche ich sie danach?"); 58 in English and 10
  in German, French or Spanish. Fields: ``id``, ``language``, ``first``, ``first_faq_question``,
  ``followup``, ``faq_question`` (the FAQ heading that answers the follow-up: its gold entry),
  ``faq_page``.
* ``eval/data/faq_translated.jsonl``: 60 FAQ questions, each translated into German, French and
  Spanish (180 rows). Fields: ``id``, ``language``, ``question``, ``faq_question`` (the English
  heading: the gold entry), ``faq_page``.

Both were written for this project (not machine translated). The gold entry is named by its FAQ
heading, so a case's gold passage is found the way the offline harness finds it for the FAQ dataset
(``eval._harness.is_relevant``: a chunk of the entry's page overlapping its answer).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eval._datasets import Case
from ragloop.settings import Settings

DATA = Path(__file__).resolve().parent / "data"
FOLLOWUPS = DATA / "faq_followups.jsonl"
TRANSLATED = DATA / "faq_translated.jsonl"


@dataclass(frozen=True)
class FollowupCase:
    """One two-turn conversation: the first question and its FAQ answer, then the follow-up's case."""

    first: str
    first_answer: str
    """The FAQ's answer to the first question: what a good first turn would have said."""
    case: Case
    """The follow-up: ``case.question`` is the follow-up as typed, its gold the follow-up's FAQ entry."""
    language: str


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _faq_index(settings: Settings) -> dict[str, Any]:
    """FAQ heading -> item (the first of a duplicated heading, as "What is Python?")."""
    from retrieval import load_python_faq

    index: dict[str, Any] = {}
    for item in load_python_faq(settings):
        index.setdefault(item.question, item)
    return index


def _case(case_id: str, question: str, item: Any, **extra: str) -> Case:
    return Case(
        case_id=case_id,
        question=question,
        reference=item.answer,
        gold_source=Path(item.source).name,
        gold_text=item.answer,
        extra=extra,
    )


def followup_cases(settings: Settings, path: Path = FOLLOWUPS) -> list[FollowupCase]:
    """The follow-up conversations with their gold FAQ entries.

    Raises:
        KeyError: a row names a FAQ heading the installed FAQ does not have.
    """
    faq = _faq_index(settings)
    out = []
    for row in _rows(path):
        gold, first = faq[row["faq_question"]], faq[row["first_faq_question"]]
        case = _case(row["id"], row["followup"], gold, language=row["language"], first=row["first"])
        out.append(FollowupCase(row["first"], first.answer, case, row["language"]))
    return out


def translated_cases(settings: Settings, path: Path = TRANSLATED) -> list[Case]:
    """The translated FAQ questions (``extra["language"]``, ``extra["english"]``) with their gold entries.

    Raises:
        KeyError: a row names a FAQ heading the installed FAQ does not have.
    """
    faq = _faq_index(settings)
    return [
        _case(
            r["id"], r["question"], faq[r["faq_question"]], language=r["language"], english=r["faq_question"]
        )
        for r in _rows(path)
    ]
