"""What the labeling backends push is redacted (pure mapping; the servers' copies: test_argilla/test_labelstudio)."""

from __future__ import annotations

import json

from labeling._backend import outgoing_pair
from labeling.argilla import record_payload
from labeling.labelstudio import prediction, task_data
from tests.pii import ORDER_NUMBER, PII_TEXT, leaked

from .conftest import make_pair


def _pii_pair() -> dict:
    pair = make_pair(7, question=PII_TEXT, response_a=f"A {PII_TEXT}", response_b=f"B {PII_TEXT}")
    pair["context"] = [PII_TEXT, {"text": PII_TEXT, "source": "faq.md"}]
    pair["judge"] = {**pair["judge"], "reasoning": f"A quotes {PII_TEXT}"}
    return pair


def test_argilla_and_label_studio_payloads_are_redacted_and_keep_ids() -> None:
    pair = _pii_pair()
    out = outgoing_pair(pair)
    for payload in (record_payload(out), {"data": task_data(out), "pred": prediction(out)}):
        text = json.dumps(payload)
        assert leaked(text) == [] and ORDER_NUMBER in text and "[CARD]" in text
    assert record_payload(out)["id"] == "turn-00007" and task_data(out)["pair_id"] == "turn-00007"
    assert pair["question"] == PII_TEXT  # the caller's pair (the chat log's row) is not changed


def test_redaction_off_pushes_the_text_as_it_is() -> None:
    pair = _pii_pair()
    assert outgoing_pair(pair, redaction=False) is pair
    assert leaked(json.dumps(record_payload(pair)))  # what the backends sent before redaction
