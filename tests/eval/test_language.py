"""Language detection (eval/_language.py) on small cases: the real lingua detector, known answers."""

from __future__ import annotations

import pytest

from eval._language import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    conversation_language,
    detect_language,
    language_name,
    prose,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Wie kopiere ich eine Datei in Python?", "de"),
        ("Und wie sortiere ich sie dann?", "de"),
        ("Comment convertir une chaîne en nombre ?", "fr"),
        ("¿Cómo copio un archivo?", "es"),
        ("¿Por qué se llama Python?", "es"),  # lingua alone leans elsewhere: the inverted mark decides
        ("Why doesn't list.sort() return the sorted list?", "en"),
        ("How do I remove duplicates from a list?", "en"),
    ],
)
def test_a_question_in_each_language(text: str, expected: str) -> None:
    guess = detect_language(text)
    assert guess.language == expected and guess.source == "detected"


def test_code_says_nothing_about_the_language() -> None:
    assert prose("Why doesn't list.sort() return the `sorted` list?") == "Why doesn't return the list?"
    assert prose("See https://docs.python.org/3/ and os.path.join, __init__, utf-8.") == "See and"
    # Nothing but code and a short word: too few letters, so the conversation's language holds.
    assert detect_language("`sorted(d.items())`?", previous="fr").language == "fr"


@pytest.mark.parametrize("short", ["ok", "danke", "lambda?", "und Listen?", "y?"])
def test_a_short_message_is_ambiguous(short: str) -> None:
    first = detect_language(short)
    assert (first.language, first.source) == (DEFAULT_LANGUAGE, "default")
    later = detect_language(short, previous="de")
    assert (later.language, later.source) == ("de", "previous")


def test_a_conversation_keeps_its_language_through_an_ambiguous_follow_up() -> None:
    # lingua alone calls "und Dictionaries?" English (0.46): not enough to take over from German.
    assert detect_language("und Dictionaries?").language != "de"
    guess = conversation_language(["Wie sind Listen in CPython implementiert?", "und Dictionaries?"])
    assert (guess.language, guess.source, guess.detected) == ("de", "previous", "en")
    # A clear message in another language does take over.
    switched = conversation_language(
        ["Wie kopiere ich eine Datei?", "How do I remove duplicates from a list in Python?"]
    )
    assert switched.language == "en"
    assert conversation_language([]).language == DEFAULT_LANGUAGE


def test_names_and_the_language_set() -> None:
    assert language_name("de") == "German" and language_name(None) == "English"
    assert language_name("xx") == "xx"
    assert {"en", "de", "fr", "es"} <= set(LANGUAGES)
