"""Building blocks of ragloop's Grafana dashboards: panels, targets, variables, layout (pure dicts)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from monitoring import semconv as sc

#: Dashboard JSON schema version of the Grafana release the compose file pins (@grafana/schema's).
SCHEMA_VERSION = 42
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
RATE = "$__rate_interval"
# Prometheus series names: the constants of monitoring/semconv.py (one source for code, dashboards, alerts).
HTTP = sc.PROM_HTTP_DURATION
TURN = sc.PROM_TURN_DURATION
TTFT = sc.PROM_TTFT
RETRIEVAL = sc.PROM_RETRIEVAL_DURATION
TOKENS = sc.PROM_TOKEN_USAGE
COST = sc.PROM_COST
FEEDBACK = sc.PROM_FEEDBACK
FEEDBACK_RETRACTED = sc.PROM_FEEDBACK_RETRACTED
TOP_SCORE = sc.PROM_TOP_SCORE
SCORE = sc.PROM_SCORE
JOB_GAUGE = sc.PROM_JOB_GAUGE
EXPORT_ERRORS = sc.PROM_EXPORT_ERRORS
TELEMETRY_DROPPED = sc.PROM_TELEMETRY_DROPPED
OUTBOX = sc.PROM_OUTBOX_ITEMS
ERR = f'{sc.PROM_LABEL_STATUS}=~"5.."'


# --- building blocks ----------------------------------------------------------------------------
def target(expr: str, legend: str = "", *, instant: bool = False, fmt: str | None = None) -> dict[str, Any]:
    """A Prometheus query of a panel (refIds are assigned by :func:`panel`)."""
    t: dict[str, Any] = {"datasource": DS, "expr": expr, "legendFormat": legend or "__auto"}
    t["range"], t["instant"] = (False, True) if instant else (True, False)
    if fmt:
        t["format"] = fmt
    return t


def quantiles(
    metric: str, by: str = "", qs: Iterable[float] = (0.5, 0.95, 0.99), sel: str = ""
) -> list[dict]:
    """``histogram_quantile`` targets (p50/p95/p99) over a histogram's buckets."""
    group = f"le, {by}" if by else "le"
    out = []
    for q in qs:
        legend = f"p{round(q * 100)}" + (f" {{{{{by}}}}}" if by else "")
        matchers = f"{{{sel}}}" if sel else ""
        expr = f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket{matchers}[{RATE}])))"
        out.append(target(expr, legend))
    return out


def thresholds(*steps: tuple[float | None, str]) -> dict[str, Any]:
    """Absolute thresholds: ``(None, "green"), (0.05, "red")``."""
    return {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}


GREEN = thresholds((None, "green"))


def panel(
    kind: str,
    title: str,
    targets: list[dict[str, Any]],
    *,
    w: int = 12,
    h: int = 8,
    unit: str = "short",
    description: str = "",
    steps: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A panel of ``kind`` (timeseries, stat, heatmap, table, state-timeline, bargauge)."""
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    defaults: dict[str, Any] = {
        "unit": unit,
        "thresholds": steps or GREEN,
        "mappings": extra.pop("mappings", []),
    }
    defaults.update(extra.pop("defaults", {}))
    if kind == "timeseries":
        defaults.setdefault("color", {"mode": "palette-classic"})
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never"}
    p: dict[str, Any] = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "gridPos": {"h": h, "w": w, "x": 0, "y": 0},
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": extra.pop("options", None) or _options(kind),
    }
    p.update(extra)
    return p


def _options(kind: str) -> dict[str, Any]:
    """Panel options, type-checked per plugin by grafana/validate/check.py."""
    legend = {"calcs": [], "displayMode": "list", "placement": "bottom", "showLegend": True}
    reduce = {"calcs": ["lastNotNull"], "fields": "", "values": False}
    if kind == "timeseries":
        return {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        return {"reduceOptions": reduce, "colorMode": "value", "graphMode": "area", "orientation": "auto"}
    if kind == "bargauge":
        return {
            "reduceOptions": reduce,
            "displayMode": "gradient",
            "orientation": "horizontal",
            "showUnfilled": True,
        }
    if kind == "state-timeline":
        return {"legend": legend, "showValue": "auto", "mergeValues": True, "rowHeight": 0.9}
    if kind == "heatmap":
        color = {"mode": "scheme", "scheme": "Oranges", "steps": 64, "exponent": 0.5, "fill": "dark-orange"}
        return {
            "calculate": False,
            "yAxis": {"axisPlacement": "left"},
            "color": {**color, "reverse": False},
            "cellGap": 1,
            "tooltip": {"mode": "single", "yHistogram": True},
        }
    return {"showHeader": True}


def row(title: str) -> dict[str, Any]:
    """A (non-collapsed) row header spanning the dashboard."""
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "panels": [],
        "gridPos": {"h": 1, "w": 24, "x": 0, "y": 0},
    }


def layout(panels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Place panels left to right, wrapping at Grafana's 24 columns, and number them."""
    x = y = line_h = 0
    for i, p in enumerate(panels, start=1):
        pos = p["gridPos"]
        if x + pos["w"] > 24 or p["type"] == "row":
            x, y, line_h = 0, y + line_h, 0
        pos["x"], pos["y"] = x, y
        x, line_h = x + pos["w"], max(line_h, pos["h"])
        p["id"] = i
    return panels


def ds_variable() -> dict[str, Any]:
    """The Prometheus datasource variable every panel uses (``${DS_PROMETHEUS}``)."""
    return {
        "name": "DS_PROMETHEUS",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        "current": {"text": "Prometheus", "value": "prometheus"},
        "hide": 0,
        "refresh": 1,
    }


def query_variable(
    name: str, label: str, query: str, *, all_: bool = True, default: str = ""
) -> dict[str, Any]:
    """A variable filled from ``label_values(...)``; with ``all_`` the All value matches everything."""
    v: dict[str, Any] = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "query": query,
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "includeAll": all_,
        "multi": all_,
    }
    if all_:
        v["allValue"] = ".*"
        v["current"] = {"text": "All", "value": "$__all"}
    else:
        v["current"] = {"text": default, "value": default}
    return v


def interval_variable(name: str, label: str, values: list[str], default: str) -> dict[str, Any]:
    """A fixed list of window lengths (shares over a window, not per scrape)."""
    return {
        "name": name,
        "label": label,
        "type": "interval",
        "query": ",".join(values),
        "current": {"text": default, "value": default},
        "options": [{"text": v, "value": v, "selected": v == default} for v in values],
        "hide": 0,
        "refresh": 2,
    }


def dashboard(uid: str, title: str, description: str, panels: list, variables: list) -> dict[str, Any]:
    """A complete dashboard: provisioned from a file, linked to its siblings by the ``ragloop`` tag."""
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["ragloop"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "30s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "links": [
            {
                "title": "ragloop",
                "type": "dashboards",
                "tags": ["ragloop"],
                "asDropdown": True,
                "icon": "external link",
                "includeVars": False,
                "keepTime": True,
                "targetBlank": False,
                "tooltip": "Other ragloop dashboards",
            }
        ],
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "templating": {"list": [ds_variable(), *variables]},
        "panels": layout(panels),
    }
