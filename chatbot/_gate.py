"""The grounding gate: no answer reaches the user unsupported without a visible warning.

After the model's answer is complete, the gate verifies its citations (:class:`eval.CitationVerifier`
on the local faithfulness scorer, ~10-45 ms, in a worker thread) and treats it as failed when it is

* ``empty``: no text at all;
* ``markers_only``: nothing but citation markers (``"[1] [2] [3]"``);
* ``low_faithfulness``: its local faithfulness is under ``RAGLOOP_FAITHFULNESS_THRESHOLD`` (the
  online evaluator's threshold);
* ``uncited``: it makes claims, but no sentence can be attributed to any passage;
* ``echo``: it only echoes the question (:func:`echoes_question`: "and for dictionaries [1]?" for
  "and for dictionaries?"), which the scorer finds "supported" (the passages repeat the question's
  words) though it answers nothing;
* ``scorer_failed``: it could not be checked at all.

A passing answer is shown with its verified citations only (``passed``). A failed one, with
``RAGLOOP_GATE_STRATEGY``:

* ``retry``: ask once more with a stricter prompt (temperature 0). If that answer passes, it is
  shown (``retried``); if not, the extractive answer below;
* ``extractive``: the supporting sentences of the best passage, labelled as quoted from it
  (``extractive``).

When no passage shares a word with the question (in its section title or a sentence), there is
nothing to quote: the best answer the model gave is shown under a warning (``warned``).

An answer the model stopped at its length limit (finish_reason ``length``, ``RAGLOOP_MAX_TOKENS``)
ends mid-sentence: when the model's text is what is shown (passed, retried, warned), a note in the
turn's language follows it (``chatbot._gate_text.CUT_NOTES``), and ``turns.extra["gate"]["truncated"]``
(and ``turns.flags["truncated"]``, set by the chain) record it. A quote is never cut.

The local scorer reads English only (an English stemmer and stop list, an English embedding
model): a correct German answer shares almost no words with English passages and scores as
unsupported. So an answer that fails on its score (``low_faithfulness``, ``uncited``) while
written in a language the scorer cannot read (:data:`SCORER_LANGUAGES`, detected with
``eval._language``), and that says something beyond the question (:func:`says_something`: the
model sometimes echoes the question under the sources' headings), is neither retried nor replaced
by a quote: it is shown as written, with its
verified markers only, under a warning in the user's language saying it was not checked
(``warned``; ``turns.extra["gate"]["unchecked_language"]`` holds the answer's language). Empty
and marker-only answers still become a quote. Every label and warning the gate writes is in the
turn's language when ``chatbot._gate_text`` has it (de, fr, es, it, pt, nl), else English; the
quote stays in the source's words.

Streaming: tokens stream as the model writes them, as a draft. When the draft is complete the
turn emits ``checking`` (with the reason, when the gate retries) and then ``final``, whose
``answer`` replaces the draft, with ``citations`` and ``gate``; ``done``'s result carries the
same gated answer, and the chat log stores it (``turns.answer``, ``turns.citations``,
``turns.gate``), with the model's own draft, the reason and the gate's time under
``turns.extra["gate"]`` for the labeling loop. A client shows the draft as unverified
("checking the sources…") until ``final`` arrives.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from chatbot import _gate_text as gate_text
from chatbot import _prompts as prompts
from chatbot import _quote

log = logging.getLogger(__name__)

PASSED = "passed"
RETRIED = "retried"
EXTRACTIVE = "extractive"
WARNED = "warned"
#: What ``turns.gate`` can hold.
GATE_STATUSES = (PASSED, RETRIED, EXTRACTIVE, WARNED)
STRATEGIES = ("retry", "extractive")

#: The retry's system prompt: every sentence from a source, cited; no markers-only replies.
STRICT_SYSTEM_PROMPT = (
    "You are ragloop. Answer strictly from the numbered sources in the user's message. Every "
    "sentence you write must be directly supported by one source; end it with that source's number "
    "in square brackets, like [1]. Prefer the sources' own words. Do not add facts, names, numbers "
    "or code that the sources do not contain, and never reply with citation numbers alone. If the "
    "sources do not answer the question, reply exactly: I don't know based on the provided sources. "
    "At most three sentences."
)
#: The English texts (the other languages: ``chatbot._gate_text``).
WARNING = gate_text.WARNINGS["en"]
NO_SUPPORTED_ANSWER = gate_text.NO_SUPPORTED_ANSWERS["en"]
QUOTE_LABEL = gate_text.QUOTE_LABELS["en"]
#: Languages the local faithfulness scorer can read; an answer in another one is not judged by it.
SCORER_LANGUAGES = frozenset({"en"})
#: Failure reasons that come from the scorer's judgement (not from an empty answer).
SCORED_REASONS = frozenset({"low_faithfulness", "uncited"})
#: The failure reason of an answer that only echoes the question (:func:`echoes_question`).
ECHO = "echo"
#: At most this many sentences, and about this many characters, are quoted.
QUOTE_SENTENCES = 3
QUOTE_CHARS = 600


@dataclass
class GateOutcome:
    """What the gate did to one answer.

    Attributes:
        status: one of :data:`GATE_STATUSES`.
        answer: the text shown and stored.
        citations: verified citations of ``answer``: ``[{"sentence", "source", "score"}]``.
        reason: why the model's first answer failed (None when it passed).
        original_answer: the model's first answer, as streamed.
        faithfulness: the local faithfulness of the first answer (None: empty or unscored).
        retry_answer: the retry's answer, when there was one.
        gate_ms: wall time the gate added, retry included.
        unchecked_language: the answer's language (ISO 639-1) when the scorer could not read it and
            the answer was kept under a warning instead of being judged; None otherwise.
        truncated: the model's answer stopped at its length limit (finish_reason ``length``); when
            the model's text is shown, :data:`chatbot._gate_text.CUT_NOTES` follows it.
    """

    status: str
    answer: str
    citations: list[dict[str, Any]] = field(default_factory=list)
    reason: str | None = None
    original_answer: str = ""
    faithfulness: float | None = None
    retry_answer: str | None = None
    retry_faithfulness: float | None = None
    gate_ms: float = 0.0
    unchecked_language: str | None = None
    truncated: bool = False

    def event(self) -> dict[str, Any]:
        """The ``final`` event's payload: the text that replaces the streamed draft."""
        return {
            "answer": self.answer,
            "citations": self.citations,
            "gate": self.status,
            "reason": self.reason,
            "warning": self.status == WARNED,
        }

    def record(self) -> dict[str, Any]:
        """What ``turns.extra["gate"]`` keeps: the draft, the reason, the scores and the time."""
        return {
            "original_answer": self.original_answer,
            "reason": self.reason,
            "faithfulness": self.faithfulness,
            "retry_answer": self.retry_answer,
            "retry_faithfulness": self.retry_faithfulness,
            "gate_ms": round(self.gate_ms, 2),
            "unchecked_language": self.unchecked_language,
            "truncated": self.truncated,
        }


@dataclass(frozen=True)
class Check:
    """One answer's verification: the cleaned answer and why it failed (None: it passed).

    ``language`` is the answer's detected language (ISO 639-1) when it failed on its score, so the
    gate can tell an unsupported answer from one the scorer cannot read; None otherwise.
    """

    answer: str
    citations: list[dict[str, Any]]
    faithfulness: float | None
    reason: str | None
    language: str | None = None

    @property
    def passed(self) -> bool:
        """True when the answer can be shown as it is (with its verified citations)."""
        return self.reason is None


def failure_reason(verified: Any, had_markers: bool, threshold: float) -> str | None:
    """Why a verified answer (:class:`eval.Verified`) fails the gate, or None when it passes."""
    if verified.empty:
        return "markers_only" if had_markers else "empty"
    if verified.faithfulness is None:
        return "scorer_failed"
    if verified.faithfulness < threshold:
        return "low_faithfulness"
    if not verified.result.citations and _claims(verified):
        return "uncited"
    return None


def _claims(verified: Any) -> bool:
    from eval._features import answer_sentences

    return bool(answer_sentences(verified.parsed.text))


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token sequences (word order shared)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for k, y in enumerate(b):
            cur.append(prev[k] + 1 if x == y else max(prev[k + 1], cur[k]))
        prev = cur
    return prev[-1]


def best_passage(
    question: str, chunks: Sequence[prompts.SourceLike]
) -> tuple[int, int, list[_quote.Unit]] | None:
    """The passage that best matches ``question``, and its sentence to quote from.

    Each passage is scored by its best sentence (most content words shared with the question;
    ties: the earliest) together with its section title, which the model saw too: the question's
    content words found in either, then the longest run of them in the question's order (so
    "convert a string to a number" prefers that heading to "convert a number to a string"), then
    the retriever's rank. A heading that is the question itself outweighs a sentence that merely
    repeats its terms (an FAQ entry against a list of exception names).

    Only prose sentences are scored; code blocks are quoted with the sentence introducing them.

    Returns:
        (0-based passage, 0-based unit of its best sentence, the passage's units:
        :func:`chatbot._quote.passage_units`); None when no passage shares a content word with the
        question.
    """
    from eval._text import tokenize

    asked = tokenize(question).content
    words = set(asked)
    best: tuple[tuple[int, int, int], int, int, list[_quote.Unit]] | None = None
    for p, chunk in enumerate(chunks):
        sents = _quote.passage_units(chunk.text)
        prose = [k for k, u in enumerate(sents) if not u.code]
        if not prose:
            continue
        toks = [() if u.code else tokenize(u.text).content for u in sents]
        j = max(prose, key=lambda k: (len(words & set(toks[k])), -k))
        title = tokenize(getattr(chunk, "title", "") or "").content
        shared = len(words & (set(title) | set(toks[j])))
        key = (shared, max(_lcs(asked, title), _lcs(asked, toks[j])), -p)
        if shared and (best is None or key > best[0]):
            best = (key, p, j, sents)
    return None if best is None else best[1:]


def extractive_answer(
    question: str, chunks: Sequence[prompts.SourceLike], language: str | None = None
) -> tuple[str, list[dict[str, Any]]] | None:
    """The supporting sentences of the passage that best matches ``question``, labelled as a quote.

    The passage is :func:`best_passage`'s. The quote starts at its best sentence (after it, when it
    is a heading that restates the question, ending in "?") and runs for up to
    :data:`QUOTE_SENTENCES` sentences and about :data:`QUOTE_CHARS` characters. A code block is
    quoted whole, fenced, with its indentation, together with the sentence introducing it (or
    neither), and the quote never ends on a sentence ending in ``:`` without what it introduces
    (:mod:`chatbot._quote`). The label is in ``language`` (ISO 639-1) when
    ``chatbot._gate_text`` has it, else English; the quote is in the source's own words.

    Returns:
        (text, citations), the citations ``[{"sentence", "source", "score": 1.0}]`` over the
        text's sentences; None when no passage shares a content word with the question.
    """
    found = best_passage(question, chunks)
    if found is None:
        return None
    p, start, units = found
    if units[start].text.rstrip().endswith("?") and start + 1 < len(units):
        start += 1
    quote: list[list[_quote.Unit]] = []
    sentences = chars = 0
    for group in _quote.quote_groups(units, start):
        more = sum(not u.code for u in group)
        size = sum(len(u.text) for u in group)
        if quote and (sentences + more > QUOTE_SENTENCES or chars + size > QUOTE_CHARS):
            break
        quote.append(group)
        sentences, chars = sentences + more, chars + size
    while len(quote) > 1 and _quote.dangling(quote[-1]):
        quote.pop()  # "...as follows:" without what follows: stop before it
    if _quote.dangling(quote[-1]):  # the only sentence: mark that the quote goes on
        last = quote[-1][-1]
        quote[-1][-1] = _quote.Unit(last.text.rstrip().rstrip(":").rstrip() + " …")
    n, title = p + 1, chunks[p].title
    label = gate_text.localized(gate_text.QUOTE_LABELS, language).format(
        n=n, title=f" ({title})" if title else ""
    )
    answer = f"{label}\n\n{_quote.render_quote(quote, f'[{n}]')}"
    from eval import parse_answer

    skip = len(parse_answer(label).spans)
    count = len(parse_answer(answer).spans)
    return answer, [{"sentence": i, "source": n, "score": 1.0} for i in range(skip, count)]


class GroundingGate:
    """Verifies an answer and, when it fails, retries or quotes (see the module docstring)."""

    def __init__(self, verifier: Any, threshold: float, strategy: str = "retry") -> None:
        """Build a gate.

        Args:
            verifier: an :class:`eval.CitationVerifier` (or a zero-argument callable building one,
                called on the first check, in a worker thread: the encoder loads lazily).
            threshold: faithfulness under this fails the gate (``RAGLOOP_FAITHFULNESS_THRESHOLD``).
            strategy: ``retry`` or ``extractive``.

        Raises:
            ValueError: an unknown strategy.
        """
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown gate strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
        self._verifier = verifier
        self.threshold = threshold
        self.strategy = strategy

    @classmethod
    def from_settings(cls, settings: Any) -> GroundingGate:
        """A gate on the local scorer with the shared evaluation encoder, loaded on first use."""
        threshold = float(settings.faithfulness_threshold)

        def build() -> Any:
            from eval import CitationVerifier, LocalFaithfulness, get_encoder

            return CitationVerifier(LocalFaithfulness(get_encoder(settings), threshold=threshold))

        return cls(build, threshold, settings.gate_strategy)

    @property
    def verifier(self) -> Any:
        """The citation verifier (built on first use)."""
        if callable(self._verifier) and not hasattr(self._verifier, "verify"):
            self._verifier = self._verifier()
        return self._verifier

    def check(self, answer: str, passages: Sequence[str], question: str | None, titles: str = "") -> Check:
        """Verify one answer (CPU work: call it off the event loop).

        ``titles`` are the passages' section titles: an answer made of the question's and the
        titles' words only is an echo (:func:`echoes_question`), whatever its score.
        """
        from eval import attribute, parse_answer

        parsed = parse_answer(answer)
        try:
            verified = self.verifier.verify(answer, passages, question)
        except Exception as exc:  # noqa: BLE001 - a broken scorer gates the answer, never fails the turn
            log.warning("grounding gate: verification failed (%s: %s)", type(exc).__name__, exc)
            bare = attribute(parsed, [None] * len(parsed.spans), len(passages)).answer
            return Check(bare, [], None, "scorer_failed")
        had_markers = bool(answer.strip()) and not parsed.has_content
        reason = failure_reason(verified, had_markers, self.threshold)
        if reason in (None, *SCORED_REASONS) and echoes_question(parsed.text, question or "", titles):
            reason = ECHO
        language = answer_language(parsed.text) if reason in SCORED_REASONS else None
        return Check(
            verified.result.answer, verified.result.to_dicts(), verified.faithfulness, reason, language
        )

    def retry_messages(
        self, question: str, chunks: Sequence[prompts.SourceLike], language: str | None = None
    ) -> list[Any]:
        """The stricter prompt: same sources, question and language, :data:`STRICT_SYSTEM_PROMPT`."""
        from langchain_core.messages import HumanMessage, SystemMessage

        block = prompts.format_sources(chunks)
        user = prompts.user_prompt(question, block, language)
        return [SystemMessage(STRICT_SYSTEM_PROMPT), HumanMessage(user)]

    async def run(
        self,
        answer: str,
        question: str,
        chunks: Sequence[prompts.SourceLike],
        llm: Any,
        config: Any,
        language: str | None = None,
        truncated: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:
        """Gate ``answer``: yield ``{"gate_checking": {...}}`` before a retry, then ``{"gate": outcome}``.

        Args:
            answer: the model's answer, as streamed.
            question: the standalone question.
            chunks: the passages the prompt numbered, in order.
            llm: the chat model, for the retry.
            config: the chain's runnable config (the retry nests under the chain's run).
            language: the question's language (ISO 639-1), asked of the retry as of the answer.
            truncated: the answer stopped at the length limit (finish_reason ``length``): when the
                model's text is shown (passed, warned), a note in ``language`` says it is cut off.
        """
        started = time.perf_counter()
        texts = [c.text for c in chunks]
        titles = " ".join(str(getattr(c, "title", "") or "") for c in chunks)
        first = await asyncio.to_thread(self.check, answer, texts, question, titles)
        outcome = GateOutcome(PASSED, first.answer, first.citations, None, answer, first.faithfulness)
        cut = truncated  # whether the text shown is the model's and was cut at the length limit
        if (
            not first.passed
            and first.language not in (None, *SCORER_LANGUAGES)
            and says_something(first.answer, question, titles)
        ):
            # The scorer cannot read this answer: keep it, marked as not checked (module docstring).
            outcome.reason, outcome.unchecked_language = first.reason, first.language
            yield {"gate_checking": {"reason": first.reason, "retrying": False}}
            self._warn(outcome, first, gate_text.localized(gate_text.UNCHECKED_LANGUAGE_WARNINGS, language))
        elif not first.passed:
            outcome.reason = first.reason
            yield {"gate_checking": {"reason": first.reason, "retrying": self.strategy == "retry"}}
            second = (
                await self._retry(question, chunks, llm, config, texts, language)
                if self.strategy == "retry"
                else None
            )
            if second is not None:
                outcome.retry_answer, outcome.retry_faithfulness = second[0], second[1].faithfulness
            if second is not None and second[1].passed:
                outcome.status, outcome.answer, outcome.citations = (
                    RETRIED,
                    second[1].answer,
                    second[1].citations,
                )
                cut = second[2]
            else:
                use_second = second is not None and bool(second[1].answer)
                fallback = second[1] if second is not None and use_second else first
                shown = self._fall_back(outcome, question, chunks, fallback, language)
                cut = shown and (second[2] if second is not None and use_second else truncated)
        outcome.truncated = truncated or cut
        if cut and outcome.answer.strip():
            note = gate_text.localized(gate_text.CUT_NOTES, language)
            outcome.answer = f"{outcome.answer.rstrip()}\n\n{note}"
        outcome.gate_ms = (time.perf_counter() - started) * 1000
        yield {"gate": outcome}

    async def _retry(
        self,
        question: str,
        chunks: Sequence[prompts.SourceLike],
        llm: Any,
        config: Any,
        texts: list[str],
        language: str | None,
    ) -> tuple[str, Check, bool] | None:
        messages = self.retry_messages(question, chunks, language)
        try:
            reply = await llm.ainvoke(messages, config, temperature=0.0)
        except Exception as exc:  # noqa: BLE001 - a failed retry falls back to the extractive answer
            log.warning("grounding gate: the retry failed (%s: %s)", type(exc).__name__, exc)
            return None
        text = str(reply.content or "")
        cut = (getattr(reply, "response_metadata", None) or {}).get("finish_reason") == "length"
        titles = " ".join(str(getattr(c, "title", "") or "") for c in chunks)
        return text, await asyncio.to_thread(self.check, text, texts, question, titles), cut

    @staticmethod
    def _fall_back(
        outcome: GateOutcome,
        question: str,
        chunks: Sequence[prompts.SourceLike],
        best: Check,
        language: str | None = None,
    ) -> bool:
        """Quote the best passage, else show ``best`` under a warning; True when ``best`` is shown."""
        extract = extractive_answer(question, chunks, language)
        if extract is not None:
            outcome.status, (outcome.answer, outcome.citations) = EXTRACTIVE, extract
            return False
        if best.answer:
            GroundingGate._warn(outcome, best, gate_text.localized(gate_text.WARNINGS, language))
            return True
        outcome.status, outcome.citations = WARNED, []
        outcome.answer = gate_text.localized(gate_text.NO_SUPPORTED_ANSWERS, language)
        return False

    @staticmethod
    def _warn(outcome: GateOutcome, shown: Check, warning: str) -> None:
        """Show ``shown``'s answer (verified markers only) under ``warning``; its citations shift."""
        from eval import parse_answer

        shift = len(parse_answer(warning).spans)
        cited = [{**c, "sentence": c["sentence"] + shift} for c in shown.citations]
        outcome.status, outcome.answer, outcome.citations = WARNED, f"{warning}\n\n{shown.answer}", cited


#: Content words an unreadable answer must add to the question and the section titles to be kept.
MIN_NEW_WORDS = 3


def says_something(answer: str, question: str, titles: str) -> bool:
    """Whether ``answer`` adds at least :data:`MIN_NEW_WORDS` content words to the question and titles.

    A language-independent floor for answers the scorer cannot read: the small model sometimes
    "answers" by echoing the question under the sources' headings, which is no answer in any
    language, and is quoted around like an unsupported one.

    >>> says_something("Files > Wie kopiere ich eine Datei?", "Wie kopiere ich eine Datei?", "Files")
    False
    >>> says_something("Nutzen Sie shutil.copy(src, dst) zum Kopieren.", "Wie kopiere ich eine Datei?", "")
    True
    """
    from chatbot._rewrite import content_words

    seen = content_words(question) | content_words(titles)
    return len(content_words(answer) - seen) >= MIN_NEW_WORDS


def echoes_question(answer: str, question: str, titles: str = "") -> bool:
    """Whether ``answer`` only echoes the question: (nearly) no content word beyond it and the titles.

    The generalisation of :func:`says_something` to every language: an answer whose content words
    (``chatbot._rewrite.content_words``, markers removed) are all the question's or the section
    titles' answers nothing, and so is a question that adds a single word. An answer with no
    content word at all ("Yes [1].") is left to the other checks, and so is one naming code the
    question does not (``shutil.copy``, ``sorted()``, inline code): a title may name the function
    that a short answer rightly points to.

    >>> echoes_question("and for dictionaries [1]?", "and for dictionaries?")
    True
    >>> echoes_question("Dictionaries are implemented [1].", "How are dictionaries implemented?")
    True
    >>> echoes_question("Use `sorted(iterable)` [1].", "How do I sort a list?")
    False
    >>> echoes_question("Use shutil.copy [1].", "How do I copy a file?", "shutil - file operations")
    False
    """
    from chatbot._rewrite import content_words

    text = _MARKERS.sub(" ", answer).strip()
    words = content_words(text)
    if not words:
        return False
    if set(_CODE_NAMES.findall(text)) - set(_CODE_NAMES.findall(question)):
        return False
    new = words - content_words(question) - content_words(titles)
    return not new or (len(new) == 1 and text.endswith(("?", "？")))


_MARKERS = re.compile(r"\[\d{1,3}\]")
#: Names of code in a text: inline code, dotted names, calls.
_CODE_NAMES = re.compile(r"`[^`\n]+`|\b\w+(?:\.\w+)+\b|\b\w+\(")


def answer_language(answer: str) -> str:
    """The language an answer is written in (ISO 639-1); ambiguous text (code, a few words) is English.

    English is the fallback because it is what the scorer reads: an answer too short or too full of
    code to tell is judged by the scorer, as before.
    """
    from eval._language import DEFAULT_LANGUAGE, detect_language

    try:
        return detect_language(answer).language
    except Exception:  # noqa: BLE001 - without a detector the scorer's verdict stands
        log.warning("grounding gate: language detection failed", exc_info=True)
        return DEFAULT_LANGUAGE
