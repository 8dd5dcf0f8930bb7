"""The language of a user's message, detected offline with lingua (``lingua-language-detector``).

Used by the chat (the turn's ``language`` column, the answer prompt, the condense check) and, through
that column, by the drift job. The detector is built once, lazily (the first call, or
:func:`warm_up` in a background thread when the chat starts), with its models preloaded, and only for
:data:`LANGUAGES`. Why restricted: measured here, every language lingua knows (75) took 23 s and
1.3 GB to load; each Latin-script language costs ~25 MB (17 languages: 524 MB), while scripts that
identify a language by themselves (CJK) cost almost nothing. Thirteen languages load in a few
seconds to ~300 MB, and a message then takes well under a millisecond. The low-accuracy mode loads
in 0.6 s and 110 MB but called 15% of the English FAQ questions another language: not used.

Short messages are ambiguous ("ok", "und Listen?", even "How do I sort a list?" scores Polish a hair
above English). The rule (:func:`detect_language`):

1. code is dropped first (backtick spans, identifiers with ``_ . ( ) /`` or digits, URLs): a function
   name says nothing of the language the user writes in;
2. an inverted question or exclamation mark: Spanish (the only language of the set that uses them);
3. fewer than :data:`MIN_LETTERS` letters left: ambiguous;
4. lingua's top language with a confidence of at least :data:`MIN_CONFIDENCE`: that language; to take
   over from the conversation's previous language it needs :data:`SWITCH_CONFIDENCE` (so a German
   conversation stays German through "und Dictionaries?", which lingua leans to call English);
5. ambiguous: the conversation's previous language when there is one, else :data:`DEFAULT_LANGUAGE`
   (English, the language of the indexed documentation).

:func:`conversation_language` applies the rule along a conversation, so a German conversation stays
German through "und Listen?".
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

#: ISO 639-1 codes the detector chooses among (each a lingua ``IsoCode639_1`` name, lower case).
LANGUAGES = ("en", "de", "fr", "es", "it", "pt", "nl", "ru", "zh", "ja", "ko")
#: The answer language when nothing better is known: the language of the indexed documents.
DEFAULT_LANGUAGE = "en"
#: Below this many letters (after code is dropped) a message is ambiguous.
MIN_LETTERS = 12
#: lingua's confidence (in [0, 1], the languages' values sum to 1) the top language needs.
MIN_CONFIDENCE = 0.35
#: The confidence a language other than the conversation's previous one needs to take over.
SWITCH_CONFIDENCE = 0.5

#: English names, for the answer prompt ("Answer in German").
LANGUAGE_NAMES = {
    "en": "English",
    "de": "German",
    "fr": "French",
    "es": "Spanish",
    "it": "Italian",
    "pt": "Portuguese",
    "nl": "Dutch",
    "ru": "Russian",
    "zh": "Chinese",
    "ja": "Japanese",
    "ko": "Korean",
}

_SPANS = re.compile(r"`[^`]*`|https?://\S+")  # inline code, URLs
_CODE_CHARS = frozenset("_./\\()[]{}<>=0123456789")
_TRAILING = ".,;:!?\"')"


@dataclass(frozen=True)
class LanguageGuess:
    """The language a message is taken to be in, and why.

    Attributes:
        language: ISO 639-1 code (one of :data:`LANGUAGES`).
        source: ``"detected"`` (lingua was confident), ``"previous"`` (ambiguous: the conversation's
            previous language) or ``"default"`` (ambiguous, no previous language: English).
        detected: lingua's top language, even when not confident enough (None: too few letters).
        confidence: lingua's confidence in ``detected`` (0.0 when it did not run).
    """

    language: str
    source: str
    detected: str | None = None
    confidence: float = 0.0


def prose(text: str) -> str:
    r"""``text`` without code: backtick spans, URLs and identifier-like words are removed.

    A word is code when, without its trailing punctuation, it holds any of ``_ . / \\ ( ) [ ] { } < > =``
    or a digit (``os.path``, ``list.sort()``, ``__init__``, ``utf-8``).

    >>> prose("Why doesn't list.sort() return the `sorted` list?")
    "Why doesn't return the list?"
    """
    words = []
    for word in _SPANS.sub(" ", text).split():
        core = word.rstrip(_TRAILING)
        if core and not _CODE_CHARS.intersection(core):
            words.append(word)
    return " ".join(words)


_BUILD_LOCK = threading.Lock()


@functools.cache
def _build_detector() -> Any:
    """The lingua detector for :data:`LANGUAGES` (built once, on first use).

    Raises:
        ImportError: lingua is not installed (it is a core dependency: ``pip install -e .``).
    """
    try:
        from lingua import IsoCode639_1, LanguageDetectorBuilder
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ImportError("language detection needs lingua: pip install lingua-language-detector") from exc
    codes = [getattr(IsoCode639_1, code.upper()) for code in LANGUAGES]
    return LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models().build()


def _detector() -> Any:
    """The one detector; a lock keeps two threads (warm-up and a first turn) from building two."""
    with _BUILD_LOCK:
        return _build_detector()


def detect_language(text: str, previous: str | None = None) -> LanguageGuess:
    """The language of one message; ambiguous messages keep ``previous`` (else English).

    Args:
        text: the user's message.
        previous: the conversation's language so far (ISO 639-1), if any.

    Returns:
        A :class:`LanguageGuess`; its ``language`` is always set.

    >>> detect_language("ok", previous="de").language
    'de'
    """
    fallback = LanguageGuess(previous, "previous") if previous else LanguageGuess(DEFAULT_LANGUAGE, "default")
    words = prose(text)
    if "¿" in words or "¡" in words:  # inverted marks: Spanish alone among LANGUAGES
        return LanguageGuess("es", "detected", "es", 1.0)
    if sum(ch.isalpha() for ch in words) < MIN_LETTERS:
        return fallback
    values = _detector().compute_language_confidence_values(words)
    if not values:
        return fallback
    top = values[0]
    code = top.language.iso_code_639_1.name.lower()
    needed = SWITCH_CONFIDENCE if previous and code != previous else MIN_CONFIDENCE
    if top.value >= needed:
        return LanguageGuess(code, "detected", code, float(top.value))
    return LanguageGuess(fallback.language, fallback.source, code, float(top.value))


def warm_up() -> None:
    """Build the detector and load its models now (a few seconds) rather than on the first message."""
    _detector()


def conversation_language(messages: Iterable[str]) -> LanguageGuess:
    """The language of the last of ``messages`` (a conversation's user messages, oldest first).

    Each message is detected with the language of the ones before it as its fallback.

    >>> conversation_language([]).language
    'en'
    """
    guess = LanguageGuess(DEFAULT_LANGUAGE, "default")
    previous: str | None = None
    for message in messages:
        guess = detect_language(message, previous)
        previous = guess.language
    return guess


def language_name(code: str | None) -> str:
    """The English name of an ISO 639-1 code (the code itself when unknown; English for None)."""
    if not code:
        return LANGUAGE_NAMES[DEFAULT_LANGUAGE]
    return LANGUAGE_NAMES.get(code, code)
