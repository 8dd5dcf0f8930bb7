"""Every alert and dashboard query against the series the real code emits (issue 9, fault 1).

The real chat app (chat service, web app, ``monitoring.Telemetry``) serves turns over HTTP; the
real online evaluator (``eval.OnlineEvaluator`` with its default scorers) scores them into the same
Telemetry through ``eval.telemetry_callback``; the real outbox worker delivers the evaluations it
enqueued; the drift job's real textfile renderer makes the drift series. A real Prometheus (the
Debian binary) scrapes it all with ``grafana/alerts/ragloop.rules.yml`` loaded. Then:

- every vector selector of every alert rule returns data: metric names, label names and label
  values (score names, feedback values, statuses) all exist in what the code emits;
- the low-faithfulness rule's expression is true for the low scores the evaluator gave (its
  ``for:`` is only a delay, so evaluating the expression is what decides whether it can fire);
- every query of every dashboard panel returns data.

Before the fix the low-faithfulness rule and the quality dashboard filtered on a score name
(``faithfulness``) that nothing emitted, so this test failed on both.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from chatlog import ChatLog
from chatlog.outbox import OutboxItem, OutboxWorker
from eval import OnlineEvaluator, telemetry_callback
from monitoring import Telemetry
from monitoring import semconv as sc
from monitoring._instant_llm import InstantLLM
from ragloop.process import ManagedProcess, ThreadedServer, free_port, http_ok
from tests.monitoring.conftest import telemetry_settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "grafana"
RULES = GRAFANA / "alerts" / "ragloop.rules.yml"
QUESTIONS = ("How do I copy a file?", "How do I sort a list?", "How do I delete a file?")


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


check = _load("ragloop_grafana_check_rs", GRAFANA / "validate" / "check.py")
build = _load("ragloop_grafana_build_rs", GRAFANA / "build_dashboards.py")
exposition = _load("ragloop_grafana_exposition_rs", GRAFANA / "validate" / "exposition.py")


class Vendor:
    """A vendor sink (the real Sink interface) that takes or refuses everything it is sent."""

    kinds = frozenset({"evaluation", "feedback"})

    def __init__(self, name: str, accepts: bool) -> None:
        """A sink called ``name``."""
        self.name, self.accepts = name, accepts

    def send(self, items: Sequence[OutboxItem]) -> Sequence[bool]:
        """Deliver (or refuse) each item."""
        return [self.accepts] * len(items)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Nothing to release."""


def _drift_app() -> Any:
    """What node-exporter's textfile collector serves for the drift job's last run."""
    from fastapi import FastAPI, Response

    from monitoring import drift

    app = FastAPI()
    app.get("/healthz")(lambda: {"ok": True})
    text = exposition.drift_text(drift)
    app.get("/metrics")(lambda: Response(text, media_type="text/plain"))
    return app


@contextlib.contextmanager
def _prometheus(tmp: Path, targets: dict[str, str]) -> Iterator[str]:
    """A real Prometheus scraping ``targets`` (job -> host:port) every second, with the alert rules."""
    jobs = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: ['{host}']\n"
        for job, host in targets.items()
    )
    config = tmp / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{RULES}']\nscrape_configs:\n{jobs}"
    )
    port = free_port()
    argv = [
        "prometheus",
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    proc = ManagedProcess("prometheus", argv, tmp / "prometheus.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        proc.wait_ready(lambda: http_ok(f"{url}/-/ready"), timeout=60)
        yield url
    finally:
        proc.stop()


def _query(prom: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10).json()
    assert body["status"] == "success", (expr, body)
    return list(body["data"]["result"])


def _wait(prom: str, expr: str, timeout: float = 60.0) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        result = _query(prom, expr)
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.5)


def _scrapes(prom: str, n: int = 2, timeout: float = 60.0) -> None:
    """Wait until Prometheus has scraped every target ``n`` more times after this call.

    Counted in Prometheus's own ``up`` samples, not guessed from the 1 s interval: a Prometheus
    starved on a busy machine scrapes late. One more than ``n`` is waited for, as a scrape that was
    already under way when this was called holds none of what happened just before.
    """

    def done() -> float:
        result = _query(prom, "min(count_over_time(up[1h]))")
        return float(result[0]["value"][1]) if result else 0.0

    target = done() + n + 1
    deadline = time.monotonic() + timeout
    while done() < target:
        assert time.monotonic() < deadline, f"Prometheus did not scrape every target {n} more times"
        time.sleep(0.2)


def _without_data(prom: str, exprs: Sequence[str], timeout: float = 60.0) -> list[str]:
    """The expressions that still return no data once ``timeout`` has passed (polled, 0.5 s apart).

    A series appears at the first scrape after the code emitted it, and a ``rate()`` needs two:
    on a busy machine that is later than the fixed waits above.
    """
    deadline = time.monotonic() + timeout
    empty = list(exprs)
    while True:
        empty = [e for e in empty if not _query(prom, e)]
        if not empty or time.monotonic() > deadline:
            return empty
        time.sleep(0.5)


def _selectors(expr: str) -> list[str]:
    """Every vector selector of a PromQL expression (``name{matchers}`` or a bare name)."""
    text = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    text = re.sub(r"\boffset\s+\w+", "", text)
    found = [f"{m}{{{body}}}" for m, body in re.findall(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", text)]
    bare = re.sub(r"[a-zA-Z_:][\w:]*\{[^}]*\}", " ", text)
    found += sorted(check.metric_names(bare))
    return found


def _chat(base: str, message: str, stream: bool = False) -> httpx.Response:
    if not stream:
        return httpx.post(f"{base}/api/chat", json={"message": message}, timeout=60)
    with httpx.stream("POST", f"{base}/api/chat", json={"message": message, "stream": True}, timeout=60) as r:
        for _ in r.iter_lines():
            pass
        return r


def test_every_alert_and_dashboard_query_sees_the_series_the_code_emits(
    indexed_dir: Path, shared_retriever: Any, app_with: Any, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'chat.db'}"
    with contextlib.ExitStack() as llm_stack:
        llm = llm_stack.enter_context(InstantLLM())
        settings = telemetry_settings(
            indexed_dir,
            openai_base_url=llm.base_url,
            database_url=db,
            prices="*=0.15:0.6",
            judge_sample_rate=0.0,
            llm_timeout_s=5.0,
            # An OTLP endpoint nobody listens on: export errors are counted, turns go on.
            otlp_endpoint=f"http://127.0.0.1:{free_port()}",
        )
        tel = Telemetry(settings, prompt_version="test")
        log = ChatLog(db)
        log.set_routes({"evaluation": ["vendor-ok", "vendor-refuses"]})
        tel.observe_outbox(log.engine)
        evaluator = OnlineEvaluator(settings, log, callbacks=[telemetry_callback(tel)], batch_size=2)
        outbox = OutboxWorker(
            log.engine, [Vendor("vendor-ok", True), Vendor("vendor-refuses", False)], max_attempts=1
        )
        try:
            with (
                app_with(settings, tel, shared_retriever) as base,
                ThreadedServer(_drift_app(), "/healthz", name="drift-textfile") as drift_server,
                _prometheus(
                    tmp_path,
                    {
                        "ragloop": base.removeprefix("http://"),
                        "drift": drift_server.base.removeprefix("http://"),
                    },
                ) as prom,
            ):
                assert _wait(prom, "count(up == 1) == 2"), "Prometheus does not scrape both targets"
                ids = []
                for i, q in enumerate(QUESTIONS):
                    resp = _chat(base, q)
                    assert resp.status_code == 200, resp.text
                    ids.append(resp.json()["turn_id"])
                    if i == 0:
                        _scrapes(prom, 1)  # counters seen before they grow, so rate() has an increase
                assert _chat(base, "How do I copy a file?", stream=True).status_code == 200
                # Nothing in the corpus is about this: a no_context turn.
                off_topic = _chat(base, "Which team won the 1954 football world cup final in Bern?")
                assert off_topic.status_code == 200 and off_topic.json()["status"] == "no_context"
                for turn_id, value in zip(ids, (1, -1, 1), strict=True):
                    fb = httpx.post(f"{base}/api/feedback", json={"turn_id": turn_id, "value": value})
                    assert fb.status_code == 201, fb.text
                # The third rater changes their mind: a rating retracted, one given.
                fb = httpx.post(f"{base}/api/feedback", json={"turn_id": ids[2], "value": -1})
                assert fb.status_code == 201, fb.text
                assert httpx.get(f"{base}/nope-{time.time_ns()}").status_code == 404
                assert httpx.post(f"{base}/api/chat", json={"message": ""}).status_code == 422
                # The real evaluator scores the turns in two passes, a scrape between them.
                assert evaluator.run_once() == 2
                _scrapes(prom, 2)
                assert evaluator.run_once() == 2
                tel.set_gauge("eval.faithfulness_local.mean", 0.4)
                outbox.deliver_once()  # one sink takes them, the other refuses: dead letters
                # The LLM goes away: the next turn answers 503 (llm_unavailable).
                llm_stack.close()
                down = _chat(base, "How do I sort a list?")
                assert down.status_code in (502, 503, 504), down.text
                _scrapes(prom, 3)

                low = _wait(
                    prom,
                    f'{sc.PROM_SCORE}_count{{{sc.PROM_LABEL_SCORE_NAME}="{sc.SCORE_FAITHFULNESS_LOCAL}"}}',
                )
                assert low, "the evaluator's faithfulness score is not in Prometheus"
                selectors = {
                    f"count({selector})": f"{alert}: {selector}"
                    for alert, expr in check.alert_rules(RULES)
                    for selector in _selectors(expr)
                }
                missing = [selectors[e] for e in _without_data(prom, list(selectors))]
                assert missing == [], "alert selectors without data"

                (faith_expr,) = [e for a, e in check.alert_rules(RULES) if a == "RagloopLowFaithfulnessShare"]
                scores = _query(prom, f"{sc.PROM_SCORE}_sum / {sc.PROM_SCORE}_count")
                fired = _wait(prom, faith_expr)
                assert fired, ("the low-faithfulness alert cannot fire on these scores", scores)
                pending = _wait(prom, 'ALERTS{alertname="RagloopLowFaithfulnessShare"}')
                assert pending and pending[0]["metric"]["alertstate"] in ("pending", "firing")

                panels = {
                    expr: f"{name} / {title}: {expr}"
                    for name, build_dashboard in build.DASHBOARDS.items()
                    for title, expr in check.expressions(build_dashboard())
                }
                empty = [panels[e] for e in _without_data(prom, list(panels))]
                assert empty == [], "dashboard queries without data"
        finally:
            tel.shutdown()
            log.close()
