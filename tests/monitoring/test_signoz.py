"""SigNoz as a deployment target, validated offline (issue 12): compose profile, disk-buffered
collector configuration, the v5 dashboard and alert rules, and the names they query.

SigNoz itself cannot run here (no docker engine). What runs: ``docker-compose config`` on the
profile; structural checks of the collector configurations; the generated dashboard and rules
against their committed files; and every metric, span name and attribute that a dashboard or rule
query references, against what a real turn sends through a real collector (rotel) to a real OTLP
receiver (the OTLP gRPC services SigNoz's collector also implements).
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
import yaml

from monitoring import semconv as sc
from ragloop.process import ManagedProcess, free_port, port_open
from tests.monitoring.otlp_receiver import Captured, OtlpReceiver

ROOT = Path(__file__).resolve().parents[2]
SIGNOZ = ROOT / "deploy" / "signoz"
COLLECTOR = ROOT / "deploy" / "otel-collector"
#: The images of SigNoz's last published docker compose (deploy/docker/docker-compose.yaml in
#: SigNoz/signoz; docs/signoz.md), and the compose service of ours that runs each.
PINNED = {
    "signoz-clickhouse": "clickhouse/clickhouse-server:25.5.6",
    "signoz-init-clickhouse": "clickhouse/clickhouse-server:25.5.6",
    "signoz-zookeeper": "signoz/zookeeper:3.7.1",
    "signoz": "signoz/signoz:v0.119.0",
    "signoz-otel-collector": "signoz/signoz-otel-collector:v0.144.2",
    "signoz-telemetrystore-migrator": "signoz/signoz-otel-collector:v0.144.2",
}
#: Span fields SigNoz has on every span (not attributes the app must emit).
INTRINSIC = {"name", "duration_nano", "has_error", "kind_string"}


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


build = _load("ragloop_signoz_build", SIGNOZ / "build.py")


def _compose(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is missing: run `make system-deps` (Debian package docker-compose)")
    return subprocess.run(
        [exe, "-f", str(ROOT / "docker-compose.yml"), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


# --- compose and collector ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def signoz_config() -> dict[str, Any]:
    proc = _compose("--profile", "signoz", "config")
    assert proc.returncode == 0, proc.stderr
    return dict(yaml.safe_load(proc.stdout))


def test_the_signoz_profile_has_the_pinned_services(signoz_config: dict[str, Any]) -> None:
    services = signoz_config["services"]
    for name, image in PINNED.items():
        assert services[name]["image"] == image, name
        assert services[name]["profiles"] == ["signoz"], name
    # The migrator creates the schema; the SigNoz collector checks it before serving.
    assert "migrate sync up" in " ".join(services["signoz-telemetrystore-migrator"]["command"])
    assert "migrate sync check" in " ".join(services["signoz-otel-collector"]["command"])
    for svc in ("signoz", "signoz-otel-collector", "signoz-telemetrystore-migrator"):
        dsn = services[svc]["environment"].get(
            "SIGNOZ_OTEL_COLLECTOR_CLICKHOUSE_DSN",
            services[svc]["environment"].get("SIGNOZ_TELEMETRYSTORE_CLICKHOUSE_DSN"),
        )
        assert dsn == "tcp://signoz-clickhouse:9000", svc
    cluster = (SIGNOZ / "clickhouse" / "cluster.xml").read_text()
    assert "<host>signoz-zookeeper</host>" in cluster and "<cluster>" in cluster
    cfg = yaml.safe_load((SIGNOZ / "otel-collector-config.yaml").read_text())
    for pipeline in cfg["service"]["pipelines"].values():
        for kind in ("receivers", "processors", "exporters"):
            assert set(pipeline[kind]) <= set(cfg[kind]), kind
    assert all("signoz-clickhouse:9000" in str(v) for v in cfg["exporters"].values())
    # Only our collector publishes OTLP to the host: SigNoz's is reached inside the network.
    assert not services["signoz-otel-collector"].get("ports")


def _merged(*files: Path) -> dict[str, Any]:
    def merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(a)
        for k, v in b.items():
            out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
        return out

    result: dict[str, Any] = {}
    for f in files:
        result = merge(result, yaml.safe_load(f.read_text()))
    return result


@pytest.mark.parametrize("overlay", ["local", "upstream", "signoz"])
def test_every_collector_exporter_buffers_to_disk(signoz_config: dict[str, Any], overlay: str) -> None:
    cfg = _merged(COLLECTOR / "base.yaml", COLLECTOR / f"{overlay}.yaml")
    pipelines = cfg["service"]["pipelines"]
    used = {e for p in pipelines.values() for e in p["exporters"]} - {"debug"}
    assert used, overlay
    storages = {name: ext for name, ext in cfg["extensions"].items() if name.split("/")[0] == "file_storage"}
    for name in used:
        exporter = cfg["exporters"][name]
        queue = exporter["sending_queue"]
        assert queue["enabled"] is True and queue["queue_size"] >= 1000, name
        assert queue["storage"] in storages and queue["storage"] in cfg["service"]["extensions"], name
        # Without this, the exporter gives a batch up after 5 minutes of outage and it is lost.
        assert exporter["retry_on_failure"] == {"enabled": True, "max_elapsed_time": 0}, name
    collector = signoz_config["services"]["otel-collector"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in collector["volumes"]}
    for ext in storages.values():
        assert ext["directory"] in mounts and mounts[ext["directory"]] == "otel-buffer"  # a named volume
    if overlay == "signoz":
        host = cfg["exporters"]["otlp/signoz"]["endpoint"].split(":")[0]
        assert host in signoz_config["services"] and signoz_config["services"][host]["profiles"] == ["signoz"]


# --- dashboard and rules --------------------------------------------------------------------------


def test_generated_files_are_committed() -> None:
    assert build.main(["--check"]) == 0, "run: python deploy/signoz/build.py"


def _dashboard() -> dict[str, Any]:
    return dict(json.loads(build.DASHBOARD.read_text()))


def _rules() -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted(build.ALERTS.glob("*.json"))]


def test_dashboard_and_rules_have_the_v5_shape() -> None:
    board = _dashboard()
    assert board["version"] == "v5" and board["title"]
    ids = [w["id"] for w in board["widgets"]]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(item["i"] for item in board["layout"])
    for item in board["layout"]:
        assert 0 <= item["x"] and item["x"] + item["w"] <= 12 and item["h"] > 0
    for w in board["widgets"]:
        query = w["query"]
        assert query["queryType"] in ("builder", "clickhouse_sql"), w["id"]
        if query["queryType"] == "builder":
            assert (
                query["builder"]["queryData"]
                and any(not q["disabled"] for q in query["builder"]["queryData"])
                or (query["builder"]["queryFormulas"])
            )
        else:
            assert query["clickhouse_sql"][0]["query"].startswith("SELECT"), w["id"]
    titles = " ".join(w["title"].lower() for w in board["widgets"])
    for view in ("latency", "first token", "tokens", "cost", "feedback", "faithfulness"):
        assert view in titles, view
    rules = _rules()
    prometheus = yaml.safe_load((ROOT / "grafana" / "alerts" / "ragloop.rules.yml").read_text())
    prom_names = {r["alert"] for g in prometheus["groups"] for r in g["rules"]}
    # Every Prometheus alert on the app's own OTLP metrics has its SigNoz rule; the drift job's two
    # reach Prometheus by textfile only (docs/signoz.md), and the week-over-week rule needs offset.
    assert {r["alert"] for r in rules} == prom_names - {
        "RagloopDriftAlarm",
        "RagloopDriftStale",
        "RagloopThumbsDownShareUp",
    }
    for r in rules:
        assert r["version"] == "v5" and r["schemaVersion"] == "v2alpha1" and r["ruleType"] == "threshold_rule"
        cond = r["condition"]
        names = {q["spec"]["name"] for q in cond["compositeQuery"]["queries"]}
        assert cond["selectedQueryName"] in names, r["alert"]
        for spec in cond["thresholds"]["spec"]:
            assert spec["op"] in ("1", "2", "3", "4") and spec["matchType"] in ("1", "2", "3", "4", "5")
        assert r["evaluation"]["kind"] == "rolling" and re.fullmatch(
            r"\d+[mh]", r["evaluation"]["spec"]["evalWindow"]
        )


_KEY = re.compile(r"([A-Za-z_][\w.]*)\s*(?:=|!=|<=|>=|<|>|\bIN\b|\bEXISTS\b)")
_NAME = re.compile(r"\bname\s*=\s*'([^']+)'")
_AGG = re.compile(r"\w+\(([\w.]*)\)")
_SQL_ATTR = re.compile(r"attributes_(?:string|number|bool)\['([^']+)'\]")


def referenced() -> dict[str, Any]:
    """What the committed dashboard and rules query: metrics (with their filter/group keys) and
    span queries (span name, attribute keys)."""
    metrics: dict[str, set[str]] = {}
    span_queries: list[tuple[str | None, set[str]]] = []

    def take(signal: str, aggregations: list[dict[str, Any]], where: str, group: list[str]) -> None:
        keys = {k for k in _KEY.findall(where)} | set(group)
        if signal == "metrics":
            for a in aggregations:
                metrics.setdefault(a["metricName"], set()).update(keys)
            return
        for a in aggregations:
            keys |= {k for k in _AGG.findall(a["expression"]) if k}
        names = _NAME.findall(where)
        span_queries.append((names[0] if names else None, keys - INTRINSIC))

    for w in _dashboard()["widgets"]:
        for q in w["query"]["builder"]["queryData"]:
            take(
                q["dataSource"],
                q["aggregations"],
                q["filter"]["expression"],
                [g["key"] for g in q["groupBy"]],
            )
        for q in w["query"]["clickhouse_sql"]:
            if q["query"]:
                names = _NAME.findall(q["query"])
                span_queries.append((names[0] if names else None, set(_SQL_ATTR.findall(q["query"]))))
    for r in _rules():
        for env in r["condition"]["compositeQuery"]["queries"]:
            if env["type"] == "builder_query":
                s = env["spec"]
                take(
                    s["signal"],
                    s["aggregations"],
                    s["filter"]["expression"],
                    [g["name"] for g in s["groupBy"]],
                )
    return {"metrics": metrics, "spans": span_queries}


def test_references_are_parsed() -> None:
    refs = referenced()
    assert sc.M_TURN_DURATION in refs["metrics"] and sc.M_TELEMETRY_DROPPED in refs["metrics"]
    assert (sc.SPAN_SCORE, {sc.SCORE_VALUE, sc.SCORE_NAME}) in refs["spans"]
    assert any(name == sc.SPAN_TURN and sc.COST_USD in keys for name, keys in refs["spans"])


# --- names against a real capture -----------------------------------------------------------------


def start_rotel(tmp: Path, upstream: str, max_elapsed: str = "300s") -> tuple[ManagedProcess, str]:
    """A real rotel collector exporting every signal over OTLP/gRPC to ``upstream``."""
    from monitoring._stack import rotel_binary

    grpc, http = free_port(), free_port()
    argv = [
        str(rotel_binary()),
        "start",
        "--otlp-grpc-endpoint",
        f"127.0.0.1:{grpc}",
        "--otlp-http-endpoint",
        f"127.0.0.1:{http}",
        "--pid-file",
        str(tmp / f"rotel-{grpc}.pid"),
        "--exporter",
        "otlp",
        "--otlp-exporter-endpoint",
        upstream,
        "--otlp-exporter-retry-initial-backoff",
        "1s",
        "--otlp-exporter-retry-max-backoff",
        "2s",
        "--otlp-exporter-retry-max-elapsed-time",
        max_elapsed,
        "--batch-timeout",
        "200ms",
    ]
    proc = ManagedProcess("rotel", argv, tmp / f"rotel-{grpc}.log").start()
    try:
        proc.wait_ready(lambda: port_open("127.0.0.1", grpc) and port_open("127.0.0.1", http), timeout=30)
    except BaseException:
        proc.stop()
        raise
    return proc, f"http://127.0.0.1:{grpc}"


@pytest.fixture(scope="module")
def captured(
    tmp_path_factory: pytest.TempPathFactory, instant_llm: str, indexed_dir: Path, shared_retriever: Any
) -> Iterator[Captured]:
    """Real turns, feedback and a faithfulness score, through rotel, as the OTLP receiver got them."""
    from chatbot import build_service, create_app
    from eval import EvalResult, telemetry_callback
    from monitoring import Telemetry
    from ragloop.process import ThreadedServer
    from tests.monitoring.conftest import telemetry_settings

    tmp = tmp_path_factory.mktemp("signoz-capture")
    with OtlpReceiver() as receiver:
        rotel, endpoint = start_rotel(tmp, receiver.endpoint)
        settings = telemetry_settings(
            indexed_dir,
            openai_base_url=instant_llm,
            database_url=f"sqlite:///{tmp / 'chatlog.db'}",
            otlp_endpoint=endpoint,
            prices="*=1:2",
        )
        tel = Telemetry(settings)
        # As the composition root wires it: feedback routed to a sink (outbox items), outbox gauge.
        observer: Any = tel  # Telemetry implements the chat layer's observer hooks structurally
        service = build_service(settings, observer=observer, retriever=shared_retriever)
        service.chatlog.set_routes({"feedback": ["vendor"]})
        tel.observe_outbox(service.chatlog.engine)
        app = create_app(settings, service=service, observer=tel)
        try:
            with ThreadedServer(app, "/healthz", name="chat-app") as server:
                base = server.base
                ids = []
                for q in ("How do I copy a file?", "How do I sort a list?"):
                    resp = httpx.post(f"{base}/api/chat", json={"message": q}, timeout=60)
                    assert resp.status_code == 200, resp.text
                    ids.append(resp.json()["turn_id"])
                for turn_id, value in zip(ids, (1, -1), strict=True):
                    fb = httpx.post(
                        f"{base}/api/feedback", json={"turn_id": turn_id, "value": value}, timeout=60
                    )
                    assert fb.status_code == 201, fb.text
                fb = httpx.post(f"{base}/api/feedback", json={"turn_id": ids[0], "value": -1}, timeout=60)
                assert fb.status_code == 201, fb.text
                row = {"turn_id": ids[0], "trace_id": None, "span_id": None}
                # The online evaluator's own callback (tests/monitoring/test_alerts_real_series.py runs
                # the evaluator itself and checks its score name is the alerted one).
                telemetry_callback(tel)(row, sc.SCORE_FAITHFULNESS_ALERTED, EvalResult(score=0.3))
            tel.force_flush(timeout_s=20)
            tel.metrics.provider.force_flush(10_000)
            # Wait for every span and metric the dashboard and rules query (the collector forwards
            # in batches; a busy machine is slow): the test then checks each one's attributes.
            refs = referenced()
            span_names = {sc.SPAN_TURN, sc.SPAN_FEEDBACK, sc.SPAN_SCORE}
            span_names |= {name for name, _ in refs["spans"] if name is not None}
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                names = {s["name"] for s in receiver.got.spans}
                if span_names <= names and set(refs["metrics"]) <= set(receiver.got.metrics):
                    break
                time.sleep(0.5)
        finally:
            tel.shutdown()
            service.chatlog.close()
            rotel.stop()
        yield receiver.got


def test_every_queried_name_is_emitted_by_a_real_turn(captured: Captured) -> None:
    refs = referenced()
    problems = []
    for name, keys in refs["metrics"].items():
        points = captured.metrics.get(name)
        if not points:
            problems.append(f"metric {name} never arrived")
            continue
        have = {k for p in points for k in p["attributes"]} | {k for p in points for k in p["resource"]}
        problems += [f"metric {name} has no attribute {k}" for k in sorted(keys - have)]
    for span_name, keys in refs["spans"]:
        pool = [s for s in captured.spans if span_name is None or s["name"] == span_name]
        if not pool:
            problems.append(f"no span named {span_name}")
            continue
        have = {k for s in pool for k in s["attributes"]} | {k for s in pool for k in s["resource"]}
        problems += [f"span {span_name or '*'} has no attribute {k}" for k in sorted(keys - have)]
    assert problems == [], "\n".join(problems)
    assert captured.duplicates == 0
