"""Build ragloop's Grafana dashboards (``grafana/dashboards/*.json``) from the compact specs below.

The alert rules (``grafana/alerts/ragloop.rules.yml``) are generated here too, from ``_alerts.py``.
The JSON files are generated, committed, provisioned by Grafana and checked by
``grafana/validate/check.py`` (``@grafana/schema`` types, PromQL, metric names). Edit the specs here,
then run ``python grafana/build_dashboards.py``; ``--check`` fails when a committed file is stale.

Metric names are the Prometheus spelling of the OpenTelemetry names in ``monitoring/semconv.py``
(dots become underscores, histograms get ``_bucket/_sum/_count``, counters ``_total``, a unit suffix
such as ``_seconds`` or ``_USD`` is added by the exporter). Drift gauges come from the drift job's
Prometheus textfile (``monitoring.drift.write_textfile``), so they carry no suffix.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "dashboards"
RULES = HERE / "alerts" / "ragloop.rules.yml"
for _path in (HERE, HERE.parent):  # the sibling modules, and monitoring.semconv (every name)
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))

import _alerts  # noqa: E402 - sibling modules: this folder is on sys.path when the script runs
import _panels as g  # noqa: E402

from monitoring import semconv as sc  # noqa: E402


# --- the dashboards -----------------------------------------------------------------------------
def service() -> dict[str, Any]:
    """Request rate and errors by route, turn latency, time to first token, retrieval latency."""
    req = f"sum(rate({g.HTTP}_count[{g.RATE}]))"
    err_share = f"sum(rate({g.HTTP}_count{{{g.ERR}}}[{g.RATE}])) / {req}"
    p95 = "histogram_quantile(0.95, sum by (le) (rate({m}_bucket[{r}])))"
    s = "s"
    panels = [
        g.row("Traffic"),
        g.panel("stat", "Requests/s", [g.target(req)], w=6, h=4, unit="reqps"),
        g.panel(
            "stat",
            "5xx share",
            [g.target(err_share)],
            w=6,
            h=4,
            unit="percentunit",
            steps=g.thresholds((None, "green"), (0.01, "orange"), (0.05, "red")),
        ),
        g.panel(
            "stat",
            "Turn latency p95",
            [g.target(p95.format(m=g.TURN, r=g.RATE))],
            w=6,
            h=4,
            unit=s,
            steps=g.thresholds((None, "green"), (15, "orange"), (30, "red")),
        ),
        g.panel(
            "stat",
            "Time to first token p95",
            [g.target(p95.format(m=g.TTFT, r=g.RATE))],
            w=6,
            h=4,
            unit=s,
            steps=g.thresholds((None, "green"), (4, "orange"), (8, "red")),
        ),
        g.panel(
            "timeseries",
            "Requests by route and status",
            [
                g.target(
                    f"sum by (http_route, http_response_status_code) (rate({g.HTTP}_count[{g.RATE}]))",
                    "{{http_route}} {{http_response_status_code}}",
                )
            ],
            unit="reqps",
            description="HTTP requests per second (count of http.server.request.duration).",
        ),
        g.panel(
            "timeseries",
            "Errors by route (5xx share)",
            [
                g.target(
                    f"sum by (http_route) (rate({g.HTTP}_count{{{g.ERR}}}[{g.RATE}]))"
                    f" / sum by (http_route) (rate({g.HTTP}_count[{g.RATE}]))",
                    "{{http_route}}",
                )
            ],
            unit="percentunit",
            description="Share of each route's requests answered with a 5xx status.",
        ),
        g.panel(
            "timeseries",
            "Turns by status",
            [
                g.target(
                    f"sum by (ragloop_turn_status) (rate({g.TURN}_count[{g.RATE}]))",
                    "{{ragloop_turn_status}}",
                )
            ],
            unit="ops",
            description="ok, no_context, error, rejected turns per second.",
        ),
        g.panel(
            "timeseries",
            "HTTP latency p95 by route",
            g.quantiles(g.HTTP, by="http_route", qs=(0.95,)),
            unit=s,
        ),
        g.row("Latency"),
        g.panel(
            "timeseries",
            "Turn latency",
            g.quantiles(g.TURN),
            w=8,
            unit=s,
            description="Whole chat turn, request to last token (ragloop.turn.duration).",
        ),
        g.panel(
            "timeseries",
            "Time to first token",
            g.quantiles(g.TTFT),
            w=8,
            unit=s,
            description="Request to first answer token (ragloop.turn.time_to_first_token).",
        ),
        g.panel(
            "timeseries",
            "Retrieval latency",
            g.quantiles(g.RETRIEVAL),
            w=8,
            unit=s,
            description="Embedding the question and querying Chroma (ragloop.retrieval.duration).",
        ),
        g.panel(
            "timeseries",
            "Telemetry export errors",
            [
                g.target(
                    f"sum by (ragloop_telemetry_signal) (rate({g.EXPORT_ERRORS}[{g.RATE}]))",
                    "{{ragloop_telemetry_signal}}",
                )
            ],
            w=12,
            h=6,
            unit="ops",
            description="Failed exports by signal: telemetry never breaks a turn, so failures show here.",
        ),
        g.panel(
            "timeseries",
            "Telemetry dropped",
            [
                g.target(
                    f"sum by (ragloop_telemetry_signal, ragloop_telemetry_reason) "
                    f"(rate({g.TELEMETRY_DROPPED}[{g.RATE}]))",
                    "{{ragloop_telemetry_signal}} {{ragloop_telemetry_reason}}",
                )
            ],
            w=12,
            h=6,
            unit="ops",
            description=(
                "Spans, log records and metric points the app's exporters gave up on, by reason "
                "(export_failed, circuit_open, queue_full): what an outage cost (ragloop.telemetry.dropped)."
            ),
        ),
        g.panel(
            "timeseries",
            "Outbox items by sink and status",
            [
                g.target(
                    f"sum by ({sc.OUTBOX_SINK}, {sc.OUTBOX_STATUS}) ({g.OUTBOX})",
                    f"{{{{{sc.OUTBOX_SINK}}}}} {{{{{sc.OUTBOX_STATUS}}}}}",
                )
            ],
            w=12,
            h=6,
            description="Deliveries to vendors (LangSmith, Arize, labeling): pending, delivered, dead "
            "(gave up: `ragloop outbox status`, `ragloop outbox retry`).",
        ),
    ]
    return g.dashboard(
        "ragloop-service",
        "ragloop / Service",
        "Traffic, errors and latency of the ragloop chat app.",
        panels,
        [],
    )


def llm_usage() -> dict[str, Any]:
    """Input/output tokens by model and the estimated cost from the price table."""
    sel = 'gen_ai_request_model=~"$model"'

    def tok(kind: str) -> str:
        sel_kind = f'{{{sel}, gen_ai_token_type="{kind}"}}'
        return f"sum by (gen_ai_request_model) (rate({g.TOKENS}_sum{sel_kind}[{g.RATE}]))"

    cost_range = f"sum(increase({g.COST}{{{sel}}}[$__range]))"
    panels = [
        g.row("Tokens"),
        g.panel(
            "stat",
            "Input tokens in range",
            [g.target(f'sum(increase({g.TOKENS}_sum{{{sel}, gen_ai_token_type="input"}}[$__range]))')],
            w=6,
            h=4,
        ),
        g.panel(
            "stat",
            "Output tokens in range",
            [g.target(f'sum(increase({g.TOKENS}_sum{{{sel}, gen_ai_token_type="output"}}[$__range]))')],
            w=6,
            h=4,
        ),
        g.panel(
            "stat",
            "Estimated cost in range",
            [g.target(cost_range)],
            w=6,
            h=4,
            unit="currencyUSD",
            description="From RAGLOOP_PRICES (USD per million input:output tokens).",
        ),
        g.panel(
            "stat",
            "Cost per turn",
            [g.target(f"{cost_range} / sum(increase({g.TURN}_count[$__range]))")],
            w=6,
            h=4,
            unit="currencyUSD",
        ),
        g.panel(
            "timeseries",
            "Input tokens/s by model",
            [g.target(tok("input"), "{{gen_ai_request_model}}")],
            unit="short",
        ),
        g.panel(
            "timeseries",
            "Output tokens/s by model",
            [g.target(tok("output"), "{{gen_ai_request_model}}")],
            unit="short",
        ),
        g.panel(
            "timeseries",
            "Tokens per call p95",
            g.quantiles(g.TOKENS, by="gen_ai_token_type", qs=(0.5, 0.95), sel=sel),
            unit="short",
            description="gen_ai.client.token.usage per LLM call, by token type.",
        ),
        g.panel(
            "timeseries",
            "Calls/s by model",
            [
                g.target(
                    f"sum by (gen_ai_request_model) "
                    f'(rate({g.TOKENS}_count{{{sel}, gen_ai_token_type="output"}}[{g.RATE}]))',
                    "{{gen_ai_request_model}}",
                )
            ],
            unit="ops",
        ),
        g.row("Cost"),
        g.panel(
            "timeseries",
            "Estimated cost per hour by model",
            [
                g.target(
                    f"sum by (gen_ai_request_model) (rate({g.COST}{{{sel}}}[{g.RATE}])) * 3600",
                    "{{gen_ai_request_model}}",
                )
            ],
            unit="currencyUSD",
        ),
        g.panel(
            "bargauge",
            "Estimated cost in range by model",
            [
                g.target(
                    f"sum by (gen_ai_request_model) (increase({g.COST}{{{sel}}}[$__range]))",
                    "{{gen_ai_request_model}}",
                    instant=True,
                )
            ],
            unit="currencyUSD",
        ),
    ]
    model = g.query_variable("model", "Model", f"label_values({g.TOKENS}_count, gen_ai_request_model)")
    return g.dashboard(
        "ragloop-llm", "ragloop / LLM usage", "Tokens and estimated cost per model.", panels, [model]
    )


def quality() -> dict[str, Any]:
    """Feedback, evaluation scores (faithfulness), retrieval top score and no-context share."""
    # Raters, not clicks: ratings given minus ratings changed or withdrawn (monitoring.semconv.M_FEEDBACK).
    fb = _alerts.ratings("$window")
    down = f"{_alerts.ratings('$window', sc.FEEDBACK_DOWN)} / {fb}"
    score = f'{sc.PROM_LABEL_SCORE_NAME}="$score"'
    low = (
        f'sum(rate({g.SCORE}_bucket{{{score}, le="0.5"}}[$window]))'
        f" / sum(rate({g.SCORE}_count{{{score}}}[$window]))"
    )
    no_ctx = (
        f'sum(rate({g.TURN}_count{{ragloop_turn_status="no_context"}}[$window]))'
        f" / sum(rate({g.TURN}_count[$window]))"
    )
    share = dict(unit="percentunit", defaults={"min": 0, "max": 1})
    panels = [
        g.row("User feedback"),
        g.panel(
            "stat",
            "Thumbs-down share",
            [g.target(down)],
            w=6,
            h=4,
            steps=g.thresholds((None, "green"), (0.2, "orange"), (0.3, "red")),
            **share,
        ),
        g.panel("stat", "Feedback in window", [g.target(fb)], w=6, h=4),
        g.panel(
            "stat",
            "Low-score share ($score < 0.5)",
            [g.target(low)],
            w=6,
            h=4,
            steps=g.thresholds((None, "green"), (0.2, "orange"), (0.4, "red")),
            **share,
        ),
        g.panel(
            "stat",
            "No-context share",
            [g.target(no_ctx)],
            w=6,
            h=4,
            description="Turns where retrieval found nothing relevant (status no_context).",
            **share,
        ),
        g.panel(
            "timeseries",
            "Feedback by value",
            [
                g.target(f"sum by (value) (rate({g.FEEDBACK}[{g.RATE}]))", "given {{value}}"),
                g.target(
                    f"sum by (value) (rate({g.FEEDBACK_RETRACTED}[{g.RATE}]))", "changed from {{value}}"
                ),
            ],
            unit="ops",
            description="Ratings by raters: a first rating is given; changing it retracts the old value.",
        ),
        g.panel("timeseries", "Thumbs-down share over $window", [g.target(down, "down share")], **share),
        g.row("Evaluation scores"),
        g.panel(
            "heatmap",
            "$score distribution",
            [
                g.target(
                    f"sum by (le) (increase({g.SCORE}_bucket{{{score}}}[{g.RATE}]))", "{{le}}", fmt="heatmap"
                )
            ],
            description="ragloop.eval.score histogram of the selected score (buckets 0.1 .. 1.0).",
        ),
        g.panel(
            "timeseries",
            "$score quantiles and low-score share",
            [*g.quantiles(g.SCORE, qs=(0.1, 0.5), sel=score), g.target(low, "share < 0.5")],
            unit="percentunit",
        ),
        g.panel(
            "timeseries",
            "Job gauges (evaluation, drift share ...)",
            [g.target(f"max by (ragloop_gauge_name) ({g.JOB_GAUGE})", "{{ragloop_gauge_name}}")],
            w=24,
            h=6,
            description="The ragloop.job.value gauge family set by evaluation jobs.",
        ),
        g.row("Retrieval"),
        g.panel(
            "heatmap",
            "Retrieval top score distribution",
            [g.target(f"sum by (le) (increase({g.TOP_SCORE}_bucket[{g.RATE}]))", "{{le}}", fmt="heatmap")],
        ),
        g.panel(
            "timeseries",
            "Retrieval top score",
            g.quantiles(g.TOP_SCORE, qs=(0.1, 0.5, 0.9)),
            unit="none",
            description="Best cosine similarity of each turn's retrieval.",
        ),
    ]
    variables = [
        g.query_variable(
            "score",
            "Score",
            f"label_values({g.SCORE}_count, {sc.PROM_LABEL_SCORE_NAME})",
            all_=False,
            default=sc.SCORE_FAITHFULNESS_ALERTED,
        ),
        g.interval_variable("window", "Share window", ["15m", "1h", "6h", "1d", "7d"], "1h"),
    ]
    return g.dashboard(
        "ragloop-quality",
        "ragloop / Quality",
        "User feedback, faithfulness and other evaluation scores, retrieval quality.",
        panels,
        variables,
    )


def drift() -> dict[str, Any]:
    """Drift statistic, threshold, p-value and alarm per target (embeddings, features)."""
    t = 'ragloop_drift_target=~"$target"'
    alarm_map = [
        {
            "type": "value",
            "options": {
                "0": {"text": "OK", "color": "green", "index": 0},
                "1": {"text": "DRIFT", "color": "red", "index": 1},
            },
        }
    ]
    red_at_1 = g.thresholds((None, "green"), (1, "red"))
    panels = [
        g.row("Last drift run"),
        g.panel(
            "stat",
            "Drift alarm (any target)",
            [g.target('max(ragloop_drift_alarm{ragloop_drift_target="any"})')],
            w=6,
            h=4,
            steps=red_at_1,
            mappings=alarm_map,
        ),
        g.panel(
            "stat",
            "Since last run",
            [g.target("time() - max(ragloop_drift_last_run_timestamp)")],
            w=6,
            h=4,
            unit="s",
            steps=g.thresholds((None, "green"), (86400 * 2, "red")),
        ),
        g.panel(
            "stat",
            "Turns compared",
            [g.target("max by (ragloop_drift_side) (ragloop_drift_window_rows)", "{{ragloop_drift_side}}")],
            w=6,
            h=4,
        ),
        g.panel(
            "stat",
            "Top query cluster excess share",
            [g.target("max(ragloop_drift_top_cluster_excess)")],
            w=6,
            h=4,
            unit="percentunit",
            description="Current-minus-reference share of the most over-represented query cluster.",
        ),
        g.panel(
            "state-timeline",
            "Alarm by target",
            [
                g.target(
                    f"max by (ragloop_drift_target) (ragloop_drift_alarm{{{t}}})", "{{ragloop_drift_target}}"
                )
            ],
            w=24,
            steps=red_at_1,
            mappings=alarm_map,
        ),
        g.row("Statistics"),
        g.panel(
            "timeseries",
            "Drift statistic vs threshold",
            [
                g.target(
                    f"max by (ragloop_drift_target) (ragloop_drift_statistic{{{t}}})",
                    "{{ragloop_drift_target}}",
                ),
                g.target(
                    f"max by (ragloop_drift_target) (ragloop_drift_threshold{{{t}}})",
                    "threshold {{ragloop_drift_target}}",
                ),
            ],
            description="-log10 of the smallest p-value; an alarm when above its calibrated threshold.",
        ),
        g.panel(
            "timeseries",
            "p-value by target",
            [
                g.target(
                    f"min by (ragloop_drift_target) (ragloop_drift_p_value{{{t}}})",
                    "{{ragloop_drift_target}}",
                )
            ],
            unit="none",
            defaults={"min": 0, "max": 1},
        ),
        g.panel(
            "table",
            "Per-feature p-values (last run)",
            [
                g.target(
                    "min by (ragloop_drift_target) "
                    '(ragloop_drift_p_value{ragloop_drift_target=~"feature:.*"})',
                    "{{ragloop_drift_target}}",
                    instant=True,
                    fmt="table",
                )
            ],
            w=24,
            steps=g.thresholds((None, "red"), (0.05, "green")),
            description="Multiplicity-adjusted p-values of each turn feature; red below alpha (0.05).",
        ),
        g.panel(
            "timeseries",
            "Insufficient data by target",
            [
                g.target(
                    f"max by (ragloop_drift_target) (ragloop_drift_insufficient_data{{{t}}})",
                    "{{ragloop_drift_target}}",
                )
            ],
            w=24,
            h=6,
            unit="none",
            description="1 when the last run had too few turns to decide a target (no alarm is raised then).",
        ),
    ]
    target_var = g.query_variable(
        "target", "Target", "label_values(ragloop_drift_p_value, ragloop_drift_target)"
    )
    return g.dashboard(
        "ragloop-drift",
        "ragloop / Drift",
        "Calibrated drift alarms on query and answer embeddings and turn features.",
        panels,
        [target_var],
    )


DASHBOARDS = {"service": service, "llm-usage": llm_usage, "quality": quality, "drift": drift}


def render(d: dict[str, Any]) -> str:
    """The committed text of a dashboard (stable formatting for diffs)."""
    return json.dumps(d, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) every dashboard JSON file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a committed file differs")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output folder (default: %(default)s)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    stale = []
    outputs = [(args.out / f"{name}.json", render(build())) for name, build in DASHBOARDS.items()]
    rules = RULES if args.out == OUT_DIR else args.out / RULES.name
    outputs.append((rules, _alerts.render()))
    for path, text in outputs:
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            path.write_text(text)
    if stale:
        hint = "run python grafana/build_dashboards.py"
        print(f"stale dashboards or rules ({hint}): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
