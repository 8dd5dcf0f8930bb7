"""Question sets a reference can be built from before any traffic exists (and that tests and benches use).

* ``python-faq``: the Python FAQ questions and answers (what the bot is built for);
* ``halueval-qa``: HaluEval's 10,000 general-knowledge questions (a different topic);
* ``halueval-dialogue``: the last user turn of HaluEval's dialogues (another topic and style);
* ``file:PATH``: one question per line.
"""

from __future__ import annotations

import re
from pathlib import Path

from ragloop.settings import Settings

#: Names accepted by :func:`load_questions` (plus ``file:PATH``).
SOURCES = ("python-faq", "halueval-qa", "halueval-dialogue")

_LAST_HUMAN = re.compile(r"\[Human\]:\s*(.*?)\s*(?:\[Assistant\]:|$)")


def load_questions(settings: Settings, source: str) -> tuple[list[str], list[str | None]]:
    """Questions and their reference answers (None when the source has none).

    Raises:
        ValueError: an unknown source.
    """
    if source == "python-faq":
        from retrieval import load_python_faq

        items = load_python_faq(settings)
        return [i.question for i in items], [i.answer for i in items]
    if source in ("halueval-qa", "halueval-dialogue"):
        from ragloop.datasets import fetch_halueval

        if source == "halueval-qa":
            rows = fetch_halueval(settings, "qa")
            return [r["question"] for r in rows], [r["right_answer"] for r in rows]
        rows = fetch_halueval(settings, "dialogue")
        turns = [_LAST_HUMAN.findall(r["dialogue_history"]) for r in rows]
        pairs = [(t[-1], r["right_response"]) for t, r in zip(turns, rows, strict=True) if t and t[-1]]
        return [q for q, _ in pairs], [a for _, a in pairs]
    if source.startswith("file:"):
        lines = Path(source[5:]).read_text(encoding="utf-8").splitlines()
        questions = [line.strip() for line in lines if line.strip()]
        return questions, [None] * len(questions)
    raise ValueError(f"unknown question source {source!r}: use {', '.join(SOURCES)} or file:PATH")
