"""One text with every kind of PII and secret the exporters must mask, for the sink tests.

``PII_TEXT`` goes into a turn (question, comment, answer); each sink's captured payload must hold
none of ``PII_VALUES`` but still the harmless parts (``KEPT``): the order number (16 digits that
fail the Luhn check) and the prose around the findings.
"""

from __future__ import annotations

PII_VALUES = (
    "ann.lee@example.org",  # e-mail
    "+1 (555) 123-4567",  # phone
    "4111 1111 1111 1111",  # Visa test card (passes Luhn)
    "sk-proj-Ab3dEf6hIj9kLmNoPq",  # OpenAI-style key
    "ghp_abcdefghijklmnopqrstuvwxyz0123",  # GitHub token
    "AKIAIOSFODNN7EXAMPLE",  # AWS access key id
    "xoxb-1234567890-abcdefghij",  # Slack token
    "Zx9Qw8Er7Ty6Ui5Op4",  # a Bearer token
)
ORDER_NUMBER = "1234 5678 9012 3456"  # 16 digits, fails Luhn: not a card
PII_TEXT = (
    f"Reply to {PII_VALUES[0]} or call {PII_VALUES[1]}; card {PII_VALUES[2]}, order {ORDER_NUMBER}; "
    f"keys {PII_VALUES[3]} {PII_VALUES[4]} {PII_VALUES[5]} {PII_VALUES[6]}, "
    f"Authorization: Bearer {PII_VALUES[7]}. How do I copy a file?"
)
KEPT = ("Reply to", "copy a file", ORDER_NUMBER)


def leaked(payload: str) -> list[str]:
    """The PII values found in ``payload`` (a captured request body, a file's text): empty when clean."""
    return [v for v in PII_VALUES if v in payload]
