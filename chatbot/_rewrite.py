"""Checks on the condensed (standalone) question, and the fallback when it fails (pure, no I/O).

The condense step asks the LLM to rewrite a follow-up ("and for dictionaries?") as a standalone
question. A small model sometimes answers instead ("To sort a list in Python, you can use the
`sorted()` function. Here's how you can do it:"), drops the follow-up's subject, or switches to
English. :func:`check_rewrite` accepts the rewrite only when all three checks pass:

* ``not_a_question``: it must read as a question or a request (:func:`is_question_or_request`);
* ``lost_content``: it must keep the message's content words, or, when the message has none (pure
  ellipsis: "why?", "and the other way round?"), the topic of the previous question
  (:func:`keeps_content`);
* ``language``: it must stay in the user's language (the caller passes the detected language of
  the message and of the rewrite).

A message that stands on its own (:func:`is_standalone`: a full question or request with its own
content words, no leading "and ..." and no word pointing back, such as "it" or "them") needs no
history. For such a message a fourth check applies:

* ``added_topic``: the rewrite must not bring in the previous question's words that the message
  does not have ("and for lists? How do I get a default value when the key is missing?").

When one fails, the question used for retrieval and the answer is :func:`fallback_question`: for
an elliptical follow-up, the previous question followed by the user's own message, which still
carries everything the user said; for a message that stands on its own, the message alone.
Retrieval then searches with that and with the message alone, and fuses the two rankings
(:attr:`RewriteCheck.queries`, ``chatbot._fusion``): the previous question carries an elliptical
follow-up's topic but drags the old topic into a follow-up that changes it.

The checks are pure functions of strings; :func:`guard_rewrite` and :func:`turn_language` add the
language detection (``eval._language``, lingua: CPU only, no I/O) and are what the chain calls.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from eval._language import DEFAULT_LANGUAGE, LanguageGuess, conversation_language, detect_language, warm_up
from eval._text import STOPWORDS as _EN_STOPWORDS

log = logging.getLogger(__name__)

#: Failure reasons, in the order they are checked.
NOT_A_QUESTION = "not_a_question"
LOST_CONTENT = "lost_content"
LANGUAGE = "language"
ADDED_TOPIC = "added_topic"

#: The share of the message's content words the rewrite must keep.
MIN_KEPT = 0.5
#: A rewrite longer than this many characters is an answer, not a question.
MAX_QUESTION_CHARS = 300

_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)?", re.UNICODE)

# Function words of the languages whose FAQ translations we test (English comes from eval._text),
# plus the elliptical glue of follow-ups ("what about", "und", "et", "y").
_STOPWORDS = _EN_STOPWORDS | frozenset(
    """
    round way instead then again please thanks thank question questions same
    und oder aber auch wie was warum wieso weshalb wann wo welche welcher welches wer ich du er sie es
    wir ihr man mein dein sein der die das den dem des ein eine einen einem einer eines ist sind bin
    kann können muss müssen soll sollte gibt es mit von zu zum zur für auf aus in im an am bei nach
    über unter nicht kein keine noch schon dann denn doch so dass da hier dort mal bitte danke umgekehrt
    et ou mais aussi comment quoi que qui quel quelle quels quelles pourquoi quand où je tu il elle on
    nous vous ils elles le la les un une des du de au aux ce cette ces est sont suis peut peux pour
    par avec dans sur sans ne pas plus en y l d qu c s n j alors donc inverse merci
    y o pero también cómo como qué que quién cuál cuáles por porque cuándo dónde yo tú él ella nosotros
    el la los las un una unos unas del al es son soy puedo puede para con en sin no más lo le se
    me mi su sus este esta esto ese esa revés gracias después luego
    """.split()
)

_ANSWER_OPENERS = re.compile(
    r"^\s*(?:to\s+\w+.*?,\s*you|you\s+can|you\s+could|you\s+should|here'?s|here\s+is|here\s+are|sure\b|"
    r"certainly|of\s+course|yes\b|no\b,|the\s+answer|in\s+python,\s+you|use\s+the\b|"
    r"um\s+.*?,\s*(?:kannst|können)|sie\s+können|du\s+kannst|hier\s+ist|"
    r"pour\s+.*?,\s*(?:vous|tu)|vous\s+pouvez|voici|"
    r"para\s+.*?,\s*(?:puedes|puede)|puedes|aquí\s+(?:está|tienes))",
    re.IGNORECASE,
)
_INTERROGATIVES = frozenset(
    """
    how what why when where which who whom whose can could is are do does did should would will may
    might must was were has have shall explain show tell list give describe compare find write define
    wie was warum wieso weshalb wann wo welche welcher welches wer kann können gibt ist sind muss soll
    erkläre erklär zeige zeig nenne beschreibe vergleiche
    comment pourquoi quand où quel quelle quels quelles qui que qu'est est peut puis existe explique
    montre donne décris compare
    cómo como qué que por cuál cuáles cuándo dónde quién puedo puede hay existe es son explica
    muestra dame describe compara
    """.split()
)


@dataclass(frozen=True)
class RewriteCheck:
    """The outcome of checking one condensed question.

    Attributes:
        condensed: what the condense step produced.
        question: the question to retrieve and answer with (``condensed``, or the fallback).
        failed: the reasons it failed (:data:`NOT_A_QUESTION`, :data:`LOST_CONTENT`,
            :data:`LANGUAGE`); empty when it passed.
    """

    condensed: str
    question: str
    failed: tuple[str, ...] = field(default_factory=tuple)
    message: str = ""

    @property
    def passed(self) -> bool:
        """Whether the condensed question was kept."""
        return not self.failed

    @property
    def queries(self) -> tuple[str, ...]:
        """What retrieval searches for: ``question``; after a fallback, the user's message alone too.

        >>> RewriteCheck("Sure!", "Sorting lists? and dicts?", ("not_a_question",), "and dicts?").queries
        ('Sorting lists? and dicts?', 'and dicts?')
        >>> RewriteCheck("How do I sort dicts?", "How do I sort dicts?").queries
        ('How do I sort dicts?',)
        """
        if self.failed and self.message.strip() and self.message.strip() != self.question.strip():
            return (self.question, self.message)
        return (self.question,)

    def flags(self) -> dict[str, object]:
        """What goes into ``turns.flags``: nothing when it passed, else the reasons and the rewrite."""
        if self.passed:
            return {}
        return {"rewrite_fallback": list(self.failed), "rewrite_rejected": self.condensed[:300]}


def content_words(text: str) -> set[str]:
    """Lower-cased words of ``text`` that are not function words (any language of the lists above).

    >>> sorted(content_words("And how do I delete dictionaries?"))
    ['delete', 'dictionaries']
    """
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOPWORDS and len(w) > 1}


def _same_word(a: str, b: str) -> bool:
    """Equal, or the same word up to a plural or verb ending (shared stem of at least 5 letters)."""
    if a == b:
        return True
    short, long_ = sorted((a, b), key=len)
    if len(short) >= 4 and long_.startswith(short):
        return True  # list/lists, sort/sorted, dict/dictionary
    n = min(len(a), len(b)) - 2
    return n >= 5 and a[:n] == b[:n]  # dictionary/dictionaries, implemented/implementation


def kept_share(words: set[str], text: str) -> float:
    """The share of ``words`` found (as :func:`_same_word`) among ``text``'s content words (1.0 if none)."""
    if not words:
        return 1.0
    found = content_words(text)
    return sum(any(_same_word(w, f) for f in found) for w in words) / len(words)


def is_question_or_request(text: str) -> bool:
    """Whether ``text`` reads as a question or a request rather than an answer.

    An answer: longer than :data:`MAX_QUESTION_CHARS`, ending with a colon, holding a code fence or
    a citation marker, more than one sentence without a question mark, or opening like one ("You
    can...", "To sort a list, you...", "Here's..."). A question ends with a question mark or opens
    with an interrogative or imperative word (English, German, French, Spanish).

    >>> is_question_or_request("How do I sort a dictionary by value?")
    True
    >>> is_question_or_request("To sort a list in Python, you can use the `sorted()` function. Here's how:")
    False
    """
    t = text.strip()
    if not t or len(t) > MAX_QUESTION_CHARS or t.endswith(":") or "```" in t:
        return False
    if re.search(r"\[\d{1,2}\]", t) or _ANSWER_OPENERS.match(t):
        return False
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", t) if s]
    if t.endswith(("?", "？")):
        return True
    if len(sentences) > 1:
        return False
    first = _WORD.findall(t.lstrip("¿¡\"'(").lower())
    return bool(first) and first[0] in _INTERROGATIVES


def keeps_content(condensed: str, message: str, previous_question: str | None) -> bool:
    """Whether the rewrite keeps the message's content words, or, for pure ellipsis, the history's topic.

    Args:
        condensed: the rewrite.
        message: the user's follow-up as typed.
        previous_question: the conversation's previous user question (None on a first turn).

    Returns:
        True when at least :data:`MIN_KEPT` of the message's content words are in the rewrite; when
        the message has none, when the rewrite shares a content word with ``previous_question``
        (always True without one).
    """
    words = content_words(message)
    if words:
        return kept_share(words, condensed) >= MIN_KEPT
    if not previous_question:
        return True
    topic = content_words(previous_question)
    return not topic or kept_share(topic, condensed) > 0.0


#: A message that stands on its own has at least this many content words.
MIN_STANDALONE_WORDS = 2

# Words that continue the previous turn when they open a message ("and ...", "what about ...").
_CONTINUATIONS = re.compile(
    r"^\W*(?:and|or|but|so|also|plus|then|same|what\s+about|how\s+about|und|oder|aber|dann|"
    r"et|ou|mais|alors|y|o|pero|e|entonces)\b",
    re.IGNORECASE,
)
# Words that point back to something said before (pronouns, "the other", "there", "afterwards"),
# in the four languages; articles that double as pronouns (fr "le", es "la") are listed too, which
# only ever keeps the previous question for a message that did not need it.
_ANAPHORA = frozenset(
    """
    it its it's itself them they their theirs themselves this that these those one ones there then
    too either also else other another others same such mine yours above afterwards former latter
    sie es ihn ihm ihnen ihr ihre dies diese dieser dieses dann danach auch damit dafür davon dazu
    umgekehrt ebenso
    le la les lui leur leurs ça cela ceci celui celle ceux celles inverse aussi ensuite après même
    lo los las les eso esto ese esa ello después también revés mismo misma
    """.split()
)


def is_standalone(message: str) -> bool:
    """Whether ``message`` stands on its own: it needs no previous question to be understood.

    A full question or request (:func:`is_question_or_request`) with at least
    :data:`MIN_STANDALONE_WORDS` content words of its own, that neither opens by continuing the
    previous turn ("and for dictionaries?", "what about copying one?") nor points back to it ("how
    do I sort them?", "why does it take so long?"). When unsure, it is not: the previous question
    is then kept, as for any follow-up.

    >>> is_standalone("How do I get a default value when the key is missing?")
    True
    >>> is_standalone("and for lists?"), is_standalone("How do I delete it afterwards?")
    (False, False)
    """
    t = message.strip()
    if not is_question_or_request(t) or _CONTINUATIONS.match(t.lstrip("¿¡\"'(")):
        return False
    words = {m.lower() for m in _WORD.findall(t)}
    return not (words & _ANAPHORA) and len(content_words(t)) >= MIN_STANDALONE_WORDS


def adds_previous_topic(condensed: str, message: str, previous_question: str | None) -> bool:
    """Whether the rewrite brings in content words of the previous question that ``message`` lacks."""
    if not previous_question:
        return False
    own = content_words(message)
    added = {w for w in content_words(condensed) if not any(_same_word(w, o) for o in own)}
    topic = content_words(previous_question)
    return any(_same_word(a, t) for a in added for t in topic)


def fallback_question(message: str, previous_question: str | None) -> str:
    """The previous question followed by the user's own message, for an elliptical follow-up.

    The message alone on a first turn, and when it stands on its own (:func:`is_standalone`): gluing
    the previous question to a new self-contained one only drags the old topic into it.

    >>> fallback_question("and for dictionaries?", "How do I sort a list?")
    'How do I sort a list? and for dictionaries?'
    >>> fallback_question("How do I copy a file?", "and for lists?")
    'How do I copy a file?'
    """
    if not previous_question or is_standalone(message):
        return message
    return f"{previous_question.strip()} {message.strip()}"


def check_rewrite(
    condensed: str,
    message: str,
    history: Sequence[tuple[str, str]],
    language: str | None = None,
    condensed_language: str | None = None,
) -> RewriteCheck:
    """Check a condensed question; fall back (:func:`fallback_question`) when it fails.

    Args:
        condensed: the condense step's output.
        message: the user's follow-up as typed.
        history: the conversation's (question, answer) pairs, oldest first.
        language: the message's language (ISO 639-1), as detected for the turn.
        condensed_language: the rewrite's language as detected with ``language`` as its fallback
            (so an ambiguous rewrite counts as the user's language). None skips the check.

    Returns:
        The :class:`RewriteCheck`; a first turn (no history) always passes.
    """
    if not history or condensed == message:
        return RewriteCheck(condensed, condensed)
    previous = history[-1][0]
    failed = []
    if not is_question_or_request(condensed):
        failed.append(NOT_A_QUESTION)
    if not keeps_content(condensed, message, previous):
        failed.append(LOST_CONTENT)
    if language and condensed_language and condensed_language != language:
        failed.append(LANGUAGE)
    if is_standalone(message) and adds_previous_topic(condensed, message, previous):
        failed.append(ADDED_TOPIC)
    if failed:
        return RewriteCheck(condensed, fallback_question(message, previous), tuple(failed), message)
    return RewriteCheck(condensed, condensed)


def turn_language(message: str, history: Sequence[tuple[str, str]]) -> LanguageGuess:
    """The language of this turn: the conversation's user messages, detected in order.

    A short, ambiguous message keeps the language of the conversation's previous questions, and a
    first one defaults to English (:func:`eval._language.detect_language`). Never raises: when
    detection fails the turn is taken to be English and the failure is logged.
    """
    try:
        return conversation_language([q for q, _ in history] + [message])
    except Exception:  # noqa: BLE001 - the language is a hint; the chat goes on without it
        log.warning("language detection failed; answering in %s", DEFAULT_LANGUAGE, exc_info=True)
        return LanguageGuess(DEFAULT_LANGUAGE, "default")


def guard_rewrite(
    condensed: str, message: str, history: Sequence[tuple[str, str]], language: str
) -> RewriteCheck:
    """:func:`check_rewrite` with the rewrite's language detected here (``language`` as its fallback)."""
    if not history or condensed == message:
        return RewriteCheck(condensed, condensed)
    try:
        condensed_language: str | None = detect_language(condensed, previous=language).language
    except Exception:  # noqa: BLE001 - without a detector the language check is skipped
        condensed_language = None
    return check_rewrite(condensed, message, history, language, condensed_language)


def warm_up_language() -> None:
    """Load the language detector now (in a background thread at start-up); failures are logged."""
    try:
        warm_up()
    except Exception:  # noqa: BLE001 - the first turn will try again, and fall back to English
        log.warning("could not load the language detector", exc_info=True)
