"""Candidates: one alternative answer per selected turn, so the turn becomes a preference pair.

Strategies (``RAGLOOP_LOOP_CANDIDATE_STRATEGY``):

* ``strict``: the same retrieved context, a stricter grounded prompt (quote-level grounding, say
  "I don't know" rather than guess);
* ``more_context``: re-retrieve with a larger k (``RAGLOOP_LOOP_MORE_CONTEXT_K``) and answer again;
* ``model``: the same context and prompt, answered by another configured OpenAI-compatible model
  (``RAGLOOP_LOOP_CANDIDATE_MODEL`` / ``RAGLOOP_LOOP_CANDIDATE_BASE_URL``).

The prompt builders are pure; :class:`CandidateGenerator` is the thin shell that calls the model
(langchain-openai's ChatOpenAI) and the retriever.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from labeling._select import model_answer

STRATEGIES = ("strict", "more_context", "model")
#: Version of the candidate prompts, stored in each pair's meta.
CANDIDATE_PROMPT_VERSION = "candidate-1"

GROUNDED_PROMPT = (
    "You are a helpful assistant for questions about the documentation provided. Answer using only "
    "the numbered sources in the user's message. Cite the sources you use with their numbers in "
    "square brackets, like [1]. If the sources do not contain the answer, say that you do not know. "
    "Keep answers short: at most a few sentences."
)
STRICT_PROMPT = (
    "You answer strictly from the numbered sources in the user's message. Every sentence you write "
    "must be directly supported by a source; cite it with its number in square brackets, like [1]. "
    "Do not add facts, names, numbers or code that the sources do not contain. If the sources do not "
    "answer the question, reply exactly: I don't know based on the provided sources. Answer in the "
    "language of the question, in at most three sentences, and never reply with citations alone."
)

#: ``complete(messages) -> text``.
Complete = Callable[[list[dict[str, str]]], str]


@dataclass(frozen=True)
class Candidate:
    """An alternative answer and what produced it."""

    answer: str
    context: list[str]
    """The passages the alternative was grounded on (the pair shows these)."""
    strategy: str
    model: str


def question_of(turn: Mapping[str, Any]) -> str:
    """The question a turn answered: the standalone (condensed) question when there is one."""
    return str(turn.get("standalone_question") or turn.get("user_message") or "").strip()


def passages_of(turn: Mapping[str, Any]) -> list[str]:
    """The retrieved passages' text of a turn, in rank order."""
    return [str(c.get("text") or "") for c in (turn.get("retrieved") or []) if c.get("text")]


def build_messages(question: str, passages: Sequence[str], system: str) -> list[dict[str, str]]:
    """Chat messages that ask ``question`` over numbered ``passages``."""
    block = "\n\n".join(f"[{i}]\n{p.strip()}" for i, p in enumerate(passages, 1)) or "(no sources)"
    return [
        {"role": "system", "content": system},
        {"role": "user", "content": f"Sources:\n{block}\n\nQuestion: {question}"},
    ]


class CandidateGenerator:
    """Produces one alternative answer for a turn with the configured strategy."""

    def __init__(
        self,
        strategy: str,
        complete: Complete,
        model: str,
        retrieve: Callable[[str, int], list[str]] | None = None,
        more_context_k: int = 8,
    ) -> None:
        """Build a generator.

        Args:
            strategy: one of :data:`STRATEGIES`.
            complete: the model call (for ``model``, the other model's).
            model: the model name recorded with each candidate.
            retrieve: ``(question, k) -> passages``; required for ``more_context``.
            more_context_k: passages fetched by ``more_context``.

        Raises:
            ValueError: an unknown strategy, or ``more_context`` without ``retrieve``.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown candidate strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
        if strategy == "more_context" and retrieve is None:
            raise ValueError("the more_context strategy needs a retriever")
        self.strategy = strategy
        self.complete = complete
        self.model = model
        self.retrieve = retrieve
        self.more_context_k = more_context_k

    def generate(self, turn: Mapping[str, Any]) -> Candidate:
        """The alternative answer for ``turn`` (a chat-log row with ``retrieved``)."""
        question = question_of(turn)
        passages = passages_of(turn)
        system = GROUNDED_PROMPT
        if self.strategy == "strict":
            system = STRICT_PROMPT
        elif self.strategy == "more_context":
            assert self.retrieve is not None
            fetched = self.retrieve(question, self.more_context_k)
            passages = list(dict.fromkeys([*passages, *fetched]))[: self.more_context_k]
        answer = self.complete(build_messages(question, passages, system)).strip()
        original = model_answer(turn)
        if same_answer(answer, original):
            # A pair of two equal answers teaches no preference and wastes an annotator's time: ask
            # once more with the other prompt, then offer the answer users were shown (the grounding
            # gate's quote) when it differs; otherwise there is no alternative to label.
            other = GROUNDED_PROMPT if system == STRICT_PROMPT else STRICT_PROMPT
            answer = self.complete(build_messages(question, passages, other)).strip()
            shown = str(turn.get("answer") or "").strip()
            if same_answer(answer, original) and shown and not same_answer(shown, original):
                answer = shown
            if same_answer(answer, original):
                raise SameAnswer(f"the alternative answer for turn {turn.get('turn_id')} equals the original")
        return Candidate(answer=answer, context=passages, strategy=self.strategy, model=self.model)


class SameAnswer(ValueError):
    """The candidate model gave the original answer again (twice): the turn has no pair to label."""


def same_answer(a: str, b: str) -> bool:
    """Whether two answers are the same text but for case and whitespace (no preference to learn).

    >>> same_answer("Use  shutil.copy.", "use shutil.copy. ")
    True
    """
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def chat_complete(
    base_url: str, api_key: str, model: str, *, temperature: float, max_tokens: int, timeout_s: float
) -> Complete:
    """A :data:`Complete` on an OpenAI-compatible endpoint via langchain-openai's ChatOpenAI."""
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        base_url=base_url,
        api_key=api_key,  # type: ignore[arg-type]
        model=model,
        temperature=temperature,
        max_tokens=max_tokens,  # type: ignore[call-arg]
        timeout=timeout_s,
        max_retries=1,
    )

    def complete(messages: list[dict[str, str]]) -> str:
        msg = llm.invoke(messages)
        return msg.content if isinstance(msg.content, str) else str(msg.content)

    return complete


def from_settings(settings: Any) -> CandidateGenerator:
    """The generator ``settings`` configure (the ``model`` strategy needs ``loop_candidate_model``).

    Raises:
        ValueError: an unknown strategy, or ``model`` without a candidate model configured.
    """
    from ragloop.settings import secret_value

    strategy = settings.loop_candidate_strategy
    base_url, model = settings.llm_base_url, settings.llm_model
    api_key = secret_value(settings.openai_api_key) or "sk-local"
    if strategy == "model":
        if not settings.loop_candidate_model:
            raise ValueError("the 'model' candidate strategy needs RAGLOOP_LOOP_CANDIDATE_MODEL")
        model = settings.loop_candidate_model
        base_url = settings.loop_candidate_base_url or base_url
        api_key = secret_value(settings.loop_candidate_api_key) or api_key
    complete = chat_complete(
        base_url,
        api_key,
        model,
        temperature=settings.temperature,
        max_tokens=settings.max_tokens,
        timeout_s=settings.llm_timeout_s,
    )
    retrieve = None
    if strategy == "more_context":
        from retrieval import Retriever

        retriever = Retriever(settings)

        def retrieve(question: str, k: int) -> list[str]:
            return [c.text for c in retriever.search(question, k=k).chunks]

    return CandidateGenerator(strategy, complete, model, retrieve, settings.loop_more_context_k)
