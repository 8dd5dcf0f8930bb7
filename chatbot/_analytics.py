"""The analytics tab: feedback, quality, refusals, latency, cost, drift and the labeling queue, with plots.

For the people who never open Grafana. The figures come from :mod:`monitoring._analytics` (SQL
aggregates over the chat log); this module turns them into pandas frames for Gradio's native plots,
tables and one Markdown summary. The tab loads nothing until it is opened (its ``select`` event),
and again on "Refresh" or a new window. With ``is_admin`` given (authentication on) it is hidden
from everyone else, and its handlers refuse non-admins too (a hidden tab's events can still be
called through the API).

Free text is private: aggregate figures (counts, shares, latency, cost, drift status) are global,
but comments, refused questions and drift example questions are everyone's only for an admin.
With authentication off there is no admin, so each viewer sees only their own text (their
owner id, the one the history sidebar lists conversations by: ``chatbot._auth.current_user``).

Mount it inside the chat UI's ``gr.Blocks`` (in a ``gr.Tabs``)::

    build_analytics_tab(chatlog, settings, is_admin=lambda request: current_user(request).is_admin)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from chatlog import ChatLog
from monitoring._analytics import BIN_EDGES, Analytics, Window, load_analytics
from monitoring._attributes import parse_prices
from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: The windows offered, in days.
WINDOW_DAYS = (7, 30, 90)
NOT_LOADED = "*Open this tab to load the analytics.*"
REFUSED = "**Analytics is for administrators.** Sign in with an admin account to see it."
_TABLE_CHARS = 160


@dataclass
class AnalyticsTab:
    """The mounted tab and what its handlers fill (the benchmark renders through it too).

    Attributes:
        tab: the ``gr.Tab``.
        outputs: the components one load fills, in :func:`render_values` order.
        refresh: the "Refresh" button.
        days: the window selector.
        load: the handler ``(days, request) -> values`` (checks the caller is allowed).
    """

    tab: gr.Tab
    outputs: list[gr.components.Component]
    refresh: gr.Button
    days: gr.Dropdown
    load: Callable[..., list[Any]]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ms(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f} ms"


def _cut(text: Any) -> str:
    s = " ".join(str(text or "").split())
    return s if len(s) <= _TABLE_CHARS else s[: _TABLE_CHARS - 1] + "…"


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def summary_markdown(a: Analytics) -> str:
    """The headline numbers of ``a`` as a Markdown table (the figures a reader looks for first)."""
    t = a.totals()
    fb = a.feedback
    local = a.faithfulness[0] if a.faithfulness else None
    drift = a.drift["status"] if a.drift else "no run yet"
    lab = a.labeling
    inj = a.injections or {}
    rows = [
        ("Turns", f"{t['turns']:,}"),
        ("Rejected requests (bad input)", f"{t.get('rejected', 0):,}"),
        ("Thumbs up / down", f"{fb['up']:,} / {fb['down']:,} ({_pct(fb['up_share'])} up)"),
        (
            "Low faithfulness",
            f"{_pct(local['low_share'])} of {local['n']:,} scored "
            f"({local['evaluator']} < {local['threshold']:g})"
            if local
            else "no scores yet",
        ),
        ("Refusals", f"{t['refused']:,} ({_pct(t['refusal_share'])} of answered or refused)"),
        ("Latency p50 / p95", f"{_ms(a.latency.p50)} / {_ms(a.latency.p95)}"),
        ("Time to first token p50 / p95", f"{_ms(a.ttft.p50)} / {_ms(a.ttft.p95)}"),
        ("Tokens in / out", f"{t['input_tokens']:,} / {t['output_tokens']:,}"),
        (
            "Estimated cost",
            f"${t['cost_usd']:,.4f}"
            + (f" ({t['unknown_usage']:,} turns without usage)" if t["unknown_usage"] else ""),
        ),
        ("Drift", drift),
        (
            "Prompt injection in passages",
            f"{inj['turns']:,} flagged ({_pct(inj.get('share'))} of turns); each is a labeling candidate"
            if inj.get("turns")
            else "none flagged",
        ),
        (
            "Labeling queue",
            f"{_plural(lab.get('pending', 0), 'pair')} waiting for a label "
            f"({lab.get('labeled', 0):,} labeled)",
        ),
    ]
    since, until = a.window.since.date().isoformat(), a.window.until.date().isoformat()
    lines = [f"**{since} to {until}** (UTC days)", "", "| Measure | Value |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines)


def drift_markdown(a: Analytics) -> str:
    """The newest drift run in words: status, windows, p-values."""
    run = a.drift
    if run is None:
        return "**Drift:** no drift run yet (`ragloop drift run`)."
    parts = [f"**Drift: {run['status']}** (run of {run['created_at']:%Y-%m-%d %H:%M} UTC"]
    if run.get("n_current") is not None:
        parts.append(f", {run['n_current']:,} current vs {run.get('n_reference') or 0:,} reference turns")
    parts.append(")")
    p = [(k, run.get(f"{k}_p_value")) for k in ("query", "answer", "features")]
    shown = ", ".join(f"{k} p = {v:.3g}" for k, v in p if v is not None)
    if shown:
        parts.append(f"  \n{shown}")
    if run.get("insufficient"):
        parts.append(f"  \nNot enough data for: {', '.join(run['insufficient'])}")
    return "".join(parts)


def _days(rows: list[dict[str, Any]], columns: dict[str, str], var: str, value: str) -> pd.DataFrame:
    """Long frame ``day, <var>, <value>`` of the daily ``rows`` columns renamed by ``columns``."""
    frame = pd.DataFrame(rows or [], columns=["day", *columns])
    frame["day"] = pd.to_datetime(frame["day"])
    out = frame.rename(columns=columns).melt(id_vars="day", var_name=var, value_name=value)
    return out.dropna(subset=[value])


def render_values(a: Analytics, *, own_only: bool = False) -> list[Any]:
    """Every output's value for ``a``, in :attr:`AnalyticsTab.outputs` order.

    ``own_only``: ``a`` holds only the viewer's own free text (the tables' labels say so).
    """
    turns = _days(
        a.turns_per_day, {"ok": "answered", "refused": "refused", "errors": "error"}, "outcome", "turns"
    )
    thumbs = _days(a.feedback_per_day, {"up": "thumbs up", "down": "thumbs down"}, "thumb", "ratings")
    labels = [f"{lo:.1f}-{hi:.1f}" for lo, hi in zip((0.0, *BIN_EDGES[:-1]), BIN_EDGES, strict=True)]
    faith = pd.DataFrame(
        [
            {"score": labels[i], "evaluator": f["evaluator"], "turns": n}
            for f in a.faithfulness
            for i, n in enumerate(f["bins"])
        ],
        columns=["score", "evaluator", "turns"],
    )
    series = {
        "total_p50": "latency p50",
        "total_p95": "latency p95",
        "ttft_p50": "first token p50",
        "ttft_p95": "first token p95",
    }
    latency = _days(a.latency_per_day, series, "series", "ms")
    top = float(latency["ms"].max()) if len(latency) else 0.0
    # From zero with headroom: points at the edges of a data-fitted axis were cut in half.
    latency_plot = gr.ScatterPlot(latency, y_lim=[0, top * 1.15 if top > 0 else 1.0])
    tokens = _days(a.usage_per_day, {"input_tokens": "input", "output_tokens": "output"}, "kind", "tokens")
    cost = _days(a.usage_per_day, {"cost_usd": "cost"}, "kind", "usd")
    comments = pd.DataFrame(
        [
            {
                "when": f"{c['at']:%Y-%m-%d %H:%M}",
                "thumb": "up" if c["value"] > 0 else "down",
                "comment": _cut(c["comment"]),
                "question": _cut(c["question"]),
            }
            for c in a.comments
        ],
        columns=["when", "thumb", "comment", "question"],
    )
    refused = pd.DataFrame(
        [
            {"times": r["count"], "question": _cut(r["question"]), "last": f"{r['last']:%Y-%m-%d}"}
            for r in a.refused
        ],
        columns=["times", "question", "last"],
    )
    clusters = pd.DataFrame(
        [
            {
                "rank": c["rank"],
                "size": c["size"],
                "share now": _pct(c["current_share"]),
                "share before": _pct(c["reference_share"]),
                "excess": _pct(c["excess"]),
                "example questions": _cut(" | ".join(c["examples"][:3])),
            }
            for c in a.drift_clusters
        ],
        columns=["rank", "size", "share now", "share before", "excess", "example questions"],
    )
    t = a.totals()
    status = f"Loaded {_plural(t['turns'], 'turn')}" + (
        f" and {_plural(t['rejected'], 'rejected request')}." if t.get("rejected") else "."
    )

    def labelled(frame: pd.DataFrame, own_label: str) -> Any:
        # A viewer who sees only their own text is told so in the table's label.
        return gr.Dataframe(frame, label=own_label) if own_only else frame

    return [
        status,
        summary_markdown(a),
        turns,
        thumbs,
        labelled(comments, "Your recent comments (figures above are everyone's)"),
        faith,
        labelled(refused, "Your most refused questions"),
        latency_plot,
        tokens,
        cost,
        drift_markdown(a),
        labelled(clusters, "Drift: top clusters (example questions: only yours)"),
    ]


def _allowed(is_admin: Callable[[Any], bool] | None, request: Any) -> bool:
    if is_admin is None:
        return True
    try:
        return bool(is_admin(request))
    except Exception:  # noqa: BLE001 - an auth failure shows nothing rather than everything
        log.exception("the admin check failed: analytics stays hidden")
        return False


def text_owner(is_admin: Callable[[Any], bool] | None, request: Any) -> str | None:
    """Whose free text a viewer may see: None (everyone's) for an admin, else their own user id.

    With authentication off (``is_admin`` None) nobody is an admin: every viewer gets their own
    id (the anonymous cookie id the history sidebar uses).
    """
    if is_admin is not None and _allowed(is_admin, request):
        return None
    from chatbot._auth import current_user

    return current_user(request).id


def admin_check(settings: Settings) -> Callable[[Any], bool] | None:
    """``request -> is the user an admin`` when authentication is on; None when it is off."""
    from chatbot._auth import AuthConfig, current_user

    if not AuthConfig.from_settings(settings).enabled:
        return None
    return lambda request: current_user(request).is_admin


def build_analytics_tab(
    chatlog: ChatLog,
    settings: Settings,
    *,
    is_admin: Callable[[Any], bool] | None = None,
    days: int = 30,
    blocks: gr.Blocks | None = None,
) -> AnalyticsTab:
    """Add the analytics tab to the ``gr.Blocks`` (and ``gr.Tabs``) being built.

    Args:
        chatlog: the chat log to read (its engine; nothing is written).
        settings: the price table (RAGLOOP_PRICES) and faithfulness threshold
            (RAGLOOP_FAITHFULNESS_THRESHOLD).
        is_admin: ``gr.Request -> bool``: the tab is shown to, and loads for, those it accepts.
            None: decided by the settings: with authentication on (RAGLOOP_AUTH_USERS or
            RAGLOOP_AUTH_TOKENS), admins only (RAGLOOP_ADMIN_USERS, through
            ``chatbot._auth.current_user``); with it off, everyone.
        days: the window shown first, one of :data:`WINDOW_DAYS`.
        blocks: the root Blocks (default: the one being built), whose page load hides the tab
            from non-admins.

    Returns:
        The tab and its parts.

    Raises:
        ValueError: ``days`` is not one of :data:`WINDOW_DAYS`.
    """
    if days not in WINDOW_DAYS:
        raise ValueError(f"days must be one of {WINDOW_DAYS}")
    prices = parse_prices(settings.prices)
    threshold = settings.faithfulness_threshold
    if is_admin is None:
        is_admin = admin_check(settings)

    def load(window_days: int, request: gr.Request) -> list[Any]:
        if not _allowed(is_admin, request):
            return [REFUSED, "", *([None] * 8), "", None]
        window = Window.last_days(int(window_days))
        owner = text_owner(is_admin, request)
        return render_values(
            load_analytics(
                chatlog.engine, window, prices=prices, faithfulness_threshold=threshold, owner=owner
            ),
            own_only=owner is not None,
        )

    with gr.Tab("Analytics", id="analytics", elem_id="analytics-tab", visible=is_admin is None) as tab:
        with gr.Row():
            choice = gr.Dropdown(
                choices=[(f"last {d} days", d) for d in WINDOW_DAYS],
                value=days,
                label="Window",
                elem_id="analytics-days",
                scale=1,
            )
            refresh = gr.Button("Refresh", elem_id="analytics-refresh", scale=0)
        status = gr.Markdown(NOT_LOADED, elem_id="analytics-status")
        summary = gr.Markdown("", elem_id="analytics-summary")
        with gr.Row():
            turns_plot = gr.LinePlot(
                x="day",
                y="turns",
                color="outcome",
                title="Turns per day",
                x_title="day",
                elem_id="analytics-turns",
            )
            thumbs_plot = gr.BarPlot(
                x="day",
                y="ratings",
                color="thumb",
                title="Thumbs per day",
                x_title="day",
                elem_id="analytics-thumbs",
            )
        comments = gr.Dataframe(
            label="Recent comments", elem_id="analytics-comments", interactive=False, wrap=True
        )
        with gr.Row():
            faith_plot = gr.BarPlot(
                x="score",
                y="turns",
                color="evaluator",
                title="Faithfulness scores",
                elem_id="analytics-faithfulness",
            )
            refused = gr.Dataframe(
                label="Most refused questions",
                elem_id="analytics-refused",
                interactive=False,
                wrap=True,
                column_widths=["16%", "54%", "30%"],  # the date column fits "YYYY-MM-DD"
            )
        # Points, not lines: a line needs two days of data, and one day would draw nothing.
        latency_plot = gr.ScatterPlot(
            x="day",
            y="ms",
            color="series",
            title="Latency and time to first token (ms)",
            x_title="day",
            elem_id="analytics-latency",
        )
        with gr.Row():
            tokens_plot = gr.BarPlot(
                x="day",
                y="tokens",
                color="kind",
                title="Tokens per day",
                x_title="day",
                elem_id="analytics-tokens",
            )
            cost_plot = gr.BarPlot(
                x="day",
                y="usd",
                title="Estimated cost per day (USD)",
                x_title="day",
                elem_id="analytics-cost",
            )
        drift = gr.Markdown("", elem_id="analytics-drift")
        clusters = gr.Dataframe(
            label="Drift: top clusters of current questions",
            elem_id="analytics-clusters",
            interactive=False,
            wrap=True,
        )
    outputs = [
        status,
        summary,
        turns_plot,
        thumbs_plot,
        comments,
        faith_plot,
        refused,
        latency_plot,
        tokens_plot,
        cost_plot,
        drift,
        clusters,
    ]
    for event in (tab.select, refresh.click, choice.change):
        event(load, [choice], outputs, concurrency_limit=2, show_progress="minimal")
    root = blocks or gr.context.Context.root_block
    if is_admin is not None and root is not None:

        def show(request: gr.Request) -> gr.Tab:
            return gr.Tab(visible=_allowed(is_admin, request))

        root.load(show, None, tab)
    return AnalyticsTab(tab, outputs, refresh, choice, load)
