"""Property-based tests of PII redaction (hypothesis): nothing found survives, nothing else changes.

Through the public path every sink uses (``chatlog.redact``).
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from chatlog import redact

FAST = settings(max_examples=200, deadline=None)
_WORD = st.text(alphabet=st.sampled_from("abcdefghij"), min_size=1, max_size=8)
_WORDS = st.lists(_WORD, max_size=6).map(" ".join)


def _luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


@st.composite
def cards(draw: st.DrawFn) -> str:
    body = draw(st.sampled_from("3456")) + draw(st.text(alphabet="0123456789", min_size=14, max_size=14))
    digits = body + _luhn_digit(body)
    sep = draw(st.sampled_from(["", " ", "-"]))
    return sep.join(digits[i : i + 4] for i in range(0, 16, 4))


_EMAILS = st.builds(
    "{}.{}@{}.{}".format, _WORD, _WORD, _WORD, st.sampled_from(["com", "org", "de", "example"])
)
_PHONES = st.builds(
    "{} {} {}".format,
    st.sampled_from(["+49", "+1", "+44", "030", "(555)"]),
    st.text(alphabet="0123456789", min_size=3, max_size=4),
    st.text(alphabet="0123456789", min_size=4, max_size=4),
)
_KEYS = st.one_of(
    st.builds("sk-{}".format, st.text(alphabet="abcdefABCDEF0123456789", min_size=20, max_size=40)),
    st.builds("ghp_{}".format, st.text(alphabet="abcdefABCDEF0123456789", min_size=36, max_size=36)),
    st.builds("AKIA{}".format, st.text(alphabet="ABCDEFGHIJ0123456789", min_size=16, max_size=16)),
)
_PII = st.one_of(cards(), _EMAILS, _PHONES, _KEYS)


@FAST
@given(before=_WORDS, pii=_PII, after=_WORDS)
@example(before="pay with", pii="4111 1111 1111 1111", after="today")
def test_no_found_value_survives_and_the_words_around_it_stay(before: str, pii: str, after: str) -> None:
    out = redact(f"{before} {pii} {after}")
    assert pii not in out
    assert out.startswith(before) and out.endswith(after)
    assert re.search(r"\[(EMAIL|PHONE|CARD|API_KEY|SECRET)\]", out)


@FAST
@given(parts=st.lists(st.one_of(_WORD, _PII), max_size=8))
def test_redaction_is_idempotent(parts: list[str]) -> None:
    once = redact(" ".join(parts))
    assert redact(once) == once


@FAST
@given(
    parts=st.lists(
        st.tuples(
            _WORD,
            st.one_of(
                _WORD,
                st.integers(0, 99_999).map(str),  # small numbers: counts, ports, years
                st.builds("{}.{}.{}".format, st.integers(0, 20), st.integers(0, 20), st.integers(0, 99)),
                st.dates().map(lambda d: d.isoformat()),
            ),
        ),
        max_size=6,
    )
)
def test_text_without_pii_is_unchanged(parts: list[tuple[str, str]]) -> None:
    # Numbers stand between words: two numbers side by side ("555 1234") read as a phone number.
    text = " ".join(f"{w} {x}" for w, x in parts)
    assert redact(text) == text


@FAST
@given(body=st.text(alphabet="0123456789", min_size=16, max_size=19))
def test_a_long_number_failing_the_luhn_check_is_not_a_card(body: str) -> None:
    digits = body[:-1] + str((int(_luhn_digit(body[:-1])) + 1) % 10)  # a wrong check digit
    assert redact(f"order {digits} shipped") == f"order {digits} shipped"
