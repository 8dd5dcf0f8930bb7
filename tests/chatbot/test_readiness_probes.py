"""Which dependencies ``/readyz`` probes: LangSmith and the collector's upstream too (issue 12, "Faults")."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from chatbot._readiness import Readiness, default_probes
from ragloop.process import free_port
from ragloop.settings import Settings


def _names(settings: Settings) -> dict[str, bool]:
    service = SimpleNamespace(chatlog=None, retriever=None)
    return {p.name: p.required for p in default_probes(settings, service)}


def test_langsmith_and_the_traces_upstream_are_optional_probes(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    settings = Settings(
        data_dir=tmp_path, langsmith_api_key="lsv2_pt_x", langsmith_endpoint=dead, traces_endpoint=dead
    )
    names = _names(settings)
    assert names["langsmith"] is False and names["traces"] is False
    service = SimpleNamespace(chatlog=None, retriever=None)
    probes = [p for p in default_probes(settings, service) if p.name in ("langsmith", "traces")]
    ready = asyncio.run(Readiness(probes, cache_s=0, timeout_s=2).check())
    assert ready["status"] == "degraded" and sorted(ready["down"]) == ["langsmith", "traces"]


def test_the_hosted_langsmith_api_is_not_probed(tmp_path: Path) -> None:
    assert "langsmith" not in _names(Settings(data_dir=tmp_path, langsmith_api_key="lsv2_pt_x"))
    assert "traces" not in _names(Settings(data_dir=tmp_path, traces_endpoint=None))
