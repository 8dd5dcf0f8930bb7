"""Verified citations: attribute each answer sentence to the passage that supports it.

The model is asked to cite sources as ``[n]`` (the passages are numbered ``[1]``, ``[2]``, ... as
``chatbot._prompts.format_sources`` numbers them), but a small model often cites nothing, cites a
passage that does not hold the claim, cites passages that do not exist, or answers with markers
only. The verifier does not trust the markers: it uses the local faithfulness scorer's per-sentence
evidence (the best supporting context sentence and its passage) and

* keeps a marker only when its passage supports the sentence (the scorer's best passage, or a
  passage that supports the sentence on its own);
* removes markers that point to no passage (``[0]``, ``[9]`` of three) or to one that does not
  support the sentence;
* adds the best passage's marker to a supported sentence the model left uncited.

"The best passage" is the scorer's best-supporting passage unless a better-ranked one (a lower
number: the retriever ranked it closer to the question) also supports the sentence on its own
(:func:`prefer_ranked`). Neighbouring passages often say nearly the same thing (two entries of one
FAQ page, a passage that mentions a book and the one that lists the books); the scorer's argmax
between them is a coin toss, and the passage the user should be sent to is the one that answers the
question. Measured on the Python FAQ (``bench/bench_answers_citations.py``): most wrong citations
were such a neighbour chosen over the FAQ entry itself.

Pure logic (:func:`parse_answer`, :func:`align_evidence`, :func:`attribute`) is separate from the
scoring shell (:class:`CitationVerifier`), so known values can be pinned on strings.

Things that look like markers but are not: ``items[1]`` (indexing: the bracket follows a word),
anything inside inline code or a fenced code block.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from eval._results import EvalResult, SentenceEvidence
from eval._text import _SENT_END, _WORD, coverage, tokenize

#: One run of citation markers: ``[1]``, ``[1, 2]``, ``[1][3]``, ``[2-4]``; not ``x[1]`` or ``f(a)[0]``.
MARKER = re.compile(r"(?<![\w)\]])(?:\[\s*\d{1,3}(?:\s*[-,;]\s*\d{1,3})*\s*\])+")
_NUM_OR_RANGE = re.compile(r"(\d{1,3})(?:\s*-\s*(\d{1,3}))?")
_CODE = re.compile(r"```.*?(?:```|\Z)|`[^`\n]+`", re.DOTALL)
#: A piece of text left holding only a label once its markers are gone ("Sources: [1], [2]").
_LABEL = re.compile(
    r"[-*]?\s*(?:(?:the\s+)?sources?|references?|citations?|cited|see)\s*:?[\s,.;]*",
    re.IGNORECASE,
)
_TRAILING_PUNCT = ".!?:;"
#: Lexical floor of a citation: at least this share of the sentence's content words (those not
#: merely repeated from the question) must occur in the cited passage. The scorer's combiner can
#: call a sentence with no word in common with any passage "supported" (it extrapolates where its
#: tuning data had no such case); a citation needs evidence in the passage itself.
MIN_OVERLAP = 0.5
#: Longest range a marker may expand (``[1-50]`` is not a citation of fifty passages).
_MAX_RANGE = 10


@dataclass(frozen=True)
class Citation:
    """A verified citation: answer sentence ``sentence`` (0-based) is supported by passage ``source``.

    ``source`` is 1-based, as the prompt numbers the passages; ``score`` is the probability in
    [0, 1] that the passage supports the sentence (1.0 for a verbatim quote).
    """

    sentence: int
    source: int
    score: float

    def to_dict(self) -> dict[str, Any]:
        """``{"sentence": i, "source": n, "score": p}`` (what the chat log and the API carry)."""
        return {"sentence": self.sentence, "source": self.source, "score": round(self.score, 4)}


@dataclass(frozen=True)
class ParsedAnswer:
    """An answer split into marker-free text, its sentences and the markers the model put on each.

    Attributes:
        text: the answer with every citation marker removed.
        spans: (start, end) character offsets of each sentence in ``text``.
        markers: the numbers the model cited on each sentence, in order, duplicates and
            out-of-range numbers included (a marker belongs to the sentence it follows).
        in_code: whether each sentence ends inside a code span or block (it gets no marker).
        labels: (start, end) of pieces that only label the markers ("Sources:"), dropped on render.
    """

    text: str
    spans: list[tuple[int, int]]
    markers: list[list[int]]
    in_code: list[bool]
    labels: list[tuple[int, int]] = field(default_factory=list)

    @property
    def sentences(self) -> list[str]:
        """The sentences' text."""
        return [self.text[a:b] for a, b in self.spans]

    @property
    def has_content(self) -> bool:
        """False for an empty answer or one that was only markers and punctuation."""
        return bool(self.spans)


@dataclass(frozen=True)
class CitationResult:
    """The cleaned answer and its verified citations.

    Attributes:
        answer: the answer with only verified markers, one run per sentence, before its final
            punctuation (``"Lists are mutable [2]."``); empty when the answer had no content.
        citations: one :class:`Citation` per (sentence, passage), in sentence order.
        kept: model markers that were verified; removed: model markers dropped (out of range or
            unsupported); added: markers the verifier added to uncited supported sentences.
        sentences: number of sentences of ``answer``.
    """

    answer: str
    citations: list[Citation] = field(default_factory=list)
    kept: int = 0
    removed: int = 0
    added: int = 0
    sentences: int = 0

    def to_dicts(self) -> list[dict[str, Any]]:
        """The citations as JSON-ready dicts."""
        return [c.to_dict() for c in self.citations]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "citations": self.to_dicts()}


def marker_numbers(marker: str) -> list[int]:
    """The numbers one run of markers names, ranges expanded: ``"[1, 3-4][2]"`` -> ``[1, 3, 4, 2]``."""
    out: list[int] = []
    for group in re.findall(r"\[([^\]]*)\]", marker):
        for a, b in _NUM_OR_RANGE.findall(group):
            lo = int(a)
            hi = int(b) if b else lo
            out.extend(range(lo, hi + 1) if lo <= hi <= lo + _MAX_RANGE else [lo])
    return out


def _code_spans(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in _CODE.finditer(text)]


def _inside(pos: int, spans: Sequence[tuple[int, int]]) -> bool:
    return any(a <= pos < b for a, b in spans)


def _strip_markers(answer: str) -> tuple[str, list[tuple[int, list[int]]]]:
    """The answer without markers, and (position in that text, numbers) of each marker removed."""
    code = _code_spans(answer)
    out: list[str] = []
    anchors: list[tuple[int, list[int]]] = []
    last = 0
    for m in MARKER.finditer(answer):
        if _inside(m.start(), code):
            continue
        out.append(answer[last : m.start()])
        nxt = answer[m.end() : m.end() + 1]
        # "mutable [2]." -> "mutable.", "mutable [2] and" -> "mutable and": drop the space before.
        if out[-1].endswith((" ", "\t")) and (not nxt or nxt.isspace() or nxt in ",.;:!?)"):
            out[-1] = out[-1].rstrip(" \t")
        anchors.append((sum(len(p) for p in out), marker_numbers(m.group(0))))
        last = m.end()
    out.append(answer[last:])
    return "".join(out), anchors


def _sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence holding a word, split as :func:`eval._text.split_sentences` splits."""
    spans: list[tuple[int, int]] = []
    start = 0
    for m in [*_SENT_END.finditer(text), None]:
        end = len(text) if m is None else m.start()
        piece = text[start:end]
        a = start + (len(piece) - len(piece.lstrip()))
        b = start + len(piece.rstrip())
        if b > a and _WORD.search(text, a, b):
            spans.append((a, b))
        if m is not None:
            start = m.end()
    return spans


def parse_answer(answer: str) -> ParsedAnswer:
    """Split ``answer`` into marker-free sentences and the markers the model put on each.

    A marker belongs to the sentence it follows ("Lists are mutable. [2]" cites the first
    sentence); markers before the first sentence belong to it.

    >>> p = parse_answer("Lists are mutable [2]. Tuples are not. [1][5]")
    >>> p.sentences, p.markers
    (['Lists are mutable.', 'Tuples are not.'], [[2], [1, 5]])
    """
    text, anchors = _strip_markers(answer or "")
    spans: list[tuple[int, int]] = []
    labels: list[tuple[int, int]] = []
    for a, b in _sentence_spans(text):
        (labels if _LABEL.fullmatch(text, a, b) else spans).append((a, b))
    markers: list[list[int]] = [[] for _ in spans]
    for pos, nums in anchors:
        owner = 0
        for i, (a, _) in enumerate(spans):
            if a < pos:
                owner = i
        if spans:
            markers[owner].extend(nums)
    code = _code_spans(text)
    in_code = [_inside(max(a, b - 1), code) for a, b in spans]
    return ParsedAnswer(text, spans, markers, in_code, labels)


def align_evidence(
    parsed: ParsedAnswer, evidence: Sequence[SentenceEvidence]
) -> list[SentenceEvidence | None]:
    """The scorer's evidence for each sentence of ``parsed`` (None for sentences it did not score).

    The scorer splits the same marker-free text the same way but skips sentences without content
    words (and scores at most a dozen), so evidence is matched by sentence text, in order.
    """
    out: list[SentenceEvidence | None] = [None] * len(parsed.spans)
    k = 0
    for i, sent in enumerate(parsed.sentences):
        if k < len(evidence) and evidence[k].sentence.strip() == sent.strip():
            out[i] = evidence[k]
            k += 1
    return out


def overlap(sentence: str, passage: str, question: str | None = None) -> float:
    """Share of ``sentence``'s content words found in ``passage`` (words of ``question`` aside).

    >>> overlap("Tuples are immutable sequences.", "A tuple is an immutable sequence type.")
    1.0
    >>> overlap("The moon is made of green cheese.", "Lists are mutable sequences.")
    0.0
    """
    words = _stems(sentence)
    own = words - _stems(question or "")
    return coverage(own or words, _stems(passage), empty=0.0)


def _stems(text: str) -> set[str]:
    # The scorer's light stemmer leaves "sequence" and "sequences" as "sequence" / "sequenc".
    return {t[:-1] if t.endswith("e") else t for t in tokenize(text).content}


def best_source(ev: SentenceEvidence | None, threshold: float) -> int | None:
    """The 1-based passage that supports a sentence, or None when the sentence is not supported."""
    if ev is None or ev.source_index is None or ev.score < threshold:
        return None
    return ev.source_index + 1


def prefer_ranked(
    evidence: Sequence[SentenceEvidence | None],
    support: Mapping[tuple[int, int], float],
    threshold: float = 0.5,
    overlaps: Mapping[tuple[int, int], float] | None = None,
) -> list[SentenceEvidence | None]:
    """Move each supported sentence's best passage to the best-ranked passage that also supports it.

    Args:
        evidence: per sentence, the scorer's evidence (its ``source_index`` is 0-based) or None.
        support: (sentence, 1-based passage) -> support of the sentence by that passage alone, for
            passages ranked above the scorer's best one (missing: not supported).
        threshold: a pair scoring at least this supports the sentence.
        overlaps: (sentence, 1-based passage) -> :func:`overlap`; a pair under :data:`MIN_OVERLAP`
            never supports (missing: no lexical check).

    Returns:
        The evidence, with ``source_index`` and ``score`` of the first (best-ranked) supporting
        passage; unsupported sentences and those already on their best-ranked passage unchanged.

    >>> ev = [SentenceEvidence("There are many books.", True, 0.9, 1, "Cite a favourite book.")]
    >>> prefer_ranked(ev, {(0, 1): 0.55})[0].source_index
    0
    >>> prefer_ranked(ev, {(0, 1): 0.3})[0].source_index
    1
    """
    lex = overlaps or {}
    out: list[SentenceEvidence | None] = []
    for i, ev in enumerate(evidence):
        best = best_source(ev, threshold)
        if ev is not None and best is not None:
            for n in range(1, best):
                score = support.get((i, n), 0.0)
                if score >= threshold and lex.get((i, n), 1.0) >= MIN_OVERLAP:
                    ev = SentenceEvidence(ev.sentence, True, score, n - 1, None)
                    break
        out.append(ev)
    return out


def attribute(
    parsed: ParsedAnswer,
    evidence: Sequence[SentenceEvidence | None],
    n_sources: int,
    threshold: float = 0.5,
    pair_support: Mapping[tuple[int, int], float] | None = None,
    overlaps: Mapping[tuple[int, int], float] | None = None,
) -> CitationResult:
    """Verify, remove and add markers; rebuild the answer with verified markers only.

    Args:
        parsed: the answer as :func:`parse_answer` splits it.
        evidence: per sentence of ``parsed``, the scorer's evidence (:func:`align_evidence`) or None.
        n_sources: how many passages the prompt numbered (valid markers are 1..n_sources).
        threshold: a sentence (or sentence-passage pair) scoring at least this is supported.
        pair_support: (sentence, 1-based passage) -> support of the sentence by that passage
            alone, for markers that name a passage other than the scorer's best one (missing: 0).
        overlaps: (sentence, 1-based passage) -> :func:`overlap`; a pair under :data:`MIN_OVERLAP`
            is never cited (missing: no lexical check).

    Returns:
        The :class:`CitationResult`. Known values:

        >>> p = parse_answer("Lists are mutable [3]. Yes.")
        >>> ev = [SentenceEvidence("Lists are mutable.", True, 0.9, 0, "Lists are mutable."), None]
        >>> attribute(p, ev, 2).answer
        'Lists are mutable [1]. Yes.'
    """
    pairs = pair_support or {}
    lex = overlaps or {}
    citations: list[Citation] = []
    kept = removed = added = 0
    per_sentence: list[list[int]] = []
    for i, ev in enumerate(evidence):
        best = best_source(ev, threshold)
        if best is not None and lex.get((i, best), 1.0) < MIN_OVERLAP:
            best = None
        model = list(dict.fromkeys(parsed.markers[i]))
        mine: list[tuple[int, float]] = []
        if not parsed.in_code[i]:
            for n in model:
                if not 1 <= n <= n_sources or lex.get((i, n), 1.0) < MIN_OVERLAP:
                    continue
                if n == best and ev is not None:
                    mine.append((n, ev.score))
                elif pairs.get((i, n), 0.0) >= threshold:
                    mine.append((n, pairs[(i, n)]))
        kept += len(mine)
        removed += len(parsed.markers[i]) - len(mine)
        if not mine and best is not None and ev is not None and not parsed.in_code[i]:
            mine.append((best, ev.score))
            added += 1
        per_sentence.append([n for n, _ in mine])
        citations += [Citation(i, n, s) for n, s in mine]
    return CitationResult(
        answer=render(parsed, per_sentence),
        citations=citations,
        kept=kept,
        removed=removed,
        added=added,
        sentences=len(parsed.spans),
    )


def render(parsed: ParsedAnswer, sources: Sequence[Sequence[int]]) -> str:
    """``parsed.text`` with ``[n]`` markers for ``sources[i]`` before sentence i's final punctuation.

    Label pieces ("Sources:") whose markers were all moved onto sentences are dropped.
    """
    if not parsed.spans:
        return ""  # nothing but markers, labels and punctuation
    text = parsed.text
    edits: list[tuple[int, int, str]] = [(a, b, "") for a, b in parsed.labels]  # (start, end, new)
    for (a, b), nums in zip(parsed.spans, sources, strict=True):
        if not nums:
            continue
        pos = b
        while pos > a and text[pos - 1] in _TRAILING_PUNCT:
            pos -= 1
        edits.append((pos, pos, " " + "".join(f"[{n}]" for n in nums)))
    for start, end, new in sorted(edits, reverse=True):
        text = text[:start] + new + text[end:]
    text = re.sub(r"[ \t]+\n", "\n", text)
    text = re.sub(r"^[ \t]*[-*•][ \t]*$\n?", "", text, flags=re.MULTILINE)  # bullets of removed markers
    return re.sub(r"\n{3,}", "\n\n", text).strip()


class FaithfulnessScorer(Protocol):
    """What the verifier needs of a scorer (:class:`eval.LocalFaithfulness` fits)."""

    threshold: float

    def score(self, answer: str, contexts: Sequence[str], question: str | None = None) -> EvalResult:
        """Support of ``answer`` by ``contexts``, with per-sentence evidence."""
        ...


@dataclass(frozen=True)
class Verified:
    """A verified answer: the citations, and the faithfulness of its marker-free text.

    ``faithfulness`` is None for an answer with no content (empty or markers only) and for a
    scorer failure (then ``error`` says why).
    """

    result: CitationResult
    parsed: ParsedAnswer
    faithfulness: float | None
    error: str | None = None

    @property
    def empty(self) -> bool:
        """True when the answer had no words: empty, or only citation markers."""
        return not self.parsed.has_content


class CitationVerifier:
    """Scores an answer once, then attributes its sentences (see the module docstring).

    Cost: one faithfulness check of the marker-free answer, plus one check of a single sentence
    against a single passage for each model marker that names a passage other than the best one,
    and for each better-ranked passage that shares words with a sentence best supported lower down.
    """

    def __init__(self, scorer: FaithfulnessScorer, threshold: float | None = None) -> None:
        """Wrap ``scorer``; ``threshold`` (default: the scorer's) decides "supported"."""
        self.scorer = scorer
        self.threshold = scorer.threshold if threshold is None else threshold

    def verify(self, answer: str, passages: Sequence[str], question: str | None = None) -> Verified:
        """Verify ``answer``'s citations against ``passages`` (numbered 1..n as in the prompt).

        Args:
            answer: the model's answer, markers included.
            passages: the passage texts, in prompt order.
            question: the (standalone) question: restating it is not a claim.

        Returns:
            :class:`Verified`. A scorer failure keeps no marker (nothing could be verified).
        """
        parsed = parse_answer(answer)
        if not parsed.has_content:
            return Verified(CitationResult("", removed=sum(map(len, parsed.markers))), parsed, None)
        res = self.scorer.score(parsed.text, list(passages), question)
        if res.score is None:
            plain = attribute(parsed, [None] * len(parsed.spans), len(passages), self.threshold)
            return Verified(plain, parsed, None, res.error)
        evidence = self._prefer_ranked(align_evidence(parsed, res.sentences), passages, question)
        pairs: dict[tuple[int, int], float] = {}
        lex: dict[tuple[int, int], float] = {}
        for i, ev in enumerate(evidence):
            if ev is None:
                continue
            best = best_source(ev, self.threshold)
            if best is not None:
                lex[(i, best)] = overlap(ev.sentence, passages[best - 1], question)
            for n in dict.fromkeys(parsed.markers[i]):
                if n == best or not 1 <= n <= len(passages):
                    continue
                lex[(i, n)] = overlap(ev.sentence, passages[n - 1], question)
                if lex[(i, n)] >= MIN_OVERLAP:  # the scorer is only asked when words are shared
                    one = self.scorer.score(ev.sentence, [passages[n - 1]], question)
                    pairs[(i, n)] = one.score if one.score is not None else 0.0
        result = attribute(parsed, evidence, len(passages), self.threshold, pairs, lex)
        return Verified(result, parsed, res.score)

    def _prefer_ranked(
        self, evidence: list[SentenceEvidence | None], passages: Sequence[str], question: str | None
    ) -> list[SentenceEvidence | None]:
        """:func:`prefer_ranked`, asking the scorer about each better-ranked passage that shares words."""
        support: dict[tuple[int, int], float] = {}
        lex: dict[tuple[int, int], float] = {}
        for i, ev in enumerate(evidence):
            best = best_source(ev, self.threshold)
            if ev is None or best is None:
                continue
            for n in range(1, best):
                lex[(i, n)] = overlap(ev.sentence, passages[n - 1], question)
                if lex[(i, n)] < MIN_OVERLAP:
                    continue
                one = self.scorer.score(ev.sentence, [passages[n - 1]], question)
                support[(i, n)] = one.score if one.score is not None else 0.0
                if support[(i, n)] >= self.threshold:
                    break  # the best-ranked supporting passage is found
        return prefer_ranked(evidence, support, self.threshold, lex)
