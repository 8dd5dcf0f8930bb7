"""Pure text helpers for the evaluators: sentence splitting, content words, numbers and names.

No models and no I/O here, so every feature the local scorers use is cheap and testable on strings.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

# Why a hand list: NLTK's list would be a new dependency, and these are the words whose presence in
# the context says nothing about whether a claim is supported.
STOPWORDS = frozenset(
    """
    a about above after again against all also am an and any are as at be because been before being
    below between both but by can could did do does doing done down during each either else even ever
    every few for from further get gets got had has have having he her here hers herself him himself his
    how i if in into is it its itself just let like lot made make many may me might mine more most much
    must my myself no nor not now of off often on once one only or other ought our ours ourselves out
    over own per quite rather really same say says said see seen she should since so some such than that
    the their theirs them themselves then there these they thing things this those though through thus to
    too under until up upon us use used very via was we well were what when where whether which while
    who whom whose why will with within without would yes yet you your yours yourself yourselves
    oh ok okay yeah yep sure think know well good great nice love maybe actually also know like
    i'm it's don't didn't isn't wasn't that's you're i've i'd you'll
    """.split()
)

_SENT_END = re.compile(
    r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])|(?<=[a-z0-9][.!?])(?=[A-Z][a-z])|\n{2,}|\s*\n\s*(?=[-*•])"
)
_WORD = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)?(?:[.,][0-9]+)*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
# A lower-case letter followed by a capital inside a word: HaluEval's knowledge glues entities
# together ("Louisa May AlcottLouisa May Alcott is a/an Writer"), so such words are split in two.
_GLUE = re.compile(r"(?<=[a-z])(?=[A-Z])")
# Dialogue speaker tags ("[Human]:") are markup, not claims.
_TAG = re.compile(r"\[(?:Human|Assistant|User|System)\]:?", re.IGNORECASE)


def split_sentences(text: str) -> list[str]:
    """Split ``text`` into sentences, including sentences glued together without a space.

    HaluEval's knowledge joins paragraphs with no space ("...century.First for Women ..."), and
    retrieved chunks often do too, so a period directly followed by a capitalised word also splits.
    """
    text = _TAG.sub(" ", text or "").strip()
    if not text:
        return []
    parts = [p.strip() for p in _SENT_END.split(text)]
    return [p for p in parts if p and _WORD.search(p)]


def stem(word: str) -> str:
    """A deliberately light stemmer: lower case, no possessive, no plural or common verb suffix."""
    w = word.lower().replace("’", "'")
    if w.endswith("'s"):
        w = w[:-2]
    for suffix, min_len in (("ies", 5), ("ing", 6), ("ed", 5), ("es", 5), ("s", 4)):
        if w.endswith(suffix) and len(w) >= min_len and not w.endswith("ss"):
            return w[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return w


@dataclass(frozen=True)
class Tokens:
    """The evidence-bearing tokens of one piece of text."""

    content: tuple[str, ...]
    """Stemmed content words (stopwords removed), in order."""
    numbers: frozenset[str]
    """Numbers, with thousands separators removed."""
    names: frozenset[str]
    """Stemmed capitalised words that do not start a sentence: a cheap proper-noun detector."""


def tokenize(text: str) -> Tokens:
    """Extract content words, numbers and names from ``text``."""
    content: list[str] = []
    names: set[str] = set()
    numbers = {n.replace(",", "") for n in _NUMBER.findall(text or "")}
    for sentence in split_sentences(text):
        for i, match in enumerate(_WORD.finditer(_GLUE.sub(" ", sentence))):
            raw = match.group(0)
            low = raw.lower().replace("’", "'")
            if low in STOPWORDS or (len(low) < 2 and not low.isdigit()):
                continue
            token = stem(raw)
            content.append(token)
            if i > 0 and raw[0].isupper():
                names.add(token)
    return Tokens(tuple(content), frozenset(numbers), frozenset(names))


def bigrams(tokens: tuple[str, ...]) -> set[tuple[str, str]]:
    """Adjacent pairs of content tokens."""
    return set(zip(tokens, tokens[1:], strict=False))


def coverage(part: AbstractSet[Hashable], whole: AbstractSet[Hashable], empty: float = 1.0) -> float:
    """Share of ``part`` found in ``whole``; ``empty`` when ``part`` is empty (nothing to check)."""
    if not part:
        return empty
    return len(part & whole) / len(part)
