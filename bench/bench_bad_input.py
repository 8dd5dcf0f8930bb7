"""Bad input, recorded: malicious documents at ingestion, and schemathesis against the API.

``malicious_docs``: one row per kind (huge file, PDF bombs, binary junk under ``.md``, symlink out
of the folder, archives, Windows-1252 text): the outcome (refused / contained / decoded), the reason
the user is shown, seconds taken and the growth of this process's peak RSS while handling it. Each
kind runs in a fresh subprocess so its peak memory is its own. Fixtures come from
``tests/retrieval/malicious/make_fixtures.py``.

``schemathesis_cases`` and ``server_errors``: runs ``tests/chatbot/test_api_fuzz.py`` (the app's
OpenAPI schema, ``--examples`` generated requests per operation over real HTTP) and reads the
counts it reports.

These are counts and bounds, not speed figures: they are written whatever the machine's load.
Writes both into bench/results/reliability.json (``Run.merge``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import Run, table  # noqa: E402

KINDS = (
    "huge_file",
    "pdf_bomb_nested",
    "pdf_bomb_inflate",
    "pdf_huge_page_count",
    "binary_junk_md",
    "archive_renamed_md",
    "archive_zip",
    "symlink_outside",
    "non_utf8_cp1252",
)


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=40, help="schemathesis examples per operation.")
    p.add_argument("--skip-fuzz", action="store_true", help="Only the malicious documents.")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    return p.parse_args()


def _one(kind: str) -> dict[str, Any]:
    """Handle one kind in this (fresh) process; returns its row."""
    import importlib.util
    import resource
    import time

    from retrieval._guard import Limits
    from retrieval._ingest import collect_files
    from retrieval._loaders import LoadError, load_document

    here = ROOT / "tests" / "retrieval" / "malicious"
    spec = importlib.util.spec_from_file_location("make_fixtures", here / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    fx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fx)
    tmp = Path(tempfile.mkdtemp(prefix="bad-input-"))
    limits = Limits(max_bytes=2**20, max_pdf_pages=1000, max_parse_s=60)
    if kind in ("huge_file", "pdf_bomb_inflate"):  # written by the parent: their making is not measured
        large = Path(os.environ["RAGLOOP_BAD_INPUT_LARGE"])
        path = large / ("huge.md" if kind == "huge_file" else "bomb.pdf")
    elif kind == "pdf_huge_page_count":
        path = tmp / "pages.pdf"
        path.write_bytes(fx.pdf_pages(1500))
    elif kind == "symlink_outside":
        (tmp / "outside").mkdir()
        (tmp / "outside" / "secret.md").write_text("# secret\n")
        (tmp / "docs").mkdir()
        path = tmp / "docs" / "link.md"
        path.symlink_to(tmp / "outside" / "secret.md")
    else:
        name = {
            "pdf_bomb_nested": "nested.pdf",
            "binary_junk_md": "junk.md",
            "archive_renamed_md": "archive.md",
            "archive_zip": "archive.zip",
            "non_utf8_cp1252": "cp1252.md",
        }[kind]
        path = here / name
    size = path.lstat().st_size if path.is_symlink() else path.stat().st_size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    outcome, reason = "accepted", ""
    if kind == "symlink_outside":
        files, _, failed = collect_files([path.parent])
        if failed:
            outcome, reason = "refused", failed[0][1]
    else:
        try:
            doc = load_document(path, limits)
            if kind == "non_utf8_cp1252":
                ok = "€" in doc.text and "\x80" not in doc.text
                outcome, reason = ("decoded", "euro sign kept") if ok else ("wrong", "euro sign lost")
        except LoadError as exc:
            outcome, reason = "refused", str(exc)
    seconds = time.perf_counter() - t0
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    return {
        "kind": kind,
        "file_bytes": size,
        "outcome": outcome,
        "reason": reason[:160],
        "seconds": round(seconds, 3),
        "peak_rss_growth_mb": round(grown, 1),
    }


def _fuzz(examples: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "fuzz.json"
        env = {**os.environ, "RAGLOOP_FUZZ_EXAMPLES": str(examples), "RAGLOOP_FUZZ_REPORT": str(report)}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                "tests/chatbot/test_api_fuzz.py",
                "-q",
                "-p",
                "no:cacheprovider",
            ],  # noqa: E501
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
        )
        print(proc.stdout[-2000:])
        counts = json.loads(report.read_text()) if report.exists() else {}
    return {
        "schemathesis_cases": counts.get("cases", 0),
        "server_errors": counts.get("server_errors"),
        "schemathesis_bad_error_shape": counts.get("bad_error_shape"),
        "schemathesis_by_status": counts.get("by_status", {}),
        "schemathesis_examples_per_operation": examples,
        "schemathesis_passed": proc.returncode == 0,
    }


def main() -> None:
    """Run every kind in its own process, then the API fuzz; print; merge."""
    args = _parse()
    if args.worker:
        print(json.dumps(_one(args.worker)))
        return
    run = Run("reliability", timing=False)
    rows = []
    large = Path(tempfile.mkdtemp(prefix="bad-input-large-"))
    fixtures = str(ROOT / "tests" / "retrieval" / "malicious")
    code = f"import sys, pathlib; sys.path.insert(0, {fixtures!r}); import make_fixtures; "
    code += f"make_fixtures.write_large(pathlib.Path({str(large)!r}), 1.0)"
    subprocess.run([sys.executable, "-c", code], check=True)
    env = {**os.environ, "RAGLOOP_BAD_INPUT_LARGE": str(large)}
    for kind in tqdm(KINDS, desc="malicious documents"):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", kind],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(table(rows))
    keys: dict[str, Any] = {"malicious_docs": rows}
    if not args.skip_fuzz:
        keys.update(_fuzz(args.examples))
        print({k: v for k, v in keys.items() if k.startswith(("schemathesis", "server"))})
    print(f"written: {run.merge(keys)}")


if __name__ == "__main__":
    main()
