"""``make audit`` (scripts/audit.py): the verdict of a pip-audit JSON report, on small inputs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("audit", Path(__file__).parents[1] / "scripts" / "audit.py")
assert _spec and _spec.loader
audit = importlib.util.module_from_spec(_spec)
sys.modules["audit"] = audit  # dataclasses look their module up
_spec.loader.exec_module(audit)

REPORT = {
    "dependencies": [
        {"name": "ragloop", "version": "0.1.0", "skip_reason": "editable"},
        {
            "name": "jinja2",
            "version": "3.1.2",
            "vulns": [
                {"id": "GHSA-h5c8-rqwp-cp95", "aliases": ["CVE-2024-22195"], "fix_versions": ["3.1.3"]},
                {"id": "PYSEC-2024-1", "aliases": [], "fix_versions": []},
            ],
        },
        {"name": "requests", "version": "2.32.3", "vulns": []},
        {"name": "aiohttp", "version": "3.14.5", "skip_reason": "Dependency not found on PyPI"},
    ]
}


def test_findings_skips_and_the_ignore_list_by_id_or_alias() -> None:
    s = audit.summarize(REPORT)
    assert s.checked == 2 and s.skipped == ["aiohttp"]  # the project itself is not a skip
    assert [(f[0], f[2], f[3]) for f in s.findings] == [
        ("jinja2", "GHSA-h5c8-rqwp-cp95", "3.1.3"),
        ("jinja2", "PYSEC-2024-1", "none"),
    ]
    listed = audit.summarize(REPORT, ["CVE-2024-22195", "PYSEC-2024-1"])
    assert listed.findings == []


def test_the_ignore_file_needs_a_justification_per_entry() -> None:
    assert audit.ignore_ids("# header\n\nGHSA-1  # dev-only tool, never served\n") == ["GHSA-1"]
    with pytest.raises(ValueError, match="GHSA-2 has no"):
        audit.ignore_ids("GHSA-2\n")
    assert audit.ignore_ids(audit.IGNORE_FILE.read_text()) is not None  # the committed list parses


def test_an_unreachable_service_is_incomplete_not_green(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setattr(audit, "run_pip_audit", lambda ignored, deadline: (None, "no answer within 1 s"))
    assert audit.main([]) == 0 and "INCOMPLETE" in capsys.readouterr().out
    assert audit.main(["--strict"]) == 2
    monkeypatch.setattr(audit, "run_pip_audit", lambda ignored, deadline: (REPORT, ""))
    assert audit.main([]) == 1 and "FAILED: 2 unlisted" in capsys.readouterr().out
