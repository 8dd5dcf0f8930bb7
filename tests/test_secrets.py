"""Secrets never logged (issue 12): every secret configured, real turns, logs/spans/exports scanned.

Runs the scenario of ``bench/bench_secrets.py`` (``ragloop serve`` as a subprocess, a real
OpenAI-compatible server, OTLP and LangSmith bodies captured, labeling backends down, DPO and KTO
export) and requires that no secret marker appears anywhere. The scanner is checked first on a
planted leak, so a broken scan cannot pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_secrets import markers, run_scan, scan, secret_env

pytestmark = pytest.mark.slow


def test_the_scanner_finds_a_planted_secret() -> None:
    env = secret_env("T1")
    found = scan({"log": b"connecting with key arizekeyT1Marker03 ...", "ok": b"nothing"}, markers(env))
    assert found == [("log", "ARIZE_API_KEY")]
    assert markers(env)["pwT1Marker09"] == "RAGLOOP_AUTH_USERS"  # the password part, not the user name


@pytest.mark.timeout(900)
def test_no_secret_reaches_logs_spans_or_exports(tmp_path: Path) -> None:
    result = run_scan(tmp_path, turns=2, tag="T2")
    assert 200 in result["statuses"], result  # real turns were answered
    assert result["receiver_bodies"] > 0  # spans/logs/runs were captured and scanned
    assert result["found"] == [], result["found"]
