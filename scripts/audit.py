"""``make audit``: pip-audit over the project's virtualenv, with the known findings listed and justified.

Runs ``pip-audit --local`` (the installed packages of ``.venv``, i.e. ``constraints.txt``) against
PyPI's vulnerability data, ignoring the IDs listed in ``docs/security-audit-ignore.txt`` (one
``ID  # justification`` per line; docs/security.md explains each). Outcomes:

* exit 0, ``pip-audit: OK``: every package was checked and nothing unlisted was found;
* exit 1, ``pip-audit: FAILED``: an unlisted vulnerability (the table names package, version,
  ID and fixed versions): fix it or list it with a justification;
* ``pip-audit: INCOMPLETE``: the vulnerability service could not be reached, timed out, or could
  not check some packages (here: PyPI's per-version JSON endpoint answers 404 for versions it does
  not serve). That is never reported as a pass: the message says how many packages went unchecked.
  It exits 0 so an outage of PyPI does not break CI, unless ``--strict`` (or
  ``RAGLOOP_AUDIT_STRICT=1``), which exits 2.

The whole run is bounded by ``--deadline`` seconds (default 300), each HTTP request by 15 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IGNORE_FILE = ROOT / "docs" / "security-audit-ignore.txt"
#: Packages that are not on PyPI by design (this project, installed editable).
LOCAL = frozenset({"ragloop"})


@dataclass
class Summary:
    """What one pip-audit report says."""

    checked: int = 0
    skipped: list[str] = field(default_factory=list)
    findings: list[tuple[str, str, str, str]] = field(default_factory=list)  # name, version, id, fix


def ignore_ids(text: str) -> list[str]:
    """The vulnerability IDs of an ignore file (``ID  # why``; blank lines and comments skipped).

    Raises:
        ValueError: an entry has no justification.
    """
    ids = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        vid, _, why = line.partition("#")
        if not why.strip():
            raise ValueError(f"{IGNORE_FILE.name}:{n}: {vid.strip()} has no '# justification'")
        ids.append(vid.strip())
    return ids


def summarize(report: dict, ignored: Iterable[str] = ()) -> Summary:
    """Count checked and skipped packages and the findings not in ``ignored`` of a pip-audit JSON report."""
    out, skip = Summary(), set(ignored)
    for dep in report.get("dependencies", []):
        name = str(dep.get("name", ""))
        if "skip_reason" in dep:
            if name.lower() not in LOCAL:
                out.skipped.append(name)
            continue
        out.checked += 1
        for vuln in dep.get("vulns", []):
            ids = {vuln.get("id"), *vuln.get("aliases", [])}
            if not ids & skip:
                fix = ",".join(vuln.get("fix_versions", [])) or "none"
                out.findings.append((name, str(dep.get("version")), str(vuln.get("id")), fix))
    return out


def run_pip_audit(ignored: list[str], deadline_s: float) -> tuple[dict | None, str]:
    """Run pip-audit; its JSON report (None when it did not finish) and its stderr's last line."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        cmd = [sys.executable, "-m", "pip_audit", "--local", "--progress-spinner", "off"]
        cmd += ["--timeout", "15", "-f", "json", "-o", str(out)]
        for vid in ignored:
            cmd += ["--ignore-vuln", vid]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=deadline_s, check=False)
        except subprocess.TimeoutExpired:
            return None, f"no answer within {deadline_s:.0f} s"
        last = (proc.stderr.strip().splitlines() or [""])[-1]
        if not out.exists():
            return None, last or f"pip-audit exited {proc.returncode}"
        return json.loads(out.read_text()), last


def main(argv: list[str] | None = None) -> int:
    """Run the audit; the exit status is the CI verdict (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--strict", action="store_true", help="exit 2 when the audit is incomplete")
    ap.add_argument("--deadline", type=float, default=300.0, help="seconds for the whole run")
    args = ap.parse_args(argv)
    strict = args.strict or os.environ.get("RAGLOOP_AUDIT_STRICT") == "1"
    try:
        ignored = ignore_ids(IGNORE_FILE.read_text()) if IGNORE_FILE.exists() else []
    except ValueError as exc:
        print(f"pip-audit: {exc}", file=sys.stderr)
        return 1
    report, note = run_pip_audit(ignored, args.deadline)
    if report is None:
        print(f"pip-audit: INCOMPLETE: the vulnerability service was not reachable ({note}); nothing checked")
        return 2 if strict else 0
    s = summarize(report, ignored)
    for name, version, vid, fix in s.findings:
        print(f"  {name} {version}: {vid} (fixed in {fix})")
    if s.findings:
        print(
            f"pip-audit: FAILED: {len(s.findings)} unlisted finding(s); fix or justify in {IGNORE_FILE.name}"
        )
        return 1
    if s.skipped:
        print(
            f"pip-audit: INCOMPLETE: {len(s.skipped)} of {s.checked + len(s.skipped)} packages could not be "
            f"checked (e.g. {', '.join(s.skipped[:3])}): the vulnerability service "
            "does not know their versions; "
            "this is not a pass"
        )
        return 2 if strict else 0
    print(f"pip-audit: OK: {s.checked} packages checked, {len(ignored)} listed finding(s) ignored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
