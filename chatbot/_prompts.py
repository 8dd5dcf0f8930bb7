"""Prompts, source formatting and citation parsing (pure functions, no I/O).

The system prompt is a stable prefix on purpose: the local server keeps its KV cache between
requests, so an unchanged prefix is not prefilled again. Anything per-turn goes after it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

#: Bumped whenever the wording below changes; stored with every turn and on every span.
PROMPT_VERSION = "rag-v1"

SYSTEM_PROMPT = (
    "You are ragloop, a helpful assistant for questions about the documentation provided. "
    "Answer using only the numbered sources in the user's message. Cite the sources you use "
    "with their numbers in square brackets, like [1]. If the sources do not contain the answer, "
    "say that you do not know. Keep answers short: at most a few sentences."
)

CONDENSE_SYSTEM_PROMPT = (
    "Rewrite the user's last message as one standalone question that can be understood without "
    "the conversation. Reply with the question only."
)

NO_CONTEXT_ANSWER = (
    "I could not find anything relevant to that in the indexed documents, so I will not guess. "
    "Try rephrasing the question, or ask about something the documents cover."
)

_CITATION = re.compile(r"\[(\d{1,2})(?:\s*,\s*(\d{1,2}))*\]")
_NUMBER = re.compile(r"\d{1,2}")


class SourceLike(Protocol):
    """What a prompt needs to know of a retrieved chunk (read-only, so frozen dataclasses fit)."""

    @property
    def text(self) -> str: ...  # noqa: D102
    @property
    def title(self) -> str: ...  # noqa: D102
    @property
    def source(self) -> str: ...  # noqa: D102


def format_sources(chunks: Sequence[SourceLike], max_chars: int | None = None) -> str:
    """Number the chunks ``[1]``, ``[2]``, ... with their section title, as the model sees them."""
    parts = []
    for i, chunk in enumerate(chunks, start=1):
        text = chunk.text if max_chars is None else chunk.text[:max_chars]
        title = f" {chunk.title}" if chunk.title else ""
        parts.append(f"[{i}]{title}\n{text.strip()}")
    return "\n\n".join(parts)


def user_prompt(question: str, sources_block: str) -> str:
    """The per-turn user message: sources first, then the question."""
    return f"Sources:\n{sources_block}\n\nQuestion: {question}"


def condense_prompt(history: Sequence[tuple[str, str]], message: str) -> str:
    """The conversation so far and the follow-up, for the condense step."""
    lines = []
    for question, answer in history:
        lines.append(f"User: {question}")
        lines.append(f"Assistant: {answer}")
    lines.append(f"User: {message}")
    return "\n".join(lines)


def parse_citations(answer: str, n_sources: int) -> list[int]:
    """The 1-based source numbers an answer cites, in first-mention order, ignoring out-of-range ones.

    >>> parse_citations("Lists are mutable [2]. See also [1, 2] and [9].", 3)
    [2, 1]
    """
    seen: list[int] = []
    for match in _CITATION.finditer(answer):
        for num in _NUMBER.findall(match.group(0)):
            n = int(num)
            if 1 <= n <= n_sources and n not in seen:
                seen.append(n)
    return seen


def clean_condensed(text: str, fallback: str) -> str:
    """Keep the first non-empty line of a condensed question; fall back to the raw message."""
    for line in text.strip().splitlines():
        line = line.strip().removeprefix("Question:").strip().strip('"')
        if line:
            return line[:1000]
    return fallback
