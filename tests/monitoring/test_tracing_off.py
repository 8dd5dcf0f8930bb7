"""Tracing off is silent: turns with ``OTEL_SDK_DISABLED=true`` log no warning (issue 9, fault 13).

Each variant runs in its own process: the OpenTelemetry SDK reads ``OTEL_SDK_DISABLED`` when the
global tracer provider is built, once per process. The child serves the real app (telemetry from
``monitoring.setup_telemetry``) over HTTP against the zero-latency LLM, runs streamed and plain
turns and feedback, and prints every log record at WARNING or above that it saw.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

CHILD = r"""
import json, logging, sys
from pathlib import Path

import httpx

seen = []


class Keep(logging.Handler):
    def emit(self, record):
        seen.append(f"{record.levelname} {record.name}: {record.getMessage()}")


root = logging.getLogger()
root.addHandler(Keep(level=logging.WARNING))
root.setLevel(logging.INFO)

import monitoring
from retrieval import Retriever
from tests.monitoring.conftest import serve_app, telemetry_settings

data_dir, llm, db = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
settings = telemetry_settings(data_dir, openai_base_url=llm, database_url=db)
observer = monitoring.setup_telemetry(settings, prompt_version="test")
with serve_app(settings, observer, Retriever(settings)) as base:
    ids = []
    for i, message in enumerate(("How do I copy a file?", "How do I sort a list?")):
        resp = httpx.post(f"{base}/api/chat", json={"message": message, "stream": False}, timeout=60)
        assert resp.status_code == 200, resp.text
        ids.append(resp.json()["turn_id"])
    with httpx.stream("POST", f"{base}/api/chat", json={"message": "How do I delete a file?", "stream": True}, timeout=60) as resp:
        assert resp.status_code == 200
        for _ in resp.iter_lines():
            pass
    fb = httpx.post(f"{base}/api/feedback", json={"turn_id": ids[0], "value": 1, "comment": "ok"})
    assert fb.status_code == 201, fb.text
    assert httpx.get(f"{base}/metrics").status_code in (200, 404)
observer.shutdown()
print("SEEN=" + json.dumps(seen))
"""


@pytest.mark.parametrize("telemetry", ["true", "false"])
def test_turns_with_the_sdk_disabled_log_no_warning(
    telemetry: str, instant_llm: str, indexed_dir: Path, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "OTEL_SDK_DISABLED": "true",
        "RAGLOOP_TELEMETRY": telemetry,
        "PYTHONPATH": str(ROOT),
        "HF_HUB_OFFLINE": "1",
    }
    db = f"sqlite:///{tmp_path / 'c.db'}"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(indexed_dir), instant_llm, db],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("SEEN=")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    warnings_seen = json.loads(line[-1].removeprefix("SEEN="))
    assert warnings_seen == [], warnings_seen
