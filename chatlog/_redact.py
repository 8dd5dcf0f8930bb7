"""PII redaction for everything that leaves the process: pure functions on text and plain data.

Every exporting package (traces, LangSmith, Arize, the labeling backends, the DPO export) masks
text with :func:`redact` at its sink boundary; the chat log itself keeps the original text (it is
the source of truth, and deleting a conversation removes it). The module lives in the chat log
package because that is the leaf every other package may import (``tests/test_layers.py``).

What is masked, in this order (an earlier rule's mask is never re-matched by a later one):

* secrets: API-key shapes (``sk-...``, ``pk_...``, ``ghp_...``, ``github_pat_...``, ``glpat-...``,
  ``xox?-...``, ``AKIA...``, ``AIza...``, ``hf_...``, ``npm_...``, LangSmith ``lsv2_...``, JWTs,
  PEM private keys, long mixed-case tokens), the token after ``Bearer``/``Basic``, the value of
  ``api_key=``/``token:``/``password=``-style assignments, the password in ``scheme://user:pw@host``;
* e-mail addresses;
* card numbers: 13-19 digits (spaces or dashes allowed) that pass the Luhn check, so an order
  number of the same length stays;
* phone numbers: 7-15 digits (E.164's maximum) with optional ``+``, spaces, dots, dashes and
  parentheses; years, versions and small numbers stay.

Why regular expressions and not a library: scrubadub (last release 2023) pulls scikit-learn,
textblob and phonenumbers, Presidio needs a spaCy model (hundreds of MB) per language; both are
built for names and addresses (NER), which we do not mask, and neither knows vendor key shapes.
These rules run on the exporters' threads in microseconds per text and are pinned by known values
in ``tests/chatlog/test_redact.py``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

EMAIL_MASK = "[EMAIL]"
PHONE_MASK = "[PHONE]"
CARD_MASK = "[CARD]"
KEY_MASK = "[API_KEY]"
SECRET_MASK = "[SECRET]"

_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)", re.S)
#: ``scheme://user:password@host``: the password only.
_URL_CREDS = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]+:)[^\s@/]+(@)")
#: ``Authorization: Bearer <token>`` and the like: the token only.
_AUTH = re.compile(r"(?i)(\b(?:bearer|basic|token)\s+)[A-Za-z0-9._~+/=-]{8,}")
#: ``api_key=...``, ``"password": "..."``, ``secret: ...``: the value only.
_ASSIGN = re.compile(
    r"(?i)(\b[\w-]*(?:api[_-]?key|apikey|secret|password|passwd|token|access[_-]?key)[\w-]*[\"']?\s*[:=]\s*[\"']?)"
    r"(?!\[)[^\s\"',;}]{6,}"
)
_KEY = re.compile(
    r"\b(?:sk|pk|rk)[-_][A-Za-z0-9_-]{16,}"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bgithub_pat_[A-Za-z0-9_]{20,}"
    r"|\bglpat-[A-Za-z0-9_-]{20,}"
    r"|\bxox[abeprs]-[A-Za-z0-9-]{10,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bAIza[0-9A-Za-z_-]{35}"
    r"|\bhf_[A-Za-z0-9]{30,}"
    r"|\bnpm_[A-Za-z0-9]{36}"
    r"|\bls[v]?2?_[a-z]{2}_[A-Za-z0-9_]{20,}"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
    r"|\b(?=[A-Za-z0-9_-]*\d)(?=[A-Za-z0-9_-]*[a-z])(?=[A-Za-z0-9_-]*[A-Z])[A-Za-z0-9_-]{32,}\b"
)
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
_CARD = re.compile(r"(?<![\w.-])\d(?:[ -]?\d){12,18}(?![\w])")
_PHONE = re.compile(r"(?<![\w.-])\+?\d[\d ().-]{5,}\d(?![\w])")


def luhn_ok(digits: str) -> bool:
    """True when the digit string passes the Luhn check (every payment card number does).

    Args:
        digits: decimal digits only.
    """
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_or_keep(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return CARD_MASK if 13 <= len(digits) <= 19 and luhn_ok(digits) else match.group(0)


_DATE = re.compile(r"\d{4}-\d\d-\d\d\b")


def _phone_or_keep(match: re.Match[str]) -> str:
    if _DATE.match(match.group(0)):  # an ISO date (and time), not a phone number
        return match.group(0)
    digits = sum(ch.isdigit() for ch in match.group(0))
    return PHONE_MASK if 7 <= digits <= 15 else match.group(0)


def redact(text: str) -> str:
    """``text`` with secrets, e-mail addresses, card numbers and phone numbers masked.

    Args:
        text: any text (a question, an answer, a passage, a comment).

    Returns:
        The text with each finding replaced by ``[API_KEY]``, ``[SECRET]``, ``[EMAIL]``,
        ``[CARD]`` or ``[PHONE]``; the rest is unchanged.
    """
    if not text:
        return text
    text = _PEM.sub(SECRET_MASK, text)
    text = _URL_CREDS.sub(rf"\1{SECRET_MASK}\2", text)
    text = _KEY.sub(KEY_MASK, text)
    text = _AUTH.sub(rf"\1{KEY_MASK}", text)
    text = _ASSIGN.sub(rf"\1{SECRET_MASK}", text)
    text = _EMAIL.sub(EMAIL_MASK, text)
    text = _CARD.sub(_card_or_keep, text)
    return _PHONE.sub(_phone_or_keep, text)


def redact_tree(value: Any) -> Any:
    """``value`` with every string inside it redacted (dicts, lists, tuples; objects with ``model_dump``).

    Mapping keys are kept as they are; other values (numbers, None, booleans) pass through.
    """
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_tree(v) for v in value)
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return redact_tree(dump())
    return value


def redact_fields(record: Mapping[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """A copy of ``record`` with the text under ``fields`` redacted (ids and timestamps untouched).

    Args:
        record: a plain mapping (a labeling pair, an export row).
        fields: the keys that hold user or model text; their values may be nested.
    """
    out = dict(record)
    for key in fields:
        if key in out and out[key] is not None:
            out[key] = redact_tree(out[key])
    return out
