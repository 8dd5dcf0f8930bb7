"""A drift run, step by step: extract windows -> embeddings -> report -> explanation (-> store, metrics).

The Dagster assets (:mod:`monitoring.drift.pipeline`) and ``ragloop drift run`` call the same steps.

A run makes up to three decisions (query embeddings, answer embeddings, scalar features). A decision
needs at least ``RAGLOOP_DRIFT_MIN_ROWS`` usable rows (and never fewer than 2) on each side; below
that the run reports it as "insufficient data" (:attr:`DriftReport.insufficient`): no alarm, and the
metrics say so explicitly instead of carrying a NaN. The decisions that ran are corrected together
(Holm), so the run as a whole raises a false alarm with probability at most ``RAGLOOP_DRIFT_ALPHA``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from chatlog import ChatLog, new_id, now
from monitoring.drift import _metrics, _store
from monitoring.drift._explain import Cluster, explain_drift
from monitoring.drift._stats import (
    DriftTest,
    correct_for_run,
    embedding_drift_test,
    feature_drift_test,
    usable_rows,
)
from monitoring.drift._windows import (
    WindowData,
    drift_dir,
    fill_embeddings,
    load_reference,
    load_window,
    parse_window,
    reference_spec,
)
from ragloop.settings import Settings

log = logging.getLogger(__name__)


#: The decisions a run can make, in order.
TEST_NAMES = ("query_embedding", "answer_embedding", "features")


@dataclass
class DriftReport:
    """The calibrated decisions of one run and where its Evidently snapshot went.

    Attributes:
        run_id: the run's id (``drift_runs.run_id``).
        reference_label: how the reference window was chosen.
        current_label: how the current window was chosen.
        tests: the decisions that ran, corrected for the run (Holm).
        snapshot_id: the Evidently snapshot, when one was written.
        report_path: the Evidently HTML report, when one was written.
        insufficient: decision name -> why it did not run ("insufficient data: ...").
        n_reference: turns in the reference window.
        n_current: turns in the current window.
    """

    run_id: str
    reference_label: str
    current_label: str
    tests: list[DriftTest]
    snapshot_id: str | None = None
    report_path: Path | None = None
    insufficient: dict[str, str] = field(default_factory=dict)
    n_reference: int = 0
    n_current: int = 0

    @property
    def alarm(self) -> bool:
        """True when any decision raised an alarm."""
        return any(t.alarm for t in self.tests)

    def test(self, name: str) -> DriftTest | None:
        """The decision named ``name`` (query_embedding, answer_embedding, features), if it ran."""
        return next((t for t in self.tests if t.name == name), None)


@dataclass
class DriftExplanation:
    """Ranked clusters of the current window's queries, the plot, and the metrics written."""

    clusters: list[Cluster]
    plot_path: Path | None
    metrics: list[_metrics.Metric] = field(default_factory=list)
    metrics_path: Path | None = None


def extract_windows(
    settings: Settings, window: str | None = None, reference: str | None = None, at: datetime | None = None
) -> tuple[WindowData, WindowData]:
    """Step 1: the reference and current windows from the chat log (embeddings may still be missing)."""
    chatlog = ChatLog(settings.chatlog_url)
    try:
        cur_span = parse_window(window or settings.drift_window, at or now())
        ref = reference_spec(reference or settings.drift_reference, cur_span)
        current, _ = load_window(
            chatlog, *cur_span, settings, label=f"current:{window or settings.drift_window}"
        )
        if isinstance(ref, str):
            reference_data = load_reference(ref, settings)
        else:
            reference_data, _ = load_window(
                chatlog, *ref, settings, label=f"reference:{ref[0]:%Y-%m-%dT%H:%M}"
            )
    finally:
        chatlog.close()
    return reference_data, current


def embed_windows(
    settings: Settings, reference: WindowData, current: WindowData
) -> tuple[WindowData, WindowData]:
    """Step 2: compute missing query and answer embeddings (written back to the chat log)."""
    chatlog = ChatLog(settings.chatlog_url)
    try:
        return fill_embeddings(reference, settings, chatlog), fill_embeddings(current, settings, chatlog)
    finally:
        chatlog.close()


def _min_rows(settings: Settings) -> int:
    return max(2, settings.drift_min_rows)


def _tests(
    settings: Settings, reference: WindowData, current: WindowData
) -> tuple[list[DriftTest], dict[str, str]]:
    """The decisions with enough data, corrected for the run, and why the others did not run."""
    common: dict[str, Any] = {
        "alpha": settings.drift_alpha,
        "n_perm": settings.drift_permutations,
        "max_rows": settings.drift_max_rows,
        "seed": settings.drift_seed,
    }
    need = _min_rows(settings)
    tests: list[DriftTest] = []
    insufficient: dict[str, str] = {}

    def enough(name: str, n_ref: int, n_cur: int) -> bool:
        if min(n_ref, n_cur) >= need:
            return True
        insufficient[name] = (
            f"insufficient data: {n_ref} reference and {n_cur} current rows, "
            f"at least {need} a side needed (RAGLOOP_DRIFT_MIN_ROWS)"
        )
        log.warning("%s: %s", name, insufficient[name])
        return False

    groups = np.concatenate([reference.groups("reference"), current.groups("current")])
    for name, key in (("query_embedding", "query"), ("answer_embedding", "answer")):
        ref, cur = getattr(reference, key), getattr(current, key)
        if name == "answer_embedding" and not len(ref) and len(reference):
            continue  # a saved question set has no answers: nothing to compare, nothing missing
        if enough(name, int(usable_rows(ref).sum()), int(usable_rows(cur).sum())):
            test = embedding_drift_test(
                ref, cur, name=name, dims=settings.drift_dims, groups=groups, **common
            )
            tests.append(test)
    if reference.features and enough("features", len(reference), len(current)):
        test = feature_drift_test(
            reference.features, current.features, name="features", groups=groups, **common
        )
        if test.components:
            tests.append(test)
        else:
            insufficient["features"] = "insufficient data: no feature has varying, finite values"
    return correct_for_run(tests, settings.drift_alpha), insufficient


def drift_report(
    settings: Settings, reference: WindowData, current: WindowData, evidently: bool = True
) -> DriftReport:
    """Step 3: the calibrated tests, plus the Evidently report saved as a snapshot and an HTML file.

    The Evidently report is for browsing: when it fails (too few rows for its plots, say) the run
    logs why and goes on without it.
    """
    run_id = new_id()
    tests, insufficient = _tests(settings, reference, current)
    report = DriftReport(
        run_id,
        reference.label,
        current.label,
        tests,
        insufficient=insufficient,
        n_reference=len(reference),
        n_current=len(current),
    )
    for t in tests:
        log.info(
            "%s: statistic %.3f threshold %.3f p %.4f (run %.4f) -> %s",
            t.name,
            t.statistic,
            t.threshold,
            t.p_value,
            t.run_p_value,
            "ALARM" if t.alarm else "ok",
        )
    if evidently and tests:
        try:
            report.snapshot_id, report.report_path = _evidently_snapshot(settings, reference, current, run_id)
        except ImportError:
            raise  # the drift extra is missing: the message names the pip command
        except Exception:  # noqa: BLE001 - the browsing report never stops the decision
            log.exception("the Evidently report of drift run %s failed; the decisions stand", run_id)
    return report


def _evidently_snapshot(
    settings: Settings, reference: WindowData, current: WindowData, run_id: str
) -> tuple[str, Path]:
    from monitoring.drift import _evidently

    rng = np.random.default_rng(settings.drift_seed)

    # The report is for browsing; a few thousand rows show the same picture and keep it fast.
    def side(w: WindowData) -> tuple[dict, dict]:
        usable = np.flatnonzero(usable_rows(w.query))
        idx = np.sort(rng.choice(usable, size=min(len(usable), 2000), replace=False))
        emb = {"query": w.query[idx]}
        return emb, {k: v[idx] for k, v in w.features.items()}

    ref, cur = side(reference), side(current)
    if not reference.features:  # a saved set: embeddings only
        cur = (cur[0], {})
    snapshot = _evidently.build_snapshot(ref, cur, name=f"drift {current.label} vs {reference.label}")
    html = drift_dir(settings) / "reports" / f"drift-{run_id}.html"
    workspace = settings.drift_workspace or settings.data_dir / "evidently"
    return _evidently.save_snapshot(snapshot, workspace, settings.drift_project, html), html


def explain(
    settings: Settings, reference: WindowData, current: WindowData, report: DriftReport
) -> DriftExplanation:
    """Step 4: cluster and rank the current queries, plot, store the run, write metrics and the span."""
    clusters = (
        explain_drift(
            reference.query,
            current.query,
            texts=current.questions,
            k=settings.drift_clusters,
            seed=settings.drift_seed,
        )
        if len(current) and len(reference)
        else []
    )
    plot = _plot(settings, reference, current, report.run_id)
    tests = [t.as_dict() for t in report.tests]
    cluster_rows = [
        {
            "rank": c.rank,
            "size": c.size,
            "current_share": c.current_share,
            "reference_share": c.reference_share,
            "excess": c.excess,
            "examples": c.examples,
            "turn_ids": [current.turn_ids[i] for i in c.members],
        }
        for c in clusters
    ]
    chatlog = ChatLog(settings.chatlog_url)
    try:
        _store.save_run(chatlog.engine, _run_row(report, reference, current, plot), cluster_rows)
    finally:
        chatlog.close()
    metrics = _metrics.drift_metrics(
        tests,
        [c.as_dict() for c in clusters],
        finished_at=time.time(),
        insufficient=report.insufficient,
        window_rows=(len(reference), len(current)),
    )
    path = _metrics.write_textfile(metrics, metrics_textfile(settings))
    _metrics.record_otel(metrics)
    _metrics.record_span(report.run_id, reference.label, tests)
    return DriftExplanation(clusters, plot, metrics, path)


def metrics_textfile(settings: Settings) -> Path:
    """Where the last run's metrics are written (Prometheus text format)."""
    return drift_dir(settings) / "metrics" / "drift.prom"


def read_metrics_textfile(settings: Settings) -> bytes:
    """The last run's metrics as Prometheus text, to append to the app's ``/metrics`` (b"" before a run).

    Prometheus scrapes the app; the drift job is a separate, short-lived process, so its gauges
    reach Prometheus through this file rather than through the job's own meter.
    """
    try:
        return metrics_textfile(settings).read_bytes()
    except OSError:
        return b""


def _run_row(
    report: DriftReport, reference: WindowData, current: WindowData, plot: Path | None
) -> dict[str, Any]:
    def p(name: str) -> float | None:
        test = report.test(name)
        return test.run_p_value if test else None

    insufficient = [
        {"name": name, "status": "insufficient_data", "reason": reason}
        for name, reason in report.insufficient.items()
    ]

    return {
        "run_id": report.run_id,
        "created_at": now(),
        "window_start": current.start,
        "window_end": current.end,
        "reference": reference.label,
        "n_reference": len(reference),
        "n_current": len(current),
        "alarm": report.alarm,
        "query_p_value": p("query_embedding"),
        "answer_p_value": p("answer_embedding"),
        "features_p_value": p("features"),
        "tests": [{**t.as_dict(), "status": "decided"} for t in report.tests] + insufficient,
        "snapshot_id": report.snapshot_id,
        "report_path": str(report.report_path or "") or None,
        "plot_path": str(plot) if plot else None,
    }


def _plot(settings: Settings, reference: WindowData, current: WindowData, run_id: str) -> Path | None:
    ref, cur = reference.query[usable_rows(reference.query)], current.query[usable_rows(current.query)]
    if min(len(ref), len(cur)) < 3:
        return None
    from monitoring.drift._plot import plot_projection

    return plot_projection(
        ref,
        cur,
        drift_dir(settings) / "plots" / f"drift-{run_id}.png",
        title=f"{current.label} vs {reference.label}",
        seed=settings.drift_seed,
    )


def run_drift(
    settings: Settings,
    window: str | None = None,
    reference: str | None = None,
    at: datetime | None = None,
    evidently: bool = True,
) -> tuple[DriftReport, DriftExplanation]:
    """All four steps, as ``ragloop drift run`` does them without Dagster."""
    ref, cur = extract_windows(settings, window, reference, at)
    ref, cur = embed_windows(settings, ref, cur)
    report = drift_report(settings, ref, cur, evidently=evidently)
    return report, explain(settings, ref, cur, report)
