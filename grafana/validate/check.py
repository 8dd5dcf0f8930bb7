"""Validate ragloop's Grafana dashboards and Prometheus alert rules without a Grafana server.

Checks, each with the vendor's own tool where one exists:

1. every dashboard type-checks as ``Dashboard`` from ``@grafana/schema`` (``tsc --strict``), and each
   panel's options and custom field config as its panel plugin's ``Options``/``FieldConfig``;
2. top-level keys are the ones the ``Dashboard`` interface declares; panel ids, refIds and
   grid positions are consistent; every panel uses the ``${DS_PROMETHEUS}`` variable;
3. every PromQL expression (dashboards, with template variables substituted, and alert rules)
   parses: ``promtool check rules`` on generated recording rules, and the alert rules'
   ``promtool test rules`` unit tests pass;
4. every metric and label name used exists in the real Prometheus exposition of the app's metrics
   (:mod:`exposition`: the real telemetry fed one turn of each kind).

``python grafana/validate/check.py`` runs all of them (``make grafana-validate``); the pytest
suite (``tests/test_grafana.py``) calls the same functions and also runs every query against a
real Prometheus scraping the app.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

log = logging.getLogger("grafana.validate")

VALIDATE_DIR = Path(__file__).resolve().parent
GRAFANA_DIR = VALIDATE_DIR.parent
DASHBOARD_DIR = GRAFANA_DIR / "dashboards"
ALERT_RULES = GRAFANA_DIR / "alerts" / "ragloop.rules.yml"
ALERT_TESTS = sorted((GRAFANA_DIR / "alerts").glob("*.test.yml"))
SCHEMA_DTS = VALIDATE_DIR / "node_modules/@grafana/schema/dist/types/raw/dashboard/x/types.gen.d.ts"
GENERATED = VALIDATE_DIR / "generated"

#: JSON positions whose strings are TypeScript string enums in @grafana/schema. Grafana stores them
#: as plain strings, but a string literal is not assignable to an enum type, so the generated .ts
#: names the enum member; a value that is not a member stays a literal and fails the type check.
#: ``*`` matches any key or list index; ``heatmap.`` enums live in that panel's module.
ENUM_PATHS = {
    ("thresholds", "mode"): "ThresholdsMode",
    ("mappings", "*", "type"): "MappingType",
    ("mappings", "*", "options", "match"): "SpecialValueMatch",
    ("defaults", "color", "mode"): "FieldColorModeId",
    ("options", "legend", "displayMode"): "LegendDisplayMode",
    ("options", "tooltip", "mode"): "TooltipDisplayMode",
    ("options", "tooltip", "sort"): "SortOrder",
    ("options", "orientation"): "VizOrientation",
    ("options", "colorMode"): "BigValueColorMode",
    ("options", "graphMode"): "BigValueGraphMode",
    ("options", "justifyMode"): "BigValueJustifyMode",
    ("options", "textMode"): "BigValueTextMode",
    ("options", "showValue"): "VisibilityMode",
    ("options", "color", "mode"): "heatmap.HeatmapColorMode",
    ("options", "color", "scale"): "heatmap.HeatmapColorScale",
    ("options", "displayMode"): "BarGaugeDisplayMode",
    ("options", "valueMode"): "BarGaugeValueMode",
    ("yAxis", "axisPlacement"): "AxisPlacement",
    ("custom", "drawStyle"): "GraphDrawStyle",
    ("custom", "showPoints"): "VisibilityMode",
    ("custom", "lineInterpolation"): "LineInterpolation",
    ("custom", "gradientMode"): "GraphGradientMode",
}
#: Panel plugin -> its options module in @grafana/schema (``<dir>/panelcfg/x/<Name>PanelCfg_types.gen``).
PANEL_MODULES = {
    "timeseries": ("timeseries", "TimeSeries"),
    "stat": ("stat", "Stat"),
    "bargauge": ("bargauge", "BarGauge"),
    "heatmap": ("heatmap", "Heatmap"),
    "table": ("table", "Table"),
    "state-timeline": ("statetimeline", "StateTimeline"),
}
SCHEMA_TYPES = VALIDATE_DIR / "node_modules/@grafana/schema/dist/types"
#: Values given to Grafana's built-in variables when an expression is checked.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}
PROMQL_KEYWORDS |= {"and", "or", "unless", "inf", "nan", "atan2"}


# --- loading ------------------------------------------------------------------------------------
def load_dashboards(folder: Path = DASHBOARD_DIR) -> dict[str, dict[str, Any]]:
    """Every ``*.json`` dashboard in ``folder`` by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))}


def ensure_node_modules() -> None:
    """Install the pinned npm packages (``npm ci``) when node_modules is missing.

    Raises:
        RuntimeError: node or npm is not installed, or ``npm ci`` failed.
    """
    if SCHEMA_DTS.exists():
        return
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise RuntimeError(
            "node and npm are needed to validate the Grafana dashboards: "
            "`apt-get install nodejs npm`, then `make grafana-validate`"
        )
    log.info("installing @grafana/schema and typescript (npm ci in %s)", VALIDATE_DIR)
    proc = subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"], cwd=VALIDATE_DIR, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"npm ci failed in {VALIDATE_DIR}:\n{proc.stdout}\n{proc.stderr}")


# --- TypeScript ---------------------------------------------------------------------------------
def parse_enums(dts: str, prefix: str = "") -> dict[str, dict[str, str]]:
    """``{prefix + enum name: {string value: member}}`` of the string enums in a .d.ts text."""
    enums: dict[str, dict[str, str]] = {}
    for name, body in re.findall(r"export declare enum (\w+) \{(.*?)\}", dts, flags=re.S):
        enums[prefix + name] = {value: member for member, value in re.findall(r'(\w+) = "([^"]*)"', body)}
    return enums


def _module_dts(panel_dir: str) -> Path:
    return SCHEMA_TYPES / "raw" / "composable" / panel_dir / "panelcfg" / "x" / "types.gen.d.ts"


def schema_enums() -> dict[str, dict[str, str]]:
    """Every string enum a dashboard may use: dashboard, common, and each panel module's (prefixed)."""
    enums = parse_enums(SCHEMA_DTS.read_text())
    enums.update(parse_enums((SCHEMA_TYPES / "common" / "common.gen.d.ts").read_text()))
    for panel_dir, _ in PANEL_MODULES.values():
        enums.update(parse_enums(_module_dts(panel_dir).read_text(), prefix=f"{panel_dir}."))
    return enums


def interface_keys(dts: str, interface: str = "Dashboard") -> set[str]:
    """The top-level property names of ``export interface <interface>`` in a .d.ts text."""
    match = re.search(rf"export interface {interface} \{{\n(.*?)\n\}}", dts, flags=re.S)
    if match is None:
        raise ValueError(f"interface {interface} not found in the @grafana/schema types")
    return set(re.findall(r"^    (\w+)\??:", match.group(1), flags=re.M))


def _enum_for(path: tuple[str, ...]) -> str | None:
    for pattern, enum in ENUM_PATHS.items():
        tail = path[-len(pattern) :]
        if len(tail) == len(pattern) and all(p in ("*", t) for p, t in zip(pattern, tail, strict=True)):
            return enum
    return None


def to_ts(value: Any, enums: dict[str, dict[str, str]], path: tuple[str, ...] = ()) -> str:
    """A TypeScript expression for a JSON value, with enum-typed strings as enum members."""
    if isinstance(value, dict):
        items = (f"{json.dumps(k)}: {to_ts(v, enums, (*path, k))}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(to_ts(v, enums, (*path, "*")) for v in value) + "]"
    enum = _enum_for(path) if isinstance(value, str) else None
    if enum and value in enums.get(enum, {}):
        qualified = enum if "." in enum else f"schema.{enum}"
        return f"{qualified}.{enums[enum][value]}"
    return json.dumps(value)


def _panel_declarations(dash: dict[str, Any], enums: dict[str, dict[str, str]]) -> list[str]:
    """Each panel's options (and custom field config) typed by its panel plugin's schema module."""
    out = []
    for p in _panels(dash):
        if p.get("type") not in PANEL_MODULES:
            continue
        ns = PANEL_MODULES[p["type"]][0]
        # Partial: Grafana fills missing top-level options with the plugin's defaults.
        options = to_ts(p.get("options", {}), enums, ("options",))
        out.append(f"export const p{p['id']}Options: Partial<{ns}.Options> = {options};")
        custom = p.get("fieldConfig", {}).get("defaults", {}).get("custom")
        if custom is not None and "export interface FieldConfig " in _module_dts(ns).read_text():
            typed = to_ts(custom, enums, ("custom",))
            out.append(f"export const p{p['id']}Custom: Partial<{ns}.FieldConfig> = {typed};")
    return out


def write_ts(dashboards: dict[str, dict[str, Any]], enums: dict[str, dict[str, str]]) -> list[Path]:
    """One ``generated/<name>.ts`` per dashboard: it as a ``Dashboard``, its panels' options typed."""
    shutil.rmtree(GENERATED, ignore_errors=True)
    GENERATED.mkdir()
    imports = ['import * as schema from "@grafana/schema";']
    for ns, name in PANEL_MODULES.values():
        path = f"@grafana/schema/dist/esm/raw/composable/{ns}/panelcfg/x/{name}PanelCfg_types.gen"
        imports.append(f'import * as {ns} from "{path}";')
    paths = []
    for name, dash in dashboards.items():
        path = GENERATED / f"{re.sub(r'[^A-Za-z0-9_]', '_', name)}.ts"
        lines = [*imports, f"export const dashboard: schema.Dashboard = {to_ts(dash, enums)};"]
        path.write_text("\n".join(lines + _panel_declarations(dash, enums)) + "\n")
        paths.append(path)
    return paths


def run_tsc() -> subprocess.CompletedProcess[str]:
    """``tsc -p tsconfig.json`` (strict, no emit) over the generated files."""
    tsc = VALIDATE_DIR / "node_modules" / ".bin" / "tsc"
    return subprocess.run([str(tsc), "-p", "tsconfig.json"], cwd=VALIDATE_DIR, capture_output=True, text=True)


def typecheck(dashboards: dict[str, dict[str, Any]]) -> list[str]:
    """Type errors of the dashboards against @grafana/schema (empty when they type-check)."""
    ensure_node_modules()
    write_ts(dashboards, schema_enums())
    proc = run_tsc()
    if proc.returncode == 0:
        return []
    return [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()] or ["tsc failed"]


# --- structure ----------------------------------------------------------------------------------
def top_level_errors(dash: dict[str, Any], allowed: set[str]) -> list[str]:
    """Keys the ``Dashboard`` interface does not declare (Grafana would drop them silently)."""
    return [f"unknown top-level key {k!r}" for k in sorted(set(dash) - allowed)]


def _panels(dash: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in dash.get("panels", []):
        out.append(p)
        out.extend(p.get("panels", []))
    return out


def layout_errors(dash: dict[str, Any]) -> list[str]:
    """Duplicate ids or refIds, panels off the 24-column grid or overlapping, unknown datasources."""
    errors: list[str] = []
    panels = _panels(dash)
    ids = [p.get("id") for p in panels]
    errors += [f"duplicate panel id {i}" for i in sorted({i for i in ids if ids.count(i) > 1})]
    variables = {v["name"] for v in dash.get("templating", {}).get("list", [])}
    cells: dict[tuple[int, int], str] = {}
    for p in panels:
        g, title = p["gridPos"], p.get("title", "?")
        if g["x"] < 0 or g["x"] + g["w"] > 24:
            errors.append(f"{title}: gridPos outside the 24 columns")
        for cell in ((x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])):
            if cell in cells:
                errors.append(f"{title}: overlaps {cells[cell]}")
                break
            cells[cell] = title
        refs = [t.get("refId") for t in p.get("targets", [])]
        if len(refs) != len(set(refs)):
            errors.append(f"{title}: duplicate refId")
        for ds in [p.get("datasource"), *(t.get("datasource") for t in p.get("targets", []))]:
            uid = (ds or {}).get("uid", "")
            if p["type"] != "row" and uid.startswith("${") and uid[2:-1] not in variables:
                errors.append(f"{title}: datasource {uid} is not a dashboard variable")
    return errors


# --- PromQL -------------------------------------------------------------------------------------
def variable_values(dash: dict[str, Any]) -> dict[str, str]:
    """Each template variable's current value (All is ``.*``), plus Grafana's built-ins."""
    values = dict(BUILTIN_VARIABLES)
    for v in dash.get("templating", {}).get("list", []):
        current = v.get("current", {}).get("value", "")
        values[v["name"]] = ".*" if current == "$__all" else str(current)
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    """Replace ``$name`` and ``${name}`` references with concrete values."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise KeyError(f"undefined variable ${name} in {expr!r}")
        return values[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


def expressions(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """``(panel title, concrete PromQL)`` of every target in a dashboard."""
    values = variable_values(dash)
    return [
        (substitute(p.get("title", "?"), values), substitute(t["expr"], values))
        for p in _panels(dash)
        for t in p.get("targets", [])
        if "expr" in t
    ]


def variable_queries(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """``(metric, label)`` of each ``label_values(metric, label)`` variable query."""
    out = []
    for v in dash.get("templating", {}).get("list", []):
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", str(v.get("query", "")))
        if v.get("type") == "query" and m:
            out.append((m.group(1), m.group(2)))
    return out


def _strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names(expr: str) -> set[str]:
    """Metric names selected by a PromQL expression (not functions, keywords or label names)."""
    text = _strip_strings(expr)
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][\w:]*)\s*(\()?", text):
        word, call = m.group(1), m.group(2)
        if not call and word.lower() not in PROMQL_KEYWORDS and not re.fullmatch(r"\d+[smhdwy]", word):
            names.add(word)
    return names


def label_names(expr: str) -> set[str]:
    """Label names used in matchers and in ``by``/``without``/``on``/``ignoring`` lists."""
    text = _strip_strings(expr)
    labels = set()
    for body in re.findall(r"\{([^}]*)\}", text):
        labels |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body))
    for body in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        labels |= {w.strip() for w in body.split(",") if w.strip()}
    return labels


def selectors(expr: str) -> list[tuple[str, set[str]]]:
    """``(metric, label names in its matchers)`` of each ``metric{...}`` selector."""
    text = _strip_strings(expr)
    return [
        (metric, set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)", body)))
        for metric, body in re.findall(r"([a-zA-Z_:][\w:]*)\{([^}]*)\}", text)
    ]


def alert_rules(path: Path = ALERT_RULES) -> list[tuple[str, str]]:
    """``(alert name, expression)`` of every rule in a Prometheus rule file."""
    import yaml

    groups = yaml.safe_load(path.read_text())["groups"]
    return [(r.get("alert") or r.get("record"), r["expr"]) for g in groups for r in g["rules"]]


def recording_rules_yaml(exprs: list[tuple[str, str]]) -> str:
    """A rule file recording each expression, so ``promtool check rules`` parses them all."""
    rules = [{"record": f"ragloop:check:{i}", "expr": expr} for i, (_, expr) in enumerate(exprs)]
    return json.dumps({"groups": [{"name": "dashboards", "rules": rules}]}, indent=1)


def promtool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run Debian's ``promtool`` (package prometheus)."""
    exe = shutil.which("promtool")
    if exe is None:
        raise RuntimeError("promtool is missing: `make system-deps` (Debian package prometheus)")
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, cwd=cwd)


def promql_errors(exprs: list[tuple[str, str]]) -> list[str]:
    """Promtool's parse errors for the expressions (empty when all parse)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "dashboards.rules.yml"
        path.write_text(recording_rules_yaml(exprs))
        proc = promtool("check", "rules", path)
    return [] if proc.returncode == 0 else [proc.stdout + proc.stderr]


def alert_rule_errors() -> list[str]:
    """``promtool check rules`` and ``promtool test rules`` on the alert rules."""
    errors = []
    for args in (("check", "rules", ALERT_RULES.name), ("test", "rules", *(p.name for p in ALERT_TESTS))):
        proc = promtool(*args, cwd=ALERT_RULES.parent)
        if proc.returncode != 0:
            errors.append(f"promtool {' '.join(args)}:\n{proc.stdout}{proc.stderr}")
    return errors


def name_errors(used: list[tuple[str, str]], series: dict[str, set[str]]) -> list[str]:
    """Metric or label names an expression uses that the exposition lacks.

    Args:
        used: ``(where, PromQL)`` pairs.
        series: exposed sample name -> the label names seen on it.
    """
    every_label = set().union(*series.values()) | {"le", "__name__"} if series else set()
    errors = []
    for where, expr in used:
        for name in sorted(metric_names(expr) - set(series)):
            errors.append(f"{where}: metric {name} is not exposed")
        for label in sorted(label_names(expr) - every_label):
            errors.append(f"{where}: label {label} is not exposed")
        for metric, labels in selectors(expr):
            for label in sorted(labels - series.get(metric, labels) - {"le"}):
                errors.append(f"{where}: {metric} has no label {label}")
    return errors


# --- all checks ---------------------------------------------------------------------------------
def dashboard_errors(dashboards: dict[str, dict[str, Any]], allowed: set[str]) -> list[str]:
    """Top-level key and layout errors of every dashboard, prefixed with its name."""
    return [
        f"{name}: {e}"
        for name, d in dashboards.items()
        for e in top_level_errors(d, allowed) + layout_errors(d)
    ]


def used_expressions(dashboards: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """``(where, PromQL)`` of every dashboard target and alert rule; variable queries as selectors."""
    used = [(f"{name} / {title}", expr) for name, d in dashboards.items() for title, expr in expressions(d)]
    for name, d in dashboards.items():
        used += [
            (f"{name} / variable", f"count by ({label}) ({metric})") for metric, label in variable_queries(d)
        ]
    used += [(f"alert {name}", expr) for name, expr in alert_rules()]
    return used


def run_all(with_exposition: bool = True) -> list[str]:
    """Every check; returns the problems found (empty: all good)."""
    dashboards = load_dashboards()
    ensure_node_modules()
    errors = typecheck(dashboards)
    errors += dashboard_errors(dashboards, interface_keys(SCHEMA_DTS.read_text()))
    used = used_expressions(dashboards)
    errors += promql_errors(used) + alert_rule_errors()
    if with_exposition:
        sys.path.insert(0, str(VALIDATE_DIR))
        from exposition import exposition, series_labels

        errors += name_errors(used, series_labels(exposition()))
    return errors


def main(argv: list[str] | None = None) -> int:
    """Command line: run every check, print the problems, exit 1 if any."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--no-exposition", action="store_true", help="skip the metric-name check (needs the app venv)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    errors = run_all(with_exposition=not args.no_exposition)
    for e in errors:
        print(e, file=sys.stderr)
    n = len(load_dashboards())
    print(
        f"{n} dashboards, {len(alert_rules())} alert rules: "
        + (f"{len(errors)} problems" if errors else "OK")
    )
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
