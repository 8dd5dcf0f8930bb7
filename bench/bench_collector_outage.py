"""Spans lost across an upstream outage behind the collector (issue 12, telemetry outage).

    python bench/bench_collector_outage.py --outage 180
    python bench/bench_collector_outage.py --outage 30 --batches 3    # a quick run

A real rotel collector forwards OTLP/gRPC to a real OTLP receiver (tests/monitoring/otlp_receiver.py);
the receiver is stopped for ``--outage`` seconds while spans keep arriving at the collector, then
started again on the same port. Counts (not timings, so a busy machine does not hold them back) go
to bench/results/reliability.json under ``collector_outage``: sent, arrived, lost, duplicated.
rotel retries in memory (no disk queue): a collector restart during the outage is not covered; the
compose collector's disk queue is only configured (docs/signoz.md).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import Run, table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    """Run one outage and merge its counts into reliability.json."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outage", type=float, default=180.0, help="seconds the upstream is down")
    parser.add_argument("--batches", type=int, default=10, help="span batches sent during the outage")
    parser.add_argument("--per-batch", type=int, default=100, help="spans per batch")
    args = parser.parse_args(argv)
    if args.outage <= 0 or args.batches < 1 or args.per_batch < 1:
        print("error: --outage, --batches and --per-batch must be positive", file=sys.stderr)
        return 2
    from tests.monitoring.test_collector_outage import run_outage

    run = Run("reliability", timing=False)
    with tempfile.TemporaryDirectory(prefix="outage-") as tmp:
        result = run_outage(Path(tmp), args.outage, args.batches, args.per_batch)
    row: dict[str, Any] = {**result, "collector": "rotel (in-memory retries)"}
    print(table([row]))
    out = run.merge({"collector_outage": row})
    print(f"wrote {out.relative_to(ROOT)}")
    return 0 if result["lost"] == 0 and result["duplicated"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
