"""Text files in the encodings people save them in are decoded to the same text (issue 12, non-UTF-8).

The exact case from the issue (a Windows-1252 euro sign) is in ``test_malicious_docs.py``; here the
other Windows and ISO code pages and the UTF-16/32 files Windows editors write ("Unicode" in
Notepad is UTF-16 LE with a BOM), plus a property: any text survives UTF-8 and UTF-16 round trips.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from retrieval import LoadError
from retrieval._loaders import decode_text

FRENCH = "# Tarifs\n\nLe café coûte 2 € et le thé 3 € – « voilà » : l'abonnement annuel revient à 120 €.\n"
GERMAN = "# Grüße\n\nDie Straße in Köln ist schön; Übung macht den Meister, sagt man „oft“ — na ja.\n"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (FRENCH, "cp1252"),  # the euro sign is 0x80 here, U+0080 under a Latin-1 fallback
        (GERMAN, "cp1252"),  # curly quotes and dashes are 0x84/0x93/0x97
        ("# Café\n\nLe café est très bon, à la française, où l'on mange des crêpes.\n", "latin-1"),
        (FRENCH, "utf-16"),  # with a BOM: Notepad's "Unicode"
        (GERMAN, "utf-16-be"),
        (FRENCH, "utf-32"),
        (FRENCH, "utf-8-sig"),
    ],
)
def test_each_encoding_decodes_to_the_same_text(text: str, encoding: str) -> None:
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data  # a BOM, as editors write it
    decoded = decode_text(data)
    assert decoded == text
    assert "\x80" not in decoded and "\ufeff" not in decoded


def test_utf16_without_a_bom_is_read_too() -> None:
    assert decode_text(GERMAN.encode("utf-16-le")) == GERMAN
    assert decode_text(FRENCH.encode("utf-16-be")) == FRENCH


def test_binary_with_nul_bytes_is_still_refused() -> None:
    with pytest.raises(LoadError, match="binary"):
        decode_text(bytes(range(256)) * 8)


_TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Co", "Cn"), blacklist_characters="\ufeff"),
    min_size=1,
    max_size=200,
).map(lambda t: f"# Notes\n\n{t}\n")


@settings(max_examples=100, deadline=None)
@given(text=_TEXT, encoding=st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]))
@example(text=f"# Notes\n\n{FRENCH}\n", encoding="utf-16")
def test_any_text_survives_a_unicode_round_trip(text: str, encoding: str) -> None:
    assert decode_text(text.encode(encoding)) == text
