"""A real Prometheus (Debian binary) scrapes the app's ``/metrics``; PromQL returns the expected series."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from monitoring import Telemetry
from ragloop.process import ManagedProcess, free_port, http_ok
from tests.monitoring.conftest import telemetry_settings

pytestmark = pytest.mark.slow


@pytest.fixture()
def prometheus(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A Prometheus server; yields its URL and its config file (scrape targets are written later)."""
    exe = shutil.which("prometheus")
    if exe is None:
        raise RuntimeError("Prometheus is missing: run `make system-deps` (Debian package prometheus)")
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1s\nscrape_configs: []\n")
    argv = [
        exe,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
    ]
    proc = ManagedProcess("prometheus", argv, tmp_path / "prometheus.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_ready(lambda: http_ok(f"{url}/-/ready"), timeout=60)
        yield url, config
    finally:
        proc.stop()


def _scrape(prom: str, config: Path, target: str) -> None:
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        f"scrape_configs:\n  - job_name: ragloop\n    static_configs:\n      - targets: ['{target}']\n"
    )
    assert httpx.post(f"{prom}/-/reload", timeout=10).status_code == 200


def _query(
    prom: str,
    promql: str,
    timeout: float = 30.0,
    positive: bool = False,
    until: Callable[[list[dict[str, Any]]], bool] | None = None,
) -> list[dict[str, Any]]:
    """Poll an instant query until it returns a non-empty vector (with a value > 0 if ``positive``).

    ``until`` waits for a later scrape too: a scrape can land between two increments of one burst
    (the feedback posts), so the first non-empty answer may not hold every series yet.
    """
    deadline = time.monotonic() + timeout
    while True:
        body = httpx.get(f"{prom}/api/v1/query", params={"query": promql}, timeout=10).json()
        assert body["status"] == "success", body
        result = list(body["data"]["result"])
        ok = bool(result) and (not positive or float(result[0]["value"][1]) > 0)
        ok = ok and (until is None or until(result))
        if ok or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


#: Chat requests that Prometheus has scraped (every status).
CHAT_COUNT = 'sum(http_server_request_duration_seconds_count{http_route="/api/chat"})'


def _value_is(expected: float) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda result: float(result[0]["value"][1]) == expected


def test_promql_sees_turns_tokens_latency_and_feedback(
    prometheus: tuple[str, Path],
    instant_llm: str,
    indexed_dir: Path,
    shared_retriever: Any,
    app_with: Any,
    tmp_path: Path,
) -> None:
    prom, config = prometheus
    settings = telemetry_settings(
        indexed_dir, openai_base_url=instant_llm, database_url=f"sqlite:///{tmp_path / 'c.db'}"
    )
    tel = Telemetry(settings)
    with app_with(settings, tel, shared_retriever) as base:
        _scrape(prom, config, base.removeprefix("http://"))
        assert _query(prom, 'up{job="ragloop"} == 1')  # scraping before the first turn
        turn_ids = []
        for n, q in enumerate(
            ("How do I copy a file?", "How do I sort a list?", "How do I delete a file?"), 1
        ):
            resp = httpx.post(f"{base}/api/chat", json={"message": q}, timeout=60)
            assert resp.status_code == 200, resp.text
            turn_ids.append(resp.json()["turn_id"])
            # A scrape between turns, so rate() sees the counter grow: wait until Prometheus holds
            # this turn (a fixed sleep was no scrape at all when Prometheus lagged on a busy machine).
            scraped = _query(prom, CHAT_COUNT, timeout=60, until=_value_is(n))
            assert scraped and float(scraped[0]["value"][1]) == n, scraped
        assert httpx.post(f"{base}/api/chat", json={"message": ""}).status_code == 422
        for turn_id, value in zip(turn_ids, ("up", "up", "down"), strict=True):
            fb = httpx.post(f"{base}/api/feedback", json={"turn_id": turn_id, "value": value})
            assert fb.status_code == 201
        tel.set_gauge("drift.share", 0.25, {"window": "1h"})
        text = httpx.get(f"{base}/metrics").text
        assert "ragloop_turn_duration_seconds_bucket" in text

        rate = _query(
            prom,
            'sum by (http_route) (rate(http_server_request_duration_seconds_count{http_route="/api/chat"}[1m]))',
            positive=True,
        )
        assert rate and float(rate[0]["value"][1]) > 0
        rejected = _query(
            prom,
            'sum(http_server_request_duration_seconds_count{http_response_status_code="422"})',
            until=_value_is(1),
        )
        assert float(rejected[0]["value"][1]) == 1
        p50 = _query(prom, "histogram_quantile(0.5, sum by (le) (ragloop_turn_duration_seconds_bucket))")
        assert 0 < float(p50[0]["value"][1]) < 60
        ttft = _query(prom, "sum(ragloop_turn_time_to_first_token_seconds_count)", until=_value_is(3))
        assert float(ttft[0]["value"][1]) == 3
        tokens = _query(prom, "sum by (gen_ai_token_type) (gen_ai_client_token_usage_sum)")
        by_type = {r["metric"]["gen_ai_token_type"]: float(r["value"][1]) for r in tokens}
        assert by_type["output"] > 0 and by_type["input"] > by_type["output"]
        # Both values exist from the start (at 0): wait until a scrape holds all three ratings.
        feedback = _query(
            prom,
            "sum by (value) (ragloop_feedback_total)",
            until=lambda r: sum(float(x["value"][1]) for x in r) == 3,
        )
        assert {r["metric"]["value"]: float(r["value"][1]) for r in feedback} == {"up": 2, "down": 1}
        top = _query(prom, "sum(ragloop_retrieval_top_score_count)", until=_value_is(3))
        assert float(top[0]["value"][1]) == 3
        gauge = _query(prom, 'ragloop_job_value{ragloop_gauge_name="drift.share"}')
        assert float(gauge[0]["value"][1]) == 0.25 and gauge[0]["metric"]["window"] == "1h"
