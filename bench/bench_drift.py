"""Drift benchmark: speed, false-alarm calibration and detection power, ours vs Evidently's default.

Data: real question embeddings (all-MiniLM-L6-v2): HaluEval QA's 10,000 questions (the "same source")
and the Python FAQ's questions (the "other topic"), fetched and embedded by the project, cached.

1. Speed: one drift decision on n vs n rows for n = 1k, 10k, 100k: ``embedding_drift_test`` (defaults)
   vs an Evidently ``Report([EmbeddingsDrift(embeddings_name=...)])`` with its default configuration,
   both from numpy arrays to a decision, same data, same run. Windows above the pool size are
   resampled with replacement plus small Gaussian noise (re-normalised): embedding 200k texts would
   take over ten minutes on 2 cores.
2. Calibration: false-alarm rate on same-source window pairs at n = 200, 1k, 10k, with the exact
   (Clopper-Pearson) 95% interval. n <= 1k pairs are disjoint draws without replacement from the pool;
   10k pairs are resampled with noise. Evidently's default decision (its ``model`` method, with
   bootstrap below 1k rows, exactly what ``EmbeddingsDrift`` does) is measured on the same pairs,
   fewer of them where it is slow; the counts are recorded.
3. Power at n = 1k: 5%, 10%, 20% of the current window replaced by Python FAQ questions.

Protocol (bench/_common.py): every speed cell is warmed up once and timed ``--repeat`` (>= 3) times;
the median is the figure, every timing and the load average sit beside it. When the 1-minute load
average was above 1.5 before the run started, the speed figures go to bench/results/tmp/ and the
committed file is left alone. False-alarm and power figures are counts on seeded data (the load
cannot change them); they are written with the speed figures, or alone with ``--parts``.

Results: bench/results/drift.json, rewritten after every step (a partial run still records); the
parts not run keep the committed figures. ``--quick`` (a smoke run) always writes to tmp/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench._common import RESULTS, Run  # noqa: E402
from monitoring.drift import embedding_drift_test  # noqa: E402
from monitoring.drift._evidently import default_embedding_drift  # noqa: E402
from monitoring.drift._sources import load_questions  # noqa: E402
from ragloop.settings import Settings  # noqa: E402

NAME = "drift"
NOISE = 0.01
PARTS = ("speed", "calibration", "power")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000], help="speed window sizes"
    )
    p.add_argument("--pairs", type=int, nargs=3, default=[500, 500, 200], help="our pairs at n=200, 1k, 10k")
    p.add_argument(
        "--evidently-pairs",
        type=int,
        nargs=3,
        default=[200, 100, 20],
        help="Evidently default pairs at n=200, 1k, 10k",
    )
    p.add_argument("--power-pairs", type=int, default=100, help="pairs per injected fraction at n=1k")
    p.add_argument("--evidently-power-pairs", type=int, default=40, help="Evidently's pairs per fraction")
    p.add_argument("--repeat", type=int, default=3, help="timings per speed cell after one warm-up (>= 3)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="what to measure")
    p.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: a tenth of the pairs, sizes <= 10k, written to tmp/",
    )
    args = p.parse_args()
    if args.repeat < 3:
        p.error("--repeat must be at least 3")
    if args.quick:
        args.sizes = [s for s in args.sizes if s <= 10_000]
        args.pairs = [max(10, n // 10) for n in args.pairs]
        args.evidently_pairs = [max(5, n // 10) for n in args.evidently_pairs]
        args.power_pairs = max(10, args.power_pairs // 10)
        args.evidently_power_pairs = max(5, args.evidently_power_pairs // 10)
    return args


def pools(settings: Settings) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings of HaluEval QA questions and Python FAQ questions (cached by text hash)."""
    same, _ = load_questions(settings, "halueval-qa")
    other, _ = load_questions(settings, "python-faq")
    key = hashlib.sha256("\n".join(same + other).encode()).hexdigest()[:16]
    cache = settings.cache_dir / "datasets" / f"bench-drift-pools-{key}.npz"
    if cache.exists():
        data = np.load(cache)
        return data["same"], data["other"]
    from retrieval import get_embedder

    embedder = get_embedder(settings)
    print(f"embedding {len(same)} + {len(other)} questions once (cached at {cache})")
    same_emb = embedder.embed_documents(same, progress=True)
    other_emb = embedder.embed_documents(other)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, same=same_emb, other=other_emb)
    return same_emb, other_emb


def resample(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rows drawn with replacement, jittered by Gaussian noise and re-normalised."""
    x = pool[rng.integers(len(pool), size=n)] + rng.normal(0, NOISE, size=(n, pool.shape[1])).astype(
        np.float32
    )
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def same_source_pair(pool: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two windows from one source: disjoint draws when the pool allows, else resampled."""
    if 2 * n <= len(pool):
        idx = rng.permutation(len(pool))[: 2 * n]
        return pool[idx[:n]], pool[idx[n:]]
    return resample(pool, n, rng), resample(pool, n, rng)


def clopper_pearson(k: int, n: int) -> tuple[float, float]:
    """Exact 95% binomial interval."""
    from scipy.stats import beta

    lo = float(beta.ppf(0.025, k, n - k + 1)) if k > 0 else 0.0
    hi = float(beta.ppf(0.975, k + 1, n - k)) if k < n else 1.0
    return lo, hi


def _rate(alarms: list[bool]) -> dict[str, Any]:
    k, n = int(sum(alarms)), len(alarms)
    lo, hi = clopper_pearson(k, n) if n else (float("nan"), float("nan"))
    return {
        "rate": k / n if n else None,
        "alarms": k,
        "pairs": n,
        "ci95": [lo, hi],
        "nominal_inside": lo <= 0.05 <= hi,
    }


def write(result: dict[str, Any], run: Run) -> Path:
    """Rewrite the JSON (after every step) where the run may write it."""
    result["load_avg_end"] = list(os.getloadavg())
    return run.write(result)


def speed(result: dict, same: np.ndarray, sizes: list[int], run: Run, repeat: int) -> None:
    """Seconds per decision, ours vs Evidently's default report: warm-up, ``repeat`` timings, median."""
    rng = np.random.default_rng(1)
    result["seconds"] = {}
    for n in tqdm(sizes, desc="speed"):
        ref, cur = same_source_pair(same, n, rng)
        ours = run.time(lambda ref=ref, cur=cur: embedding_drift_test(ref, cur), repeat=repeat)
        theirs = run.time(
            lambda ref=ref, cur=cur: default_embedding_drift(ref, cur, full_report=True), repeat=repeat
        )
        result["seconds"][str(n)] = {
            "ours": ours["median_s"],
            "evidently_default": theirs["median_s"],
            "speedup": theirs["median_s"] / ours["median_s"],
            "load_avg": list(os.getloadavg()),
            "ours_times_s": ours["times_s"],
            "evidently_times_s": theirs["times_s"],
            "load_1m_after_ours": ours["load"],
            "load_1m_after_evidently": theirs["load"],
        }
        write(result, run)


def calibration(result: dict, same: np.ndarray, pairs: list[int], ev_pairs: list[int], run: Run) -> None:
    """False-alarm rates on same-source pairs."""
    result["false_alarm_rate"] = {}
    for n, n_ours, n_ev in zip((200, 1_000, 10_000), pairs, ev_pairs, strict=True):
        rng = np.random.default_rng(n)
        ours, theirs = [], []
        for i in tqdm(range(max(n_ours, n_ev)), desc=f"false alarms n={n}"):
            ref, cur = same_source_pair(same, n, rng)
            if i < n_ours:
                ours.append(embedding_drift_test(ref, cur, seed=i).alarm)
            if i < n_ev:
                theirs.append(default_embedding_drift(ref, cur))
        result["false_alarm_rate"][str(n)] = {
            "ours": _rate(ours)["rate"],
            "evidently_default": _rate(theirs)["rate"],
            "pairs": len(ours),
            "evidently_pairs": len(theirs),
            "ours_detail": _rate(ours),
            "evidently_detail": _rate(theirs),
        }
        write(result, run)


def power(result: dict, same: np.ndarray, other: np.ndarray, n_pairs: int, n_ev: int, run: Run) -> None:
    """Share of shifted windows detected at n = 1k."""
    n = 1_000
    result["power_n1000"] = {}
    for frac in (0.05, 0.1, 0.2):
        rng = np.random.default_rng(int(frac * 1000))
        ours, theirs = [], []
        for i in tqdm(range(n_pairs), desc=f"power {frac:.0%}"):
            ref, cur = same_source_pair(same, n, rng)
            k = int(round(frac * n))
            # Other-topic rows without replacement while the pool lasts (no duplicate-made neighbours).
            injected = other[rng.permutation(len(other))[: min(k, len(other))]]
            if k > len(other):
                injected = np.vstack([injected, resample(other, k - len(other), rng)])
            cur = np.vstack([cur[: n - k], injected])[rng.permutation(n)]
            ours.append(embedding_drift_test(ref, cur, seed=i).alarm)
            if i < n_ev:
                theirs.append(default_embedding_drift(ref, cur))
        result["power_n1000"][str(frac)] = {
            "ours": float(np.mean(ours)),
            "evidently_default": float(np.mean(theirs)),
            "pairs": n_pairs,
            "evidently_pairs": len(theirs),
        }
        write(result, run)


def table(result: dict) -> str:
    """The headline numbers as a text table."""
    lines = [f"{'measure':<28}{'ours':>12}{'evidently':>12}{'note':>24}"]
    for n, row in result["seconds"].items():
        lines.append(
            f"{'seconds n=' + n:<28}{row['ours']:>12.2f}{row['evidently_default']:>12.2f}"
            f"{'x' + format(row['speedup'], '.1f') + ' faster':>24}"
        )
    for n, row in result["false_alarm_rate"].items():
        ci, pairs = row["ours_detail"]["ci95"], row["pairs"]
        note = f"CI [{ci[0]:.3f},{ci[1]:.3f}] {pairs}p"
        lines.append(
            f"{'false alarms n=' + n:<28}{row['ours']:>12.3f}{row['evidently_default']:>12.3f}{note:>24}"
        )
    for frac, row in result["power_n1000"].items():
        lines.append(
            f"{'power n=1000 at ' + frac:<28}{row['ours']:>12.2f}{row['evidently_default']:>12.2f}{'':>24}"
        )
    return "\n".join(lines)


def _previous(run: Run) -> dict[str, Any]:
    """The committed results (their parts not re-run are kept as they are)."""
    path = RESULTS / f"{NAME}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> None:
    """Run the benchmark and print the table."""
    args = _parse()
    settings = Settings()
    # Timings are held back on a busy machine; counts alone (no speed part) are not load-sensitive.
    run = Run(NAME, timing="speed" in args.parts, scratch=args.quick)
    result: dict[str, Any] = {
        "seconds": {},
        "false_alarm_rate": {},
        "power_n1000": {},
        **{k: v for k, v in _previous(run).items() if k != "meta"},
    }
    result.update(
        {
            "benchmark": "drift",
            "load_avg_start": list(os.getloadavg()),
            "settings": {"alpha": 0.05, "permutations": 199, "dims": 20, "max_rows": 5000, "noise": NOISE},
            "protocol": (
                f"speed cells: 1 warm-up, {args.repeat} timings, median reported with every timing and the "
                "load beside it; figures not committed when the 1-minute load average was > 1.5 at the start"
            ),
            "data": (
                "HaluEval QA questions (same source, 10k pool) and Python FAQ questions (other topic), "
                "embedded with all-MiniLM-L6-v2; windows larger than half the pool are resampled with "
                f"replacement plus N(0, {NOISE}^2) noise per dimension, re-normalised"
            ),
            "evidently_default": "Report([EmbeddingsDrift(name)]) default: model method, ROC AUC > 0.55, "
            "bootstrap when reference < 1000 rows; false alarms/power use the same method directly",
        }
    )
    result.pop("machine", None)  # now in meta (cpus, python, load before/after)
    t0 = time.perf_counter()
    same, other = pools(settings)
    result["pool_sizes"] = {"same": len(same), "other": len(other)}
    parts_meta = result.setdefault("parts_measured", {})
    if "speed" in args.parts:
        speed(result, same, args.sizes, run, args.repeat)
        parts_meta["speed"] = run.meta()
    if "calibration" in args.parts:
        calibration(result, same, args.pairs, args.evidently_pairs, run)
        parts_meta["calibration"] = run.meta()
    if "power" in args.parts:
        power(result, same, other, args.power_pairs, args.evidently_power_pairs, run)
        parts_meta["power"] = run.meta()
    result["wall_seconds"] = time.perf_counter() - t0
    path = write(result, run)
    print(table(result))
    print(
        f"written {path}"
        + (" (busy or smoke run: the committed figures stay)" if path.parent.name == "tmp" else "")
    )


if __name__ == "__main__":
    main()
