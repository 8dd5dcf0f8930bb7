"""bench/_common.Run.merge with ``rows_by``: a run of a few rows replaces only those rows."""

from __future__ import annotations

import json
from pathlib import Path

from bench import _common


def test_a_partial_run_replaces_only_its_own_rows(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    run = _common.Run("faults-test", max_load=1e9)
    rows = [{"dependency": d, "lost": 0, "run": 1} for d in ("collector", "chroma", "llm")]
    out = run.merge({"faults": rows}, rows_by={"faults": "dependency"})
    run.merge({"faults": [{"dependency": "chroma", "lost": 0, "run": 2}, {"dependency": "redis", "run": 2}]},
              rows_by={"faults": "dependency"})  # fmt: skip
    got = json.loads(out.read_text())["faults"]
    assert [(r["dependency"], r["run"]) for r in got] == [
        ("collector", 1),
        ("chroma", 2),
        ("llm", 1),
        ("redis", 2),
    ]
    # Without rows_by the key is replaced whole (what --only used to do to the fault table).
    run.merge({"faults": [{"dependency": "chroma", "run": 3}]})
    assert [r["dependency"] for r in json.loads(out.read_text())["faults"]] == ["chroma"]


def test_a_run_of_some_datasets_keeps_the_others(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    run = _common.Run("answers-test", max_load=1e9)
    out = run.merge({"citation_coverage": {"python-faq": 0.9, "halueval-qa": 1.0}, "n": 1})
    run.merge({"citation_coverage": {"halueval-qa": 0.95}, "n": 2}, nested=["citation_coverage", "n"])
    got = json.loads(out.read_text())
    assert got["citation_coverage"] == {"python-faq": 0.9, "halueval-qa": 0.95} and got["n"] == 2
