"""Redaction rules on small inputs: what is masked, and what must stay (chatlog._redact)."""

from __future__ import annotations

import pytest

from chatlog import redact, redact_tree
from chatlog._redact import luhn_ok, redact_fields
from tests.pii import KEPT, PII_TEXT, leaked


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to ann.lee+x@example.co.uk today", "write to [EMAIL] today"),
        ("call +1 (555) 123-4567 or 030 1234567", "call [PHONE] or [PHONE]"),
        ("card 4111 1111 1111 1111 ok", "card [CARD] ok"),
        ("card 5500-0055-5555-5559.", "card [CARD]."),
        ("amex 378282246310005", "amex [CARD]"),
        ("order 1234 5678 9012 3456 shipped", "order 1234 5678 9012 3456 shipped"),  # fails Luhn
        ("key sk-proj-abcdefghijklmnop1234", "key [API_KEY]"),
        ("anthropic sk-ant-api03-abcdefghijklmnopqrstu", "anthropic [API_KEY]"),
        ("aws AKIAABCDEFGHIJKLMNOP here", "aws [API_KEY] here"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123", "token [API_KEY]"),
        ("pat github_pat_11ABCDEFG0123456789_abcdefghij", "pat [API_KEY]"),
        ("slack xoxb-1234567890-abcdefghij", "slack [API_KEY]"),
        ("google AIzaSyA1234567890abcdefghijklmnopqrstuv", "google [API_KEY]"),
        ("hf hf_abcdefghijklmnopqrstuvwxyzABCDEF", "hf [API_KEY]"),
        ("Authorization: Bearer Zx9Qw8Er7Ty6Ui5Op4", "Authorization: Bearer [API_KEY]"),
        ("bearer Zx9Qw8Er7Ty6Ui5Op4As3Df2Gh1Jk0LmNb", "bearer [API_KEY]"),
        ("jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.abcdefghijklmno", "jwt [API_KEY]"),
        ("api_key=hunter2hunter2 next", "api_key=[SECRET] next"),
        ('{"password": "s3cr3t-pw"}', '{"password": "[SECRET]"}'),
        ("db postgresql://app:pa55word@db.local:5432/x", "db postgresql://app:[SECRET]@db.local:5432/x"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----", "[SECRET]"),
        # Left alone: years, short numbers, hex ids, uuids, versions, timestamps, plain prose.
        ("in 2024, use 3 items", "in 2024, use 3 items"),
        ("chunk f629a40ab2754df5a8931c515bbd5125", "chunk f629a40ab2754df5a8931c515bbd5125"),
        ("python 3.11.7 and shutil.copy(src, dst)", "python 3.11.7 and shutil.copy(src, dst)"),
        ("the token limit is 4096", "the token limit is 4096"),
        ("turn 550e8400-e29b-41d4-a716-446655440000", "turn 550e8400-e29b-41d4-a716-446655440000"),
        ("at 2026-11-30 09:37:51 UTC", "at 2026-11-30 09:37:51 UTC"),
        ("", ""),
    ],
)
def test_redact_known_values(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_luhn_known_values() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("1234567890123456") and not luhn_ok("79927398710")


def test_the_sink_sample_is_fully_masked_and_keeps_the_rest() -> None:
    out = redact(PII_TEXT)
    assert leaked(out) == []
    assert all(k in out for k in KEPT)
    assert all(mask in out for mask in ("[EMAIL]", "[PHONE]", "[CARD]", "[API_KEY]"))


def test_redact_tree_and_fields_keep_ids_and_structure() -> None:
    tree = {"a": ["mail ann@example.com", 3, None], "b": ("x", {"c": "call +44 20 7946 0958"})}
    assert redact_tree(tree) == {"a": ["mail [EMAIL]", 3, None], "b": ("x", {"c": "call [PHONE]"})}
    pair = {"pair_id": "550e8400-e29b-41d4-a716-446655440000", "question": "ann@example.com?", "n": 1}
    out = redact_fields(pair, ("question", "missing"))
    assert out == {"pair_id": pair["pair_id"], "question": "[EMAIL]?", "n": 1}
    assert pair["question"] == "ann@example.com?"  # the input is not changed
