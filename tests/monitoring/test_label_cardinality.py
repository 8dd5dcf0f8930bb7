"""Metric labels are bounded: random paths, query strings, ids and methods add no series (fault 10).

The real app, instrumented by the real Telemetry, is served over HTTP; the request mix is the one
``bench/bench_seams_metrics.py`` records. On the code before the fix every random 404 path became
an ``http_route`` value of its own (16 series each).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from bench.bench_seams_metrics import measure, series
from monitoring import Telemetry
from tests.monitoring.conftest import telemetry_settings


def test_random_requests_add_no_metric_series(
    instant_llm: str, indexed_dir: Path, shared_retriever: Any, app_with: Any, tmp_path: Path
) -> None:
    settings = telemetry_settings(
        indexed_dir, openai_base_url=instant_llm, database_url=f"sqlite:///{tmp_path / 'c.db'}"
    )
    tel = Telemetry(settings)
    try:
        with app_with(settings, tel, shared_retriever) as base:
            result = measure(base, 100, seed=1)
            text = httpx.get(f"{base}/metrics").text
    finally:
        tel.shutdown()
    assert result["statuses"].get(404, 0) > 20, result["statuses"]
    assert result["growth"] <= 20, result["new_series_sample"]
    # No label value carries a random token of the requests (hex of 8+ characters).
    # (target_info holds the resource: service.instance.id is a per-process uuid, not from a request.)
    values = {
        v for s in series(text) if not s.startswith("target_info") for v in re.findall(r'="([^"]*)"', s)
    }
    assert not [v for v in values if re.search(r"[0-9a-f]{8}", v)], sorted(values)
    routes = {v for s in series(text) for v in re.findall(r'http_route="([^"]*)"', s)}
    assert "unmatched" in routes and all(r.startswith("/") or r == "unmatched" for r in routes), routes
