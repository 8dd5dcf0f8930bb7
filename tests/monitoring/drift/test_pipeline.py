"""The Dagster pipeline, materialized in-process against a real chat log."""

from __future__ import annotations

import dagster as dg

from monitoring.drift import latest_runs
from monitoring.drift.pipeline import (
    ASSETS,
    CHECKS,
    DriftSettings,
    build_definitions,
    drift_traffic_sensor,
    new_turns_since_last_run,
)

from .conftest import day


def _materialize(settings, window, reference):
    return dg.materialize(
        [*ASSETS, *CHECKS],
        resources={"drift": DriftSettings(data_dir=str(settings.data_dir))},
        run_config={
            "ops": {
                "drift_windows": {"config": {"window": window, "reference": reference}},
                "drift_report": {"config": {"evidently": False}},
            }
        },
        raise_on_error=False,
    )


def test_shifted_window_fails_the_query_check(drift_settings):
    from chatlog import ChatLog

    result = _materialize(drift_settings, day(2), day(0))
    assert result.success  # a failed check is an ERROR-severity evaluation, not a crashed run
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks["no_query_drift"] is False
    explanation = result.output_for_node("drift_explanation")
    assert explanation.clusters[0].excess >= 0.05
    runs = latest_runs(ChatLog(drift_settings.chatlog_url).engine)
    assert len(runs) == 1 and runs[0]["alarm"] is True


def test_same_source_passes_every_check_and_sensor_counts_turns(drift_settings):
    assert new_turns_since_last_run(drift_settings) == 450
    result = _materialize(drift_settings, day(1), "previous")
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"no_query_drift": True, "no_answer_drift": True, "no_feature_drift": True}
    assert new_turns_since_last_run(drift_settings) == 0

    resource = DriftSettings(data_dir=str(drift_settings.data_dir))
    with dg.build_sensor_context(resources={"drift": resource}) as context:
        sensor_result = drift_traffic_sensor(context)
    assert not sensor_result.run_requests


def test_definitions_load_with_schedule_and_sensor(drift_settings):
    defs = build_definitions(drift_settings)
    assert defs.get_schedule_def("drift_schedule").cron_schedule == drift_settings.drift_schedule
    assert defs.get_sensor_def("drift_traffic_sensor")
    assert defs.resolve_job_def("drift_job")
