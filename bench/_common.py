"""What every benchmark shares: warm-up, repeats, medians, the load average, and safe result files.

Protocol (issue "One app, one store, one way out", fault 14):
- warm up each cell once, then repeat it (``repeat >= 3``) and report the median with every timing;
- record the 1-minute load average before and after;
- refuse to overwrite committed results when the machine was already busy before the benchmark
  started (1-minute load average above :data:`MAX_LOAD` on these 2 cores); ``--force`` writes them
  under ``bench/results/tmp/`` instead, so a busy run can still be read but never lands as a figure.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
#: Above this 1-minute load average (2 cores) a run is "busy" and its figures are not committed.
MAX_LOAD = 1.5


def load_average() -> float:
    """The 1-minute load average."""
    return round(os.getloadavg()[0], 2)


class Run:
    """One benchmark run: its start-of-run load, its cells, and where its results may go."""

    def __init__(
        self, name: str, *, max_load: float = MAX_LOAD, timing: bool = True, scratch: bool = False
    ) -> None:
        """Start a run named ``name`` (results in ``bench/results/<name>.json``).

        ``timing=False`` marks a run that only counts (rows lost, duplicates): load does not
        change its figures, so a busy machine does not hold them back. ``scratch=True`` (a smoke
        run with small sizes) always writes under ``tmp/``: its figures are never committed.
        """
        self.name = name
        self.load_before = load_average()
        self.scratch = scratch
        self.busy = timing and self.load_before > max_load
        self.max_load = max_load
        self.started = datetime.now(UTC).isoformat(timespec="seconds")
        if self.busy:
            print(
                f"warning: load average {self.load_before} > {max_load} before the run: "
                "results go to bench/results/tmp/ and the committed figures stay"
            )

    def time(self, fn: Callable[[], Any], *, repeat: int = 3, warmup: int = 1) -> dict[str, Any]:
        """Time ``fn`` after ``warmup`` calls, ``repeat`` times; median, all timings, load beside them.

        Raises:
            ValueError: ``repeat`` below 3 or ``warmup`` below 1.
        """
        if repeat < 3:
            raise ValueError("repeat each cell at least 3 times")
        if warmup < 1:
            raise ValueError("warm up each cell at least once")
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return {
            "median_s": statistics.median(times),
            "times_s": [round(t, 6) for t in times],
            "load": load_average(),
        }

    def meta(self) -> dict[str, Any]:
        """Machine and load facts recorded beside every result."""
        return {
            "started": self.started,
            "load_before": self.load_before,
            "load_after": load_average(),
            "max_load": self.max_load,
            "busy": self.busy,
            "scratch": self.scratch,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        }

    def path(self, name: str | None = None) -> Path:
        """Where results go: the committed file, or ``tmp/`` when the machine was busy."""
        folder = RESULTS / "tmp" if self.busy or self.scratch else RESULTS
        folder.mkdir(parents=True, exist_ok=True)
        return folder / f"{name or self.name}.json"

    def write(self, results: dict[str, Any], name: str | None = None) -> Path:
        """Write ``results`` plus :meth:`meta` (to tmp/ when busy); returns the path."""
        out = self.path(name)
        out.write_text(json.dumps({**results, "meta": self.meta()}, indent=2, default=str) + "\n")
        return out

    def merge(
        self,
        keys: dict[str, Any],
        name: str | None = None,
        rows_by: dict[str, str] | None = None,
        nested: Iterable[str] = (),
    ) -> Path:
        """Merge ``keys`` into an existing results file (several scripts share ``seams.json``).

        The read-modify-write holds a lock, so scripts merging into one file at once lose nothing.

        Args:
            keys: top-level keys to write (replacing what the file holds under them).
            name: the results file's name (default: this run's).
            rows_by: for a key holding a list of rows, the row field that identifies a row
                (``{"faults": "dependency"}``): the file keeps its other rows and only rows with
                the same value are replaced, so a run of a few rows (``--only``) loses none.
            nested: keys holding a dict keyed by dataset, backend or N: the file keeps the entries
                this run did not measure (``--datasets``, ``--backends``, ``--n``), and replaces
                the ones it did.
        """
        out = self.path(name)
        with _locked(out):
            current = json.loads(out.read_text()) if out.exists() else {}
            meta = current.pop("meta", {}) if isinstance(current.get("meta"), dict) else {}
            keys = {k: _merge_rows(current.get(k), v, (rows_by or {}).get(k)) for k, v in keys.items()}
            for k in set(nested) & set(keys):
                if isinstance(current.get(k), dict) and isinstance(keys[k], dict):
                    keys[k] = {**current[k], **keys[k]}
            current.update(keys)
            meta[",".join(sorted(keys))] = self.meta()
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({**current, "meta": meta}, indent=2, default=str) + "\n")
            tmp.replace(out)
        return out


def _merge_rows(old: Any, new: Any, field: str | None) -> Any:
    """``new``, or with ``field``: ``old``'s rows with those of ``new`` put in their place (or added)."""
    if field is None or not isinstance(old, list) or not isinstance(new, list):
        return new
    incoming = {row.get(field): row for row in new}
    kept = [incoming.pop(row.get(field), row) for row in old]
    return kept + [row for row in new if row.get(field) in incoming]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path``'s name (a file in the git-ignored ``tmp/``) for the block."""
    folder = RESULTS / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{path.parent.name}-{path.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of ``rows`` (dicts with the same keys)."""
    if not rows:
        return "(no rows)"
    cols = list(rows[0])
    width = {c: max(len(str(c)), *(len(_fmt(r.get(c))) for r in rows)) for c in cols}
    lines = ["  ".join(str(c).ljust(width[c]) for c in cols)]
    lines.append("  ".join("-" * width[c] for c in cols))
    lines += ["  ".join(_fmt(r.get(c)).ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
