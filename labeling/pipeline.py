"""Dagster definitions of the labeling loop: one asset beside the drift assets, and its schedule.

``labeling_pairs`` runs select -> candidates -> judge -> save (the same :class:`LabelingLoop` as
``ragloop loop run``); the saved pairs reach the labeling backends through the outbox. It depends on
``drift_explanation`` (the drift assets' clusters feed selection), so a merged ``Definitions`` runs
it after each drift run; loaded alone, that dependency is an external asset.

Serve it alone with ``dagster dev -m labeling.pipeline``; the composition root merges :data:`ASSETS`
and :func:`build_definitions`' schedule with the drift pipeline's.
"""

# No `from __future__ import annotations`: Dagster reads the annotations at runtime.
from typing import Any

try:
    import dagster as dg
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError("the Dagster labeling pipeline needs: pip install 'ragloop[pipeline]'") from exc

from ragloop.settings import Settings, get_settings, secret_value

GROUP = "labeling"
#: The drift asset whose clusters selection reads (declared by key: labeling never imports monitoring).
DRIFT_ASSET = dg.AssetKey("drift_explanation")


class LoopSettings(dg.ConfigurableResource):  # type: ignore[type-arg]
    """The ragloop settings the asset uses; unset fields come from the environment (``RAGLOOP_*``)."""

    data_dir: str | None = None
    database_url: str | None = None
    llm_judge: bool | None = None

    def settings(self) -> Settings:
        """Build the settings, explicit resource fields taking precedence over the environment."""
        fields = ("data_dir", "database_url")
        return get_settings(**{f: getattr(self, f) for f in fields if getattr(self, f) is not None})


class LoopConfig(dg.Config):  # type: ignore[misc]
    """A run's cap (unset: ``RAGLOOP_LOOP_MAX_PER_RUN``)."""

    limit: int | None = None


@dg.asset(
    group_name=GROUP,
    deps=[DRIFT_ASSET],
    description="Flagged turns turned into judged preference pairs, enqueued for the labeling backends.",
)
def labeling_pairs(
    context: dg.AssetExecutionContext, config: LoopConfig, loop: LoopSettings
) -> dict[str, Any]:
    """One loop run over the chat log."""
    from chatlog import ChatLog
    from labeling._loop import LabelingLoop

    settings = loop.settings()
    chatlog = ChatLog(settings.chatlog_url)
    try:
        report = LabelingLoop.from_settings(settings, chatlog, llm_judge=loop.llm_judge).run(
            limit=config.limit
        )
    finally:
        chatlog.close()
    sel = report.selection
    meta: dict[str, Any] = {
        "run_id": report.run_id,
        "pairs_saved": report.pairs_saved,
        "errors": len(report.errors),
        "flagged": sel.flagged if sel else 0,
        "selected": len(sel.selected) if sel else 0,
        "duplicates": sel.duplicates if sel else 0,
    }
    if sel is not None:
        meta.update({f"reason_{k}": v for k, v in sel.counts.items()})
    context.add_output_metadata(meta)
    return meta


ASSETS = [labeling_pairs]
labeling_job = dg.define_asset_job("labeling_job", selection=dg.AssetSelection.groups(GROUP))


def build_definitions(settings: Settings | None = None) -> dg.Definitions:
    """Definitions for ``dagster dev``: the asset, its job, an hourly schedule and the settings resource."""
    settings = settings or get_settings()
    schedule = dg.ScheduleDefinition(job=labeling_job, cron_schedule="15 * * * *", name="labeling_schedule")
    resource = LoopSettings(data_dir=str(settings.data_dir), database_url=secret_value(settings.database_url))
    return dg.Definitions(
        assets=ASSETS, jobs=[labeling_job], schedules=[schedule], resources={"loop": resource}
    )


defs = build_definitions()
