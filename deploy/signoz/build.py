"""Generate the SigNoz dashboard and alert rules from the names the app emits (monitoring/semconv.py).

    python deploy/signoz/build.py            # write deploy/signoz/dashboards/*.json, alerts/*.json
    python deploy/signoz/build.py --check    # exit 1 if the committed files differ

The dashboard is SigNoz's v5 dashboard JSON (``version: "v5"``, ``layout``, ``widgets`` with
builder or ClickHouse-SQL queries), importable from the SigNoz UI (Dashboards > New > Import JSON).
Each alert file is one v5 rule (``version: "v5"``, ``schemaVersion: "v2alpha1"``, a composite
query of ``builder_query``/``builder_formula`` envelopes, ``thresholds`` and ``evaluation``), the
body of ``POST /api/v1/rules``. The shapes follow SigNoz's own dashboards (SigNoz/dashboards) and
rule types (pkg/types/ruletypes in SigNoz/signoz); docs/signoz.md says what was checked.

Metric names are the OpenTelemetry names (SigNoz keeps the dots); span fields are attribute keys.
Every metric, span name and attribute referenced here is checked against a real turn captured
from a collector by tests/monitoring/test_signoz.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from monitoring import semconv as sc  # noqa: E402

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "dashboards" / "ragloop.json"
ALERTS = HERE / "alerts"
SERVICE = "service.name IN $service_name"
TURN = f"name = '{sc.SPAN_TURN}'"
SCORE = f"name = '{sc.SPAN_SCORE}' AND {sc.SCORE_NAME} = '{sc.SCORE_FAITHFULNESS_ALERTED}'"

# --- builder queries ------------------------------------------------------------------------------


def metric(
    name: str,
    metric_name: str,
    kind: str,
    time_agg: str,
    space_agg: str,
    where: str = "",
    group_by: tuple[str, ...] = (),
    legend: str = "",
) -> dict[str, Any]:
    """A v5 builder query on a metric (``kind``: Sum, Gauge or Histogram)."""
    return {
        "queryName": name,
        "expression": name,
        "dataSource": "metrics",
        "source": "",
        "disabled": False,
        "aggregateAttribute": {"key": metric_name, "type": kind, "dataType": "float64", "isColumn": True},
        "aggregations": [
            {
                "metricName": metric_name,
                "temporality": "",
                "timeAggregation": time_agg,
                "spaceAggregation": space_agg,
                "reduceTo": "avg",
            }
        ],
        "filter": {"expression": where},
        "groupBy": [_key(k) for k in group_by],
        "functions": [],
        "having": {"expression": ""},
        "legend": legend,
        "limit": None,
        "orderBy": [],
        "stepInterval": None,
    }


def spans(
    name: str, aggregation: str, where: str, group_by: tuple[str, ...] = (), legend: str = ""
) -> dict[str, Any]:
    """A v5 builder query on spans: ``aggregation`` like ``p95(duration_nano)`` or ``count()``."""
    return {
        "queryName": name,
        "expression": name,
        "dataSource": "traces",
        "source": "",
        "disabled": False,
        "aggregations": [{"expression": aggregation}],
        "filter": {"expression": where},
        "groupBy": [_key(k) for k in group_by],
        "functions": [],
        "having": {"expression": ""},
        "legend": legend,
        "limit": None,
        "orderBy": [],
        "stepInterval": None,
    }


def _key(key: str) -> dict[str, Any]:
    context = "resource" if key == sc.SERVICE_NAME else "tag"
    return {"key": key, "dataType": "string", "type": context, "isColumn": False, "isJSON": False}


def formula(name: str, expression: str, legend: str = "") -> dict[str, Any]:
    """A formula over builder queries (``A / B``)."""
    return {"queryName": name, "expression": expression, "disabled": False, "legend": legend}


def hidden(query: dict[str, Any]) -> dict[str, Any]:
    """The query, disabled (an input of a formula only)."""
    return {**query, "disabled": True}


# --- widgets --------------------------------------------------------------------------------------


def widget(
    wid: str,
    title: str,
    description: str,
    queries: list[dict[str, Any]],
    formulas: tuple[dict[str, Any], ...] = (),
    unit: str = "none",
    panel: str = "graph",
    sql: str | None = None,
) -> dict[str, Any]:
    """One v5 widget with builder queries, or a ClickHouse SQL query when ``sql`` is given."""
    return {
        "id": wid,
        "title": title,
        "description": description,
        "panelTypes": panel,
        "query": {
            "id": f"{wid}-query",
            "queryType": "clickhouse_sql" if sql else "builder",
            "builder": {"queryData": queries, "queryFormulas": list(formulas), "queryTraceOperator": []},
            "clickhouse_sql": [{"name": "A", "legend": "", "disabled": False, "query": sql or ""}],
            "promql": [{"name": "A", "legend": "", "disabled": False, "query": ""}],
            "unit": unit,
        },
        "yAxisUnit": unit,
        "timePreferance": "GLOBAL_TIME",
        "opacity": "1",
        "nullZeroValues": "zero",
        "isStacked": False,
        "isLogScale": False,
        "fillSpans": False,
        "mergeAllActiveQueries": False,
        "legendPosition": "bottom",
        "softMin": 0,
        "softMax": 0,
        "thresholds": [],
        "bucketCount": 30,
        "bucketWidth": 0,
        "columnUnits": {},
        "stackedBarChart": False,
        "selectedLogFields": [],
        "selectedTracesFields": [],
    }


def _faithfulness_sql() -> str:
    """Per-minute mean faithfulness and share below 0.5, from eval.score spans (SigNoz traces v3)."""
    value = f"attributes_number['{sc.SCORE_VALUE}']"
    return (
        "SELECT toStartOfInterval(timestamp, INTERVAL 5 MINUTE) AS ts,\n"
        f"       avg({value}) AS mean_faithfulness,\n"
        f"       countIf({value} < 0.5) / count() AS share_below_0_5\n"
        "FROM signoz_traces.distributed_signoz_index_v3\n"
        f"WHERE name = '{sc.SPAN_SCORE}'\n"
        f"  AND attributes_string['{sc.SCORE_NAME}'] = '{sc.SCORE_FAITHFULNESS_ALERTED}'\n"
        "  AND timestamp BETWEEN $start_datetime AND $end_datetime\n"
        "  AND ts_bucket_start BETWEEN $start_timestamp - 1800 AND $end_timestamp\n"
        "GROUP BY ts ORDER BY ts"
    )


def widgets() -> list[dict[str, Any]]:
    """Every widget: latency, time to first token, tokens, cost, feedback, faithfulness, drops."""
    model = (sc.GEN_AI_REQUEST_MODEL,)
    feedback = (sc.FEEDBACK_VALUE_ATTR,)
    return [
        widget(
            "turn-latency",
            "Turn latency p50 / p95 / p99",
            f"{sc.M_TURN_DURATION} histogram (whole turn, seconds).",
            [
                metric(q, sc.M_TURN_DURATION, "Histogram", "rate", p, SERVICE, legend=p)
                for q, p in (("A", "p50"), ("B", "p95"), ("C", "p99"))
            ],
            unit="s",
        ),
        widget(
            "ttft",
            "Time to first token p50 / p95",
            f"{sc.M_TTFT} histogram; the same value is {sc.GEN_AI_SERVER_TTFT} on each {sc.SPAN_TURN} span.",
            [
                metric(
                    "A", sc.M_TTFT, "Histogram", "rate", "p50", SERVICE, model, "p50 {{gen_ai.request.model}}"
                ),
                metric(
                    "B", sc.M_TTFT, "Histogram", "rate", "p95", SERVICE, model, "p95 {{gen_ai.request.model}}"
                ),
            ],
            unit="s",
        ),
        widget(
            "ttft-spans",
            "Time to first token by turn status (spans)",
            f"Mean {sc.GEN_AI_SERVER_TTFT} of {sc.SPAN_TURN} spans.",
            [spans("A", f"avg({sc.GEN_AI_SERVER_TTFT})", f"{TURN} AND {SERVICE}", (sc.TURN_STATUS,))],
            unit="s",
        ),
        widget(
            "turns",
            "Turns by status, and error share",
            f"{sc.SPAN_TURN} spans per interval by {sc.TURN_STATUS}; F1 is the share of status 'error'.",
            [
                spans("A", "count()", f"{TURN} AND {SERVICE}", (sc.TURN_STATUS,)),
                hidden(spans("B", "count()", f"{TURN} AND {sc.TURN_STATUS} = 'error' AND {SERVICE}")),
                hidden(spans("C", "count()", f"{TURN} AND {SERVICE}")),
            ],
            (formula("F1", "B / C", "error share"),),
        ),
        widget(
            "tokens",
            "Tokens per interval (input / output)",
            f"Sum of {sc.GEN_AI_USAGE_INPUT_TOKENS} and {sc.GEN_AI_USAGE_OUTPUT_TOKENS} "
            f"on {sc.SPAN_TURN} spans.",
            [
                spans("A", f"sum({sc.GEN_AI_USAGE_INPUT_TOKENS})", f"{TURN} AND {SERVICE}", model, "input"),
                spans("B", f"sum({sc.GEN_AI_USAGE_OUTPUT_TOKENS})", f"{TURN} AND {SERVICE}", model, "output"),
            ],
        ),
        widget(
            "tokens-per-call",
            "Tokens per LLM call p95",
            f"{sc.M_TOKEN_USAGE} histogram by {sc.GEN_AI_TOKEN_TYPE}.",
            [
                metric(
                    "A",
                    sc.M_TOKEN_USAGE,
                    "Histogram",
                    "rate",
                    "p95",
                    SERVICE,
                    (sc.GEN_AI_TOKEN_TYPE,),
                    "{{gen_ai.token.type}}",
                )
            ],
        ),
        widget(
            "cost",
            "Estimated LLM cost (USD per interval)",
            f"{sc.M_COST} counter from RAGLOOP_PRICES, by model.",
            [metric("A", sc.M_COST, "Sum", "increase", "sum", SERVICE, model, "{{gen_ai.request.model}}")],
            unit="currencyUSD",
        ),
        widget(
            "cost-per-turn",
            "Mean cost per turn (spans)",
            f"Mean {sc.COST_USD} of {sc.SPAN_TURN} spans.",
            [spans("A", f"avg({sc.COST_USD})", f"{TURN} AND {SERVICE}", model)],
            unit="currencyUSD",
        ),
        widget(
            "feedback",
            "Ratings given and retracted, by value",
            f"{sc.M_FEEDBACK} and {sc.M_FEEDBACK_RETRACTED} counters (a rater counts once).",
            [
                metric("A", sc.M_FEEDBACK, "Sum", "increase", "sum", SERVICE, feedback, "given {{value}}"),
                metric(
                    "B",
                    sc.M_FEEDBACK_RETRACTED,
                    "Sum",
                    "increase",
                    "sum",
                    SERVICE,
                    feedback,
                    "retracted {{value}}",
                ),
            ],
        ),
        widget(
            "thumbs-down-share",
            "Thumbs-down share of standing ratings",
            "(down given - down retracted) / (all given - all retracted).",
            [
                hidden(
                    metric("A", sc.M_FEEDBACK, "Sum", "increase", "sum", f"{sc.FEEDBACK_VALUE_ATTR} = 'down'")
                ),
                hidden(
                    metric(
                        "B",
                        sc.M_FEEDBACK_RETRACTED,
                        "Sum",
                        "increase",
                        "sum",
                        f"{sc.FEEDBACK_VALUE_ATTR} = 'down'",
                    )
                ),
                hidden(metric("C", sc.M_FEEDBACK, "Sum", "increase", "sum", SERVICE)),
                hidden(metric("D", sc.M_FEEDBACK_RETRACTED, "Sum", "increase", "sum", SERVICE)),
            ],
            (formula("F1", "(A - B) / (C - D)", "thumbs-down share"),),
            unit="percentunit",
        ),
        widget(
            "feedback-spans",
            "Feedback events by value (spans)",
            f"{sc.SPAN_FEEDBACK} spans by {sc.FEEDBACK_VALUE} (+1 / -1).",
            [spans("A", "count()", f"name = '{sc.SPAN_FEEDBACK}' AND {SERVICE}", (sc.FEEDBACK_VALUE,))],
        ),
        widget(
            "faithfulness",
            "Faithfulness p50 / p10 (online evaluator)",
            f"{sc.M_SCORE} histogram for {sc.SCORE_NAME}={sc.SCORE_FAITHFULNESS_ALERTED}.",
            [
                metric(
                    q,
                    sc.M_SCORE,
                    "Histogram",
                    "rate",
                    p,
                    f"{sc.SCORE_NAME} = '{sc.SCORE_FAITHFULNESS_ALERTED}' AND {SERVICE}",
                    legend=p,
                )
                for q, p in (("A", "p50"), ("B", "p10"))
            ],
        ),
        widget(
            "faithfulness-sql",
            "Faithfulness mean and share below 0.5 (ClickHouse SQL on eval.score spans)",
            "Every scored turn, from the spans; the low-faithfulness alert uses the same share.",
            [],
            sql=_faithfulness_sql(),
        ),
        widget(
            "telemetry-dropped",
            "Telemetry the app dropped, by signal and reason",
            f"{sc.M_TELEMETRY_DROPPED}: spans, log records and data points lost before the collector.",
            [
                metric(
                    "A",
                    sc.M_TELEMETRY_DROPPED,
                    "Sum",
                    "increase",
                    "sum",
                    SERVICE,
                    (sc.SIGNAL, sc.DROP_REASON),
                    "{{ragloop.telemetry.signal}} {{ragloop.telemetry.reason}}",
                )
            ],
        ),
    ]


def dashboard() -> dict[str, Any]:
    """The v5 dashboard: two widgets a row, 6 units high each (SigNoz's 12-column grid)."""
    items = widgets()
    layout = [
        {"i": w["id"], "x": 6 * (n % 2), "y": 6 * (n // 2), "w": 6, "h": 6, "moved": False, "static": False}
        for n, w in enumerate(items)
    ]
    variable_id = "6f1b8a52-0c0e-4d43-9a55-6a3e2f7c1a01"
    return {
        "title": "ragloop",
        "description": "ragloop chat turns: latency, time to first token, tokens, cost, feedback, "
        "faithfulness, telemetry drops. Generated by deploy/signoz/build.py.",
        "tags": ["ragloop", "llm", "rag"],
        "version": "v5",
        "uploadedGrafana": False,
        "variables": {
            variable_id: {
                "id": variable_id,
                "key": variable_id,
                "name": "service_name",
                "description": "The ragloop app's service.name (OTEL_SERVICE_NAME)",
                "type": "DYNAMIC",
                "dynamicVariablesAttribute": sc.SERVICE_NAME,
                "dynamicVariablesSource": "All telemetry",
                "multiSelect": True,
                "showALLOption": True,
                "allSelected": True,
                "sort": "ASC",
                "order": 0,
                "customValue": "",
                "defaultValue": "",
                "queryValue": "",
                "textboxValue": "",
            }
        },
        "layout": layout,
        "panelMap": {},
        "widgets": items,
    }


# --- alerts ---------------------------------------------------------------------------------------


def _spec(query: dict[str, Any]) -> dict[str, Any]:
    """A dashboard builder query as a rule's ``builder_query`` envelope spec."""
    signal = query["dataSource"]
    spec: dict[str, Any] = {
        "name": query["queryName"],
        "signal": signal,
        "stepInterval": 60,
        "disabled": query["disabled"],
        "aggregations": [{k: v for k, v in a.items() if k != "reduceTo"} for a in query["aggregations"]],
        "filter": {
            "expression": query["filter"]["expression"].replace(f" AND {SERVICE}", "").replace(SERVICE, "")
        },
        "groupBy": [
            {
                "name": g["key"],
                "fieldContext": "resource" if g["type"] == "resource" else "attribute",
                "fieldDataType": "string",
            }
            for g in query["groupBy"]
        ],
        "having": {"expression": ""},
    }
    return spec


def rule(
    name: str,
    alert_type: str,
    queries: list[dict[str, Any]],
    selected: str,
    op: str,
    target: float,
    window: str,
    severity: str,
    summary: str,
    description: str,
    *,
    formulas: tuple[dict[str, Any], ...] = (),
    all_the_time: bool = True,
    absent_for_minutes: int = 0,
) -> dict[str, Any]:
    """One v5 threshold rule.

    ``op``: "1" above, "2" below, "3" equal. ``all_the_time`` mirrors a Prometheus ``for:`` (the
    condition held over the whole window); otherwise "at least once".
    """
    envelopes = [{"type": "builder_query", "spec": _spec(q)} for q in queries]
    envelopes += [
        {
            "type": "builder_formula",
            "spec": {"name": f["queryName"], "expression": f["expression"], "disabled": False},
        }
        for f in formulas
    ]
    return {
        "alert": name,
        "alertType": alert_type,
        "ruleType": "threshold_rule",
        "version": "v5",
        "schemaVersion": "v2alpha1",
        "condition": {
            "compositeQuery": {
                "queryType": "builder",
                "panelType": "graph",
                "unit": "",
                "queries": envelopes,
            },
            "selectedQueryName": selected,
            "alertOnAbsent": absent_for_minutes > 0,
            "absentFor": absent_for_minutes,
            "thresholds": {
                "kind": "basic",
                "spec": [
                    {
                        "name": severity,
                        "target": target,
                        "targetUnit": "",
                        "matchType": "2" if all_the_time else "1",
                        "op": op,
                        "channels": [],
                    }
                ],
            },
        },
        "evaluation": {"kind": "rolling", "spec": {"evalWindow": window, "frequency": "1m"}},
        "labels": {"severity": severity, "source": "ragloop"},
        "annotations": {"summary": summary, "description": description},
        "notificationSettings": {"groupBy": [], "usePolicy": False, "renotify": {"enabled": False}},
        "disabled": False,
    }


def alerts() -> list[dict[str, Any]]:
    """The Prometheus rules of grafana/alerts/ragloop.rules.yml, as SigNoz rules (docs/signoz.md)."""
    http = f"{sc.HTTP_ROUTE} EXISTS"  # the app's own HTTP server spans
    turn_p95 = metric("A", sc.M_TURN_DURATION, "Histogram", "rate", "p95")
    ttft_p95 = metric("A", sc.M_TTFT, "Histogram", "rate", "p95")
    down = f"{sc.FEEDBACK_VALUE_ATTR} = 'down'"
    return [
        rule(
            "RagloopHighErrorRate",
            "TRACES_BASED_ALERT",
            [
                hidden(spans("A", "count()", f"{http} AND {sc.HTTP_STATUS} >= 500")),
                hidden(spans("B", "count()", f"{http} AND {sc.HTTP_STATUS} EXISTS")),
            ],
            "F1",
            "1",
            0.05,
            "10m",
            "page",
            "ragloop: more than 5 % of requests fail with 5xx",
            "5xx share above 5 % for 10 minutes. Check GET /healthz and chat-log rows with status='error'.",
            formulas=(formula("F1", "A / B"),),
        ),
        rule(
            "RagloopLLMUnavailable",
            "TRACES_BASED_ALERT",
            [spans("A", "count()", f"{http} AND {sc.HTTP_STATUS} IN (503, 504)")],
            "A",
            "1",
            0,
            "5m",
            "page",
            "ragloop: the LLM endpoint is down or too slow (503/504)",
            "Restart `ragloop llm serve` or fail over OPENAI_BASE_URL.",
        ),
        rule(
            "RagloopSlowTimeToFirstToken",
            "METRIC_BASED_ALERT",
            [ttft_p95],
            "A",
            "1",
            8,
            "15m",
            "page",
            "ragloop: time to first token p95 above 8 s",
            "TTFT p95 above 8 s for 15 minutes. Check prompt tokens per turn and LLM server slots.",
        ),
        rule(
            "RagloopSlowTurns",
            "METRIC_BASED_ALERT",
            [turn_p95],
            "A",
            "1",
            20,
            "15m",
            "page",
            "ragloop: turn latency p95 above 20 s",
            "Split the slow turns into retrieval / TTFT / generation from their chat-log rows.",
        ),
        rule(
            "RagloopTelemetryExportErrors",
            "METRIC_BASED_ALERT",
            [metric("A", sc.M_EXPORT_ERRORS, "Sum", "rate", "sum", group_by=(sc.SIGNAL,))],
            "A",
            "1",
            0,
            "30m",
            "ticket",
            "ragloop: telemetry exports failing",
            f"Chats continue (export never blocks a turn); {sc.M_TELEMETRY_DROPPED} says what was lost.",
        ),
        rule(
            "RagloopOutboxDeadLetters",
            "METRIC_BASED_ALERT",
            [
                metric(
                    "A",
                    sc.M_OUTBOX_ITEMS,
                    "Gauge",
                    "latest",
                    "sum",
                    f"{sc.OUTBOX_STATUS} = 'dead'",
                    (sc.OUTBOX_SINK,),
                )
            ],
            "A",
            "1",
            0,
            "15m",
            "ticket",
            "ragloop: outbox items gave up",
            "See `ragloop outbox status`; fix the sink, then `ragloop outbox retry`.",
        ),
        rule(
            "RagloopThumbsDownShareHigh",
            "METRIC_BASED_ALERT",
            [
                hidden(metric("A", sc.M_FEEDBACK, "Sum", "increase", "sum", down)),
                hidden(metric("B", sc.M_FEEDBACK_RETRACTED, "Sum", "increase", "sum", down)),
                hidden(metric("C", sc.M_FEEDBACK, "Sum", "increase", "sum")),
                hidden(metric("D", sc.M_FEEDBACK_RETRACTED, "Sum", "increase", "sum")),
            ],
            "F1",
            "1",
            0.3,
            "6h",
            "ticket",
            "ragloop: more than 30 % of standing ratings are thumbs-down",
            "Over 6 hours. Unlike the Prometheus rule, no minimum of 10 raters is applied.",
            formulas=(formula("F1", "(A - B) / (C - D)"),),
            all_the_time=False,
        ),
        rule(
            "RagloopLowFaithfulnessShare",
            "TRACES_BASED_ALERT",
            [
                hidden(spans("A", "count()", f"{SCORE} AND {sc.SCORE_VALUE} < 0.5")),
                hidden(spans("B", "count()", SCORE)),
            ],
            "F1",
            "1",
            0.2,
            "6h",
            "ticket",
            "ragloop: more than 20 % of scored turns have faithfulness below 0.5",
            "Low-faithfulness turns go to the labeling queue; compare with the top retrieval score.",
            formulas=(formula("F1", "A / B"),),
            all_the_time=False,
        ),
        rule(
            "RagloopDailyCostHigh",
            "METRIC_BASED_ALERT",
            [metric("A", sc.M_COST, "Sum", "increase", "sum")],
            "A",
            "1",
            10.0,
            "24h",
            "ticket",
            "ragloop: LLM cost above 10 USD in 24 hours",
            "A fixed daily budget: SigNoz threshold rules have no 'twice the weekly average' "
            "(Prometheus keeps that rule); set the target to your budget.",
            all_the_time=False,
        ),
    ]


def render() -> dict[Path, str]:
    """Every generated file and its text."""
    out = {DASHBOARD: json.dumps(dashboard(), indent=2) + "\n"}
    for r in alerts():
        out[ALERTS / f"{r['alert']}.json"] = json.dumps(r, indent=2) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    """Write (or ``--check``) the generated files."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    args = parser.parse_args(argv)
    files = render()
    stale = [p for p, text in files.items() if not p.exists() or p.read_text() != text]
    extra = sorted(set(ALERTS.glob("*.json")) - set(files)) if ALERTS.exists() else []
    if args.check:
        for p in stale + extra:
            print(f"out of date: {p.relative_to(ROOT)} (run python deploy/signoz/build.py)", file=sys.stderr)
        return 1 if stale or extra else 0
    for p in extra:
        p.unlink()
    for p, text in files.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    print(f"wrote {len(files)} files under {HERE.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
