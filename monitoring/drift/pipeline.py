"""Dagster definitions of the drift pipeline: windows -> embeddings -> report -> explanation.

Asset checks fail when a drift alarm is raised; a schedule runs the job on ``RAGLOOP_DRIFT_SCHEDULE``
and a sensor runs it when ``RAGLOOP_DRIFT_SENSOR_TURNS`` new turns arrived since the last run.

Serve it with ``dagster dev -m monitoring.drift.pipeline`` (``defs`` is built from the environment's
settings); tests materialize the assets in-process with :func:`dagster.materialize`.
Each asset calls the same step function as ``ragloop drift run``.
"""

# No `from __future__ import annotations`: Dagster reads the annotations at runtime.
from typing import Any

try:
    import dagster as dg
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("the Dagster drift pipeline needs: pip install 'ragloop[pipeline]'") from exc

from monitoring.drift import _run, _store
from monitoring.drift._windows import WindowData
from ragloop.settings import Settings, get_settings, secret_value

GROUP = "drift"


class DriftSettings(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The ragloop settings the assets use; unset fields come from the environment (``RAGLOOP_*``)."""

    data_dir: str | None = None
    database_url: str | None = None
    drift_dir: str | None = None
    drift_workspace: str | None = None

    def settings(self) -> Settings:
        """Build the settings, explicit resource fields taking precedence over the environment."""
        fields = ("data_dir", "database_url", "drift_dir", "drift_workspace")
        return get_settings(**{f: getattr(self, f) for f in fields if getattr(self, f) is not None})


class WindowConfig(dg.Config):  # type: ignore[misc]
    """Which windows to compare (unset: ``RAGLOOP_DRIFT_WINDOW`` and ``RAGLOOP_DRIFT_REFERENCE``)."""

    window: str | None = None
    reference: str | None = None


class ReportConfig(dg.Config):  # type: ignore[misc]
    """Whether the run also writes an Evidently snapshot and HTML report."""

    evidently: bool = True


@dg.asset(group_name=GROUP, description="Reference and current windows of turns from the chat log.")
def drift_windows(config: WindowConfig, drift: DriftSettings) -> tuple[WindowData, WindowData]:
    """Extract both windows."""
    return _run.extract_windows(drift.settings(), config.window, config.reference)


@dg.asset(group_name=GROUP, description="Both windows with every query and answer embedded.")
def drift_embeddings(drift_windows: tuple[WindowData, WindowData], drift: DriftSettings) -> tuple:
    """Compute missing embeddings (written back to the chat log)."""
    return _run.embed_windows(drift.settings(), *drift_windows)


@dg.asset(group_name=GROUP, description="Calibrated drift decisions and the Evidently snapshot.")
def drift_report(
    context: dg.AssetExecutionContext, config: ReportConfig, drift_embeddings: tuple, drift: DriftSettings
) -> _run.DriftReport:
    """Run the tests and the Evidently report."""
    reference, current = drift_embeddings
    report = _run.drift_report(drift.settings(), reference, current, evidently=config.evidently)
    context.add_output_metadata(_report_metadata(report))
    return report


@dg.asset(
    group_name=GROUP, description="Ranked clusters of the current queries; run stored, metrics written."
)
def drift_explanation(
    context: dg.AssetExecutionContext,
    drift_embeddings: tuple,
    drift_report: _run.DriftReport,
    drift: DriftSettings,
) -> _run.DriftExplanation:
    """Cluster, plot, store and publish."""
    reference, current = drift_embeddings
    explanation = _run.explain(drift.settings(), reference, current, drift_report)
    context.add_output_metadata(
        {
            "clusters": len(explanation.clusters),
            "top_cluster_examples": "\n".join(explanation.clusters[0].examples)
            if explanation.clusters
            else "",
            "plot": str(explanation.plot_path or ""),
        }
    )
    return explanation


def _report_metadata(report: _run.DriftReport) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "run_id": report.run_id,
        "alarm": report.alarm,
        "reference": report.reference_label,
    }
    for name, reason in report.insufficient.items():
        meta[f"{name}_insufficient_data"] = reason
    for test in report.tests:
        meta[f"{test.name}_p_value"] = test.p_value
        meta[f"{test.name}_run_p_value"] = test.run_p_value
        meta[f"{test.name}_statistic"] = test.statistic
        meta[f"{test.name}_threshold"] = test.threshold
    return meta


def _check(report: _run.DriftReport, name: str) -> dg.AssetCheckResult:
    test = report.test(name)
    if test is None:
        reason = report.insufficient.get(name, "not applicable to this reference")
        return dg.AssetCheckResult(passed=True, description=f"{name}: {reason}")
    return dg.AssetCheckResult(
        passed=not test.alarm,
        metadata={
            "p_value": test.p_value,
            "run_p_value": test.run_p_value if test.run_p_value is not None else test.p_value,
            "statistic": test.statistic,
            "threshold": test.threshold,
            "n_reference": test.n_reference,
            "n_current": test.n_current,
        },
        description=f"{name}: run-corrected p={test.run_p_value}, alarm at <= {test.alpha} for the run",
    )


@dg.asset_check(asset=drift_report, description="Fails when the query embeddings drifted.")
def no_query_drift(drift_report: _run.DriftReport) -> dg.AssetCheckResult:
    """Query-embedding drift alarm."""
    return _check(drift_report, "query_embedding")


@dg.asset_check(asset=drift_report, description="Fails when the answer embeddings drifted.")
def no_answer_drift(drift_report: _run.DriftReport) -> dg.AssetCheckResult:
    """Answer-embedding drift alarm."""
    return _check(drift_report, "answer_embedding")


@dg.asset_check(asset=drift_report, description="Fails when a scalar input or output feature drifted.")
def no_feature_drift(drift_report: _run.DriftReport) -> dg.AssetCheckResult:
    """Scalar-feature drift alarm."""
    return _check(drift_report, "features")


ASSETS = [drift_windows, drift_embeddings, drift_report, drift_explanation]
CHECKS = [no_query_drift, no_answer_drift, no_feature_drift]
drift_job = dg.define_asset_job("drift_job", selection=dg.AssetSelection.groups(GROUP))


def new_turns_since_last_run(settings: Settings) -> int:
    """Turns logged after the newest drift run (all turns before the first run)."""
    from sqlalchemy import func, select

    from chatlog import ChatLog, turns

    log = ChatLog(settings.chatlog_url)
    try:
        last = _store.last_run_time(log.engine)
        query = select(func.count()).select_from(turns)
        if last is not None:
            query = query.where(turns.c.created_at > last)
        with log.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())
    finally:
        log.close()


@dg.sensor(
    job=drift_job, minimum_interval_seconds=300, description="Runs drift when enough new turns arrived."
)
def drift_traffic_sensor(context: dg.SensorEvaluationContext, drift: DriftSettings) -> dg.SensorResult:
    """Request a run once ``drift_sensor_turns`` turns were logged since the last drift run."""
    settings = drift.settings()
    fresh = new_turns_since_last_run(settings)
    if fresh < settings.drift_sensor_turns:
        return dg.SensorResult(skip_reason=f"{fresh} new turns < {settings.drift_sensor_turns}")
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"drift-{context.cursor or ''}-{fresh}")])


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Definitions for ``dagster dev``: assets, checks, job, schedule, sensor and the settings resource."""
    settings = settings or get_settings()
    schedule = dg.ScheduleDefinition(
        job=drift_job, cron_schedule=settings.drift_schedule, name="drift_schedule"
    )
    resource = DriftSettings(
        data_dir=str(settings.data_dir), database_url=secret_value(settings.database_url)
    )
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=[drift_job],
        schedules=[schedule],
        sensors=[drift_traffic_sensor],
        resources={"drift": resource},
    )


defs = build_definitions()
