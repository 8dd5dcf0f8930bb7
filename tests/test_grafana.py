"""Grafana dashboards and alert rules, checked by the vendors' own tools and a real Prometheus.

No Grafana server runs here: dashboards are type-checked against ``@grafana/schema`` with ``tsc``;
every PromQL expression is parsed by ``promtool`` and then run against a real Prometheus scraping
the app's real ``/metrics`` (the real telemetry, fed one turn of each kind) and the drift textfile.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from ragloop.process import ManagedProcess, free_port, http_ok

ROOT = Path(__file__).resolve().parents[1]
GRAFANA = ROOT / "grafana"


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


# build_dashboards imports its sibling _panels; check and exposition are loaded under unique names.
sys.path.insert(0, str(GRAFANA))
build = _load("ragloop_grafana_build", GRAFANA / "build_dashboards.py")
check = _load("ragloop_grafana_check", GRAFANA / "validate" / "check.py")
exposition = _load("ragloop_grafana_exposition", GRAFANA / "validate" / "exposition.py")

#: What the product's design card asks the dashboards and alerts to cover.
REQUIRED_DASHBOARDS = {"ragloop-service", "ragloop-llm", "ragloop-quality", "ragloop-drift"}
REQUIRED_ALERTS = {
    "RagloopHighErrorRate",
    "RagloopSlowTimeToFirstToken",
    "RagloopThumbsDownShareHigh",
    "RagloopDriftAlarm",
}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return check.load_dashboards()


@pytest.fixture(scope="module")
def used(dashboards: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    return check.used_expressions(dashboards)


@pytest.fixture(scope="module")
def node_modules() -> None:
    # Never skipped: without node/npm this fails and says how to install them.
    check.ensure_node_modules()


def test_committed_dashboards_match_their_specs() -> None:
    assert build.main(["--check"]) == 0, "run: .venv/bin/python grafana/build_dashboards.py"


def test_dashboards_cover_the_design_card(dashboards: dict[str, dict[str, Any]]) -> None:
    assert {d["uid"] for d in dashboards.values()} == REQUIRED_DASHBOARDS
    titles = " | ".join(p.get("title", "") for d in dashboards.values() for p in check._panels(d)).lower()
    for topic in ("latency", "first token", "retrieval", "tokens", "cost", "feedback", "thumbs-down"):
        assert topic in titles
    assert "$score" in titles and "drift statistic" in titles and "p-value" in titles
    score_var = next(v for v in dashboards["quality"]["templating"]["list"] if v["name"] == "score")
    assert score_var["current"]["value"] == "faithfulness_local"  # what the online evaluator emits
    for d in dashboards.values():
        assert d["schemaVersion"] == 42
        assert d["templating"]["list"][0]["name"] == "DS_PROMETHEUS"


def test_dashboards_typecheck_and_a_broken_one_does_not(
    node_modules: None, dashboards: dict[str, dict[str, Any]]
) -> None:
    broken = copy.deepcopy(dashboards["service"])
    del broken["panels"][1]["gridPos"]["y"]
    broken["panels"][1]["fieldConfig"]["defaults"]["thresholds"]["mode"] = "absolut"
    broken["refresh"] = 30
    broken["panels"][2]["options"]["colorMode"] = "rainbow"  # a stat panel's options
    timeseries = next(p for p in broken["panels"] if p["type"] == "timeseries")
    timeseries["options"]["legend"]["bogus"] = True
    enums = check.schema_enums()
    check.write_ts({**dashboards, "broken": broken}, enums)
    proc = check.run_tsc()
    lines = [line for line in proc.stdout.splitlines() if "error TS" in line]
    assert proc.returncode != 0
    assert lines and all(line.startswith("generated/broken.ts") for line in lines), proc.stdout
    text = "\n".join(lines)
    assert "Property 'y' is missing" in text
    assert "'\"absolut\"' is not assignable to type 'ThresholdsMode'" in text
    assert "Type 'number' is not assignable to type 'string'" in text  # refresh
    assert "'\"rainbow\"' is not assignable to type 'BigValueColorMode | undefined'" in text
    assert "'\"bogus\"' does not exist in type 'TimeSeriesLegendOptions'" in text
    assert check.typecheck(dashboards) == []


def test_enum_strings_become_enum_members() -> None:
    enums = {"ThresholdsMode": {"absolute": "Absolute"}, "MappingType": {"value": "ValueToText"}}
    ts = check.to_ts(
        {"thresholds": {"mode": "absolute"}, "mappings": [{"type": "value"}], "mode": "absolute"}, enums
    )
    assert (
        ts
        == '{"thresholds": {"mode": schema.ThresholdsMode.Absolute}, "mappings": [{"type": schema.MappingType.ValueToText}], "mode": "absolute"}'
    )
    assert check.to_ts({"thresholds": {"mode": "bogus"}}, enums) == '{"thresholds": {"mode": "bogus"}}'


def test_top_level_keys_and_layout(node_modules: None, dashboards: dict[str, dict[str, Any]]) -> None:
    allowed = check.interface_keys(check.SCHEMA_DTS.read_text())
    assert {"panels", "templating", "schemaVersion", "uid", "title"} <= allowed
    assert check.dashboard_errors(dashboards, allowed) == []
    bad = copy.deepcopy(dashboards["drift"])
    bad["__inputs"] = []
    bad["panels"][2]["gridPos"] = dict(bad["panels"][1]["gridPos"])
    bad["panels"][3]["datasource"] = {"type": "prometheus", "uid": "${DS_MISSING}"}
    errors = check.dashboard_errors({"bad": bad}, allowed)
    assert any("unknown top-level key '__inputs'" in e for e in errors)
    assert any("overlaps" in e for e in errors)
    assert any("DS_MISSING" in e for e in errors)


def test_promql_parses_with_promtool(used: list[tuple[str, str]]) -> None:
    assert len(used) > 50
    assert check.promql_errors(used) == []
    assert check.promql_errors([("bad", "sum by (le (rate(x[5m]))")]) != []


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    names = {name for name, _ in check.alert_rules()}
    assert REQUIRED_ALERTS <= names
    # Every alert has a unit test in which it fires (and the tests pass).
    fired = {
        case["alertname"]
        for path in check.ALERT_TESTS
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert fired == names
    assert check.alert_rule_errors() == []


def test_metric_and_label_names_parsing() -> None:
    expr = 'histogram_quantile(0.95, sum by (le, http_route) (rate(a_bucket{x="y", z=~"w"}[5m]))) / on() b offset 1d'
    assert check.metric_names(expr) == {"a_bucket", "b"}
    assert check.label_names(expr) == {"le", "http_route", "x", "z"}
    assert check.metric_names('time() - max(c) and d{e="f(g)"} > 2 * 86400') == {"c", "d"}
    assert (
        check.substitute("rate(m[$__rate_interval]) $x ${x}", {"__rate_interval": "1m", "x": "v"})
        == "rate(m[1m]) v v"
    )


# --- against the real exposition and a real Prometheus -------------------------------------------
@pytest.fixture(scope="module")
def live_app() -> Iterator[tuple[str, Any]]:
    """The probe app (real telemetry + /metrics + drift textfile) served by uvicorn; fed continuously."""
    import httpx
    import uvicorn

    app, telemetry = exposition.build_app()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    serving = threading.Thread(target=server.run, daemon=True)
    serving.start()
    base = f"http://127.0.0.1:{port}"
    stop = threading.Event()
    client = httpx.Client(base_url=base, timeout=10)

    def feed_forever() -> None:
        while not stop.is_set():
            exposition.feed(telemetry, client)
            stop.wait(0.5)

    try:
        deadline = time.monotonic() + 30
        while not http_ok(f"{base}/metrics") and time.monotonic() < deadline:
            time.sleep(0.1)
        exposition.feed(telemetry, client)
        feeder = threading.Thread(target=feed_forever, daemon=True)
        feeder.start()
        yield base, telemetry
    finally:
        stop.set()
        server.should_exit = True
        serving.join(timeout=10)
        client.close()
        telemetry.shutdown()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - local test server
        return str(resp.read().decode())


def test_every_name_exists_in_the_real_exposition(
    live_app: tuple[str, Any], used: list[tuple[str, str]]
) -> None:
    base, _ = live_app
    series = exposition.series_labels(_get(f"{base}/metrics") + _get(f"{base}/drift-metrics"))
    assert "ragloop_turn_time_to_first_token_seconds_bucket" in series
    assert check.name_errors(used, series) == []
    typo = check.name_errors([("typo", 'sum(rate(ragloop_feedback{value="down"}[5m]))')], series)
    assert typo == ["typo: metric ragloop_feedback is not exposed"]
    wrong_label = check.name_errors([("label", 'ragloop_feedback_total{valu="down"}')], series)
    assert any("valu" in e for e in wrong_label)


def _prometheus_config(app_base: str, rules: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml pointed at the probe app, scraping every second."""
    cfg = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", evaluation_interval="1s")
    cfg["rule_files"] = [str(rules)]
    host = urllib.parse.urlparse(app_base).netloc
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    jobs["ragloop"]["static_configs"] = [{"targets": [host]}]
    jobs["ragloop-drift"]["static_configs"] = [{"targets": [host]}]
    jobs["ragloop-drift"]["metrics_path"] = "/drift-metrics"
    cfg["scrape_configs"] = [jobs["ragloop"], jobs["ragloop-drift"]]
    return cfg


@pytest.fixture(scope="module")
def prometheus(live_app: tuple[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus (Debian package) scraping the probe app with the alert rules loaded."""
    tmp = tmp_path_factory.mktemp("prometheus")
    cfg = tmp / "prometheus.yml"
    cfg.write_text(json.dumps(_prometheus_config(live_app[0], check.ALERT_RULES)))
    port = free_port()
    argv = [
        "prometheus",
        f"--config.file={cfg}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    proc = ManagedProcess("prometheus", argv, tmp / "prometheus.log").start()
    base = f"http://127.0.0.1:{port}"
    try:
        proc.wait_ready(lambda: http_ok(f"{base}/-/ready"), timeout=60)
        yield base
    finally:
        proc.stop()


def _query(base: str, expr: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        return dict(json.loads(_get(url)))
    except urllib.error.HTTPError as exc:  # 400 with an error body for bad PromQL
        return dict(json.loads(exc.read().decode()))


def _wait_for_samples(base: str, timeout: float = 90.0) -> None:
    # rate() needs two samples of each series in its window: wait for three scrapes of both jobs.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        res = _query(base, "min(count_over_time(up[1m])) >= 3 and count(up == 1) == 2")
        if res.get("data", {}).get("result"):
            return
        time.sleep(0.5)
    raise AssertionError("Prometheus did not scrape the probe app three times")


def test_every_dashboard_query_returns_data_from_real_prometheus(
    prometheus: str, dashboards: dict[str, dict[str, Any]]
) -> None:
    _wait_for_samples(prometheus)
    empty, failed = [], []
    for name, d in dashboards.items():
        for title, expr in check.expressions(d):
            res = _query(prometheus, expr)
            if res.get("status") != "success":
                failed.append(f"{name} / {title}: {res.get('error')}")
            elif not res["data"]["result"]:
                empty.append(f"{name} / {title}: {expr}")
    assert failed == []
    assert empty == []


def test_alert_rules_evaluate_on_real_prometheus_and_drift_alarm_fires(prometheus: str) -> None:
    _wait_for_samples(prometheus)
    deadline = time.monotonic() + 60  # rules are evaluated each second: late on a busy machine
    alerts: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        alerts = json.loads(_get(f"{prometheus}/api/v1/alerts"))["data"]["alerts"]
        if any(a["labels"]["alertname"] == "RagloopDriftAlarm" for a in alerts):
            break
        time.sleep(0.5)
    drift = [a for a in alerts if a["labels"]["alertname"] == "RagloopDriftAlarm"]
    assert [a["labels"]["ragloop_drift_target"] for a in drift] == ["query_embedding"]
    assert drift[0]["state"] == "firing"
    rules = [r for g in json.loads(_get(f"{prometheus}/api/v1/rules"))["data"]["groups"] for r in g["rules"]]
    assert len(rules) == len(check.alert_rules())
    assert [r["name"] for r in rules if r["health"] == "err"] == []


def test_every_semconv_metric_is_on_a_dashboard(used: list[tuple[str, str]]) -> None:
    from monitoring import semconv

    shown = {
        name for where, expr in used if not where.startswith("alert") for name in check.metric_names(expr)
    }
    metrics = {v for k, v in vars(semconv).items() if k.startswith("M_")}
    missing = {m for m in metrics if not any(s.startswith(m.replace(".", "_")) for s in shown)}
    assert missing == set(), "add a panel to grafana/build_dashboards.py"
