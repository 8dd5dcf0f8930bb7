"""Feedback counters count raters, not clicks (fault 3); unknown token counts are not zero (fault 7).

The real Telemetry's metrics, read from its Prometheus exposition.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from monitoring import Telemetry
from monitoring import semconv as sc
from tests.monitoring.conftest import telemetry_settings


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = tuple(sorted((k, v) for k, v in s.labels.items() if not k.startswith("otel_scope")))
            out[(s.name, labels)] = s.value
    return out


def test_feedback_counts_raters_and_unknown_tokens_have_no_cost(tmp_path: Path) -> None:
    tel = Telemetry(telemetry_settings(tmp_path, prices="*=1:2", llm_model="m"), prompt_version="t")
    try:
        turn = {"turn_id": "t1", "conversation_id": "c"}
        tel.on_feedback(turn, 1, None)  # rater A: up
        tel.on_feedback(turn, 1, "great", previous_value=1)  # A adds a comment: no new rating
        tel.on_feedback(turn, 1, None, previous_value=1)  # A clicks up again: no new rating
        tel.on_feedback(turn, -1, None, previous_value=1)  # A changes to down
        tel.on_feedback(turn, -1, "bad")  # rater B: down, with a comment
        for tokens in ((10, None), (None, None), (1_000_000, 1_000_000)):
            record = {"turn_id": "t", "status": "ok", "total_ms": 50.0, "model": "m"}
            tel.on_turn_end({**record, "input_tokens": tokens[0], "output_tokens": tokens[1]})
        s = _samples(tel.metrics.prometheus_text().decode())
    finally:
        tel.shutdown()
    v = sc.PROM_LABEL_FEEDBACK_VALUE
    assert s[(sc.PROM_FEEDBACK, ((v, "up"),))] == 1
    assert s[(sc.PROM_FEEDBACK, ((v, "down"),))] == 2
    assert s[(sc.PROM_FEEDBACK_RETRACTED, ((v, "up"),))] == 1
    assert s[(sc.PROM_FEEDBACK_RETRACTED, ((v, "down"),))] == 0
    # Cost only for the turn whose tokens are known: 1M input at $1 + 1M output at $2.
    cost = [value for (name, _), value in s.items() if name == sc.PROM_COST]
    assert cost == [3.0]
    # Token histograms count known values only (two inputs, one output), never a None as 0.
    counts = {
        dict(labels)[sc.PROM_LABEL_TOKEN_TYPE]: value
        for (name, labels), value in s.items()
        if name == f"{sc.PROM_TOKEN_USAGE}_count"
    }
    assert counts == {"input": 2, "output": 1}
