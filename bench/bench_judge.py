"""Pairwise judge accuracy on HaluEval: given the knowledge, is the right answer preferred?

For each HaluEval task (QA, dialogue, summarization) every held-out item is one pair with the same
knowledge: the right output and the hallucinated one. Which one is shown as A is a seeded coin flip
per item. A judge is correct when it prefers the right one; a tie counts as wrong.

Judges:
- ``local``: eval.LocalPairwise, the local faithfulness evidence used pairwise (a logistic model on
  the difference of the two answers' features, fitted on the tuning split by ``--tune``);
  antisymmetric by construction; its order consistency is measured anyway (both orders scored);
- ``faithfulness_only``: the two local faithfulness scores compared (the higher wins), the local
  judge before ``local-pairwise-1``;
- ``length_only``: prefer the longer (or shorter: the direction is chosen on the tuning split).
- ``llm_judge``: labeling.PairwiseJudge's LLM alone (the local 0.5B model), both orders averaged;
  order consistency = share of pairs where the two orders prefer the same answer.
- ``combination``: the shipped judge, labeling.PairwiseJudge with both: the local verdict alone when
  it is sure (P outside the LLM band), else ``combine(llm, local)`` with the shipped weight.
  Measured on the first ``--n-local`` pairs, with the LLM asked only where the band needs it.

Split: the items of each task are shuffled with ``random.Random(20231)`` exactly as
bench/bench_faithfulness.py does; its first 1,500 are the tuning split the local scorer (and the
length direction here) were fitted on. Reported pairs are held-out items only. The combination's
weight and slope were fixed a priori (not tuned on any item).

Raw per-item outcomes go to ``bench/results/.raw/judge-<task>.jsonl`` (resumable: an LLM run can
be stopped and continued); the summary is merged into ``bench/results/loop.json``.

Usage:
    python bench/bench_judge.py --tune            # fit eval/_pairwise_weights.py on the tuning split
    python bench/bench_judge.py [--n-local 1000] [--judge-n 100] [--llm-url URL] [--no-llm]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import Run  # noqa: E402
from bench_faithfulness import SEED, TASKS, split, task_items  # noqa: E402
from tqdm import tqdm  # noqa: E402

from eval import LOCAL_PAIRWISE_VERSION  # noqa: E402
from labeling._judge import (  # noqa: E402
    LLM_BAND,
    LOCAL_WEIGHT,
    PairwiseJudge,
    combine,
    openai_complete,
)
from ragloop.settings import Settings  # noqa: E402

RAW = HERE / "results" / ".raw"
#: L2 strength (inverse) of the pairwise fit. Accuracy moved by under 0.005 on every task across
#: C = 0.03-1, so this choice does not tune the reported figures.
TUNE_C = 0.1


def orient(n: int) -> list[bool]:
    """Per held-out item: True when the right answer is shown as A (seeded coin flips)."""
    rng = random.Random(SEED + 1)
    return [rng.random() < 0.5 for _ in range(n)]


def length_direction(items: list[tuple[list[str], str | None, str, str]]) -> int:
    """+1 to prefer the longer answer, -1 the shorter: whichever wins more tuning items."""
    longer = sum(len(r.split()) > len(h.split()) for _, _, r, h in items)
    shorter = sum(len(r.split()) < len(h.split()) for _, _, r, h in items)
    return 1 if longer >= shorter else -1


def tune_pairwise(settings: Settings, n_items: int, c: float = TUNE_C) -> None:
    """Fit eval/_pairwise_weights.py on the tuning split of all three tasks, pooled.

    Each tuning item is one pair (right, hallucinated) and is used in both orders (labels 1 and 0,
    features negated), so the fit has no intercept and stays antisymmetric.
    """
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from eval import LocalFaithfulness, LocalPairwise
    from eval._embed import get_encoder
    from eval._pairwise import pair_features, words

    pairwise = LocalPairwise(LocalFaithfulness(get_encoder(settings, threads=1)))
    xs: list[list[float]] = []
    counts: dict[str, int] = {}
    for task in TASKS:
        items = task_items(settings, task)
        tune_idx, _ = split(len(items))
        for i in tqdm(tune_idx[:n_items], desc=f"pair features {task}", unit="pair"):
            ctx, q, right, hallu = items[i]
            _, vr = pairwise.vector(right, ctx, q)  # raises: a tuning run must not skip failures
            _, vh = pairwise.vector(hallu, ctx, q)
            xs.append(pair_features(vr, vh, words(" ".join(ctx)), words(q)))
        counts[task] = min(n_items, len(tune_idx))
    x = np.array(xs)
    x2 = np.vstack([x, -x])
    y = np.r_[np.ones(len(x)), np.zeros(len(x))]
    model = LogisticRegression(fit_intercept=False, C=c, max_iter=20000).fit(x2, y)
    lo = 0
    for task, n in counts.items():
        acc = float(np.mean(model.decision_function(x[lo : lo + n]) > 0))
        print(f"tuning-split pairwise accuracy {task}: {acc:.4f}")
        lo += n
    path = HERE.parent / "eval" / "_pairwise_weights.py"
    lines = [
        '"""Coefficients of eval._pairwise (the local comparison): GENERATED by bench_judge.py --tune.',
        "",
        f"Fitted on the tuning split only (seed {SEED}; the first {n_items} tuning items of each",
        f"HaluEval task: {counts}), each pair in both orders;",
        f"logistic regression without intercept, C={c}, on eval._pairwise.PAIR_FEATURES.",
        '"""',
        "",
        "WEIGHTS = (",
        *(f"    {v!r}," for v in model.coef_[0].tolist()),
        ")",
        "",
    ]
    path.write_text("\n".join(lines))
    print(f"wrote {path}")


def raw_path(task: str) -> Path:
    """The resumable raw outcomes of one task."""
    return RAW / f"judge-{task}.jsonl"


def load_raw(task: str) -> dict[int, dict[str, Any]]:
    """Raw outcomes by held-out position."""
    path = raw_path(task)
    out: dict[int, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            out.setdefault(row["pos"], {}).update(row)
    return out


def append_raw(task: str, row: dict[str, Any]) -> None:
    """Append one outcome (merged by position when read)."""
    RAW.mkdir(parents=True, exist_ok=True)
    with raw_path(task).open("a") as fh:
        fh.write(json.dumps(row) + "\n")


def weights_signature() -> str:
    """A short hash of the shipped pairwise weights: raw outcomes of other weights are recomputed."""
    import hashlib

    from eval import _pairwise_weights

    return hashlib.sha256(repr(_pairwise_weights.WEIGHTS).encode()).hexdigest()[:12]


def run_local(task: str, held: list, flips: list[bool], n: int, direction: int) -> None:
    """Local comparison, faithfulness scores and length verdicts for the first ``n`` held-out items.

    Items already done with the shipped weights are skipped. The pairwise probability is computed in
    both orders (right as A, then as B) so its order consistency is measured, not assumed.
    """
    from eval import LocalFaithfulness, LocalPairwise
    from eval._embed import get_encoder
    from eval._pairwise import pair_features, preference, words

    sig = weights_signature()
    done = load_raw(task)
    todo = [i for i in range(min(n, len(held))) if done.get(i, {}).get("pair_sig") != sig]
    if not todo:
        return
    pairwise = LocalPairwise(LocalFaithfulness(get_encoder(Settings(), threads=1)))
    for i in tqdm(todo, desc=f"local {task}", unit="pair"):
        ctx, q, right, hallu = held[i]
        sr, vr = pairwise.vector(right, ctx, q)
        sh, vh = pairwise.vector(hallu, ctx, q)
        nc, nq = words(" ".join(ctx)), words(q)
        p_right = preference(pair_features(vr, vh, nc, nq))
        p_right_swapped = 1.0 - preference(pair_features(vh, vr, nc, nq))
        lr, lh = len(right.split()), len(hallu.split())
        length_ok = (lr - lh) * direction > 0
        append_raw(
            task,
            {
                "pos": i,
                "a_is_right": flips[i],
                "local_right": sr,
                "local_hallu": sh,
                "pair_p_right": p_right,
                "pair_p_right_swapped": p_right_swapped,
                "pair_sig": sig,
                "length_ok": length_ok,
            },
        )


def band_positions(task: str, n_local: int, band: float) -> list[int]:
    """Held-out positions among the first ``n_local`` where the local comparison is unsure."""
    raw = load_raw(task)
    return [
        i
        for i in range(n_local)
        if "pair_p_right" in raw.get(i, {}) and abs(raw[i]["pair_p_right"] - 0.5) < band
    ]


def run_llm(
    task: str,
    held: list,
    flips: list[bool],
    positions: list[int],
    judge: PairwiseJudge,
    deadline: float,
) -> None:
    """LLM verdicts (both orders) for the held-out ``positions``, until ``deadline`` (epoch s)."""
    done = load_raw(task)
    todo = [i for i in positions if done.get(i, {}).get("llm_p_a") is None]
    for i in tqdm(todo, desc=f"llm {task}", unit="pair"):
        if time.time() > deadline:
            print(f"time budget reached: {task} stopped at {i}")
            return
        ctx, q, right, hallu = held[i]
        a, b = (right, hallu) if flips[i] else (hallu, right)
        question = q or "Summarize the document."
        try:
            p_a, consistent, reasoning = judge.judge_llm(question, ctx, a, b)
        except Exception as exc:  # noqa: BLE001 - a failed call is an error, counted
            append_raw(task, {"pos": i, "llm_error": f"{type(exc).__name__}: {exc}"[:300], "llm_p_a": None})
            continue
        append_raw(
            task,
            {
                "pos": i,
                "a_is_right": flips[i],
                "llm_p_a": p_a,
                "llm_consistent": consistent,
                "reasoning": reasoning[:400],
            },
        )


def summarize(task: str, n_local: int, judge_n: int, band: float, n_combined: int) -> dict[str, Any]:
    """Accuracy and order consistency per judge from the raw outcomes of one task.

    ``llm_judge`` is measured on the first ``judge_n`` held-out pairs (every one asked, an unbiased
    sample); ``combination`` on the first ``n_local``, the LLM asked only inside the band.
    """
    raw = load_raw(task)
    sig = weights_signature()
    local_rows = [raw[i] for i in range(n_local) if raw.get(i, {}).get("pair_sig") == sig]
    llm_rows = [raw[i] for i in range(judge_n) if raw.get(i, {}).get("llm_p_a") is not None]
    errors = sum(
        1 for i in range(judge_n) if raw.get(i, {}).get("llm_error") and raw[i].get("llm_p_a") is None
    )

    def p_right(p_a: float, row: dict[str, Any]) -> float:
        return p_a if row["a_is_right"] else 1.0 - p_a

    out: dict[str, Any] = {}
    out["local"] = {
        "accuracy": _mean(r["pair_p_right"] > 0.5 for r in local_rows),
        "order_consistency": _mean(
            (r["pair_p_right"] > 0.5) == (r["pair_p_right_swapped"] > 0.5) for r in local_rows
        ),
        "n": len(local_rows),
    }
    out["faithfulness_only"] = {
        "accuracy": _mean(r["local_right"] > r["local_hallu"] for r in local_rows),
        "order_consistency": 1.0,
        "n": len(local_rows),
    }
    out["length_only"] = {
        "accuracy": _mean(r["length_ok"] for r in local_rows),
        "order_consistency": 1.0,
        "n": len(local_rows),
    }
    if llm_rows:
        out["llm_judge"] = {
            "accuracy": _mean(p_right(r["llm_p_a"], r) > 0.5 for r in llm_rows),
            "order_consistency": _mean(bool(r["llm_consistent"]) for r in llm_rows),
            "n": len(llm_rows),
            "errors": errors,
        }
    comb: list[bool] = []
    consistent: list[bool] = []
    asked = missing = 0
    for r in local_rows[:n_combined]:
        local_right = r["pair_p_right"]
        if abs(local_right - 0.5) >= band:
            comb.append(local_right > 0.5)
            consistent.append((local_right > 0.5) == (r["pair_p_right_swapped"] > 0.5))
            continue
        asked += 1
        if r.get("llm_p_a") is None:
            missing += 1
            continue
        llm_right = p_right(r["llm_p_a"], r)
        comb.append(combine(llm_right, local_right) > 0.5)
        consistent.append(bool(r["llm_consistent"]))
    out["combination"] = {
        "accuracy": _mean(comb),
        "order_consistency": _mean(consistent),
        "n": len(comb),
        "llm_band": band,
        "llm_asked_share": round(asked / min(n_combined, len(local_rows)), 4) if local_rows else None,
        "band_pairs_without_llm_verdict": missing,
    }
    return out


def _mean(values: Any) -> float | None:
    vals = [float(v) for v in values]
    return round(sum(vals) / len(vals), 4) if vals else None


def main() -> None:
    """Run the judges, then merge the summary into bench/results/loop.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n-local", type=int, default=1000, help="held-out pairs per task for local/length")
    ap.add_argument("--judge-n", type=int, default=100, help="held-out pairs per task for the LLM judge")
    ap.add_argument("--llm-url", help="an OpenAI-compatible base URL serving the local 0.5B model")
    ap.add_argument("--model", default=None, help="model name (default RAGLOOP_LLM_MODEL)")
    ap.add_argument("--no-llm", action="store_true", help="local scorer and length baseline only")
    ap.add_argument("--llm-only", action="store_true", help="the LLM judge only (run --no-llm beside it)")
    ap.add_argument(
        "--budget-min", type=float, default=60.0, help="stop the LLM part after this many minutes"
    )
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    ap.add_argument("--report-only", action="store_true", help="summarise the raw outcomes and merge")
    ap.add_argument("--note", default="", help="how the run went (recorded in judge_setup)")
    ap.add_argument("--band", type=float, default=LLM_BAND, help="the combination's LLM band")
    ap.add_argument("--no-band", action="store_true", help="skip the LLM calls on the band pairs")
    ap.add_argument(
        "--n-combined", type=int, default=None, help="held-out pairs for the combination (default --n-local)"
    )
    ap.add_argument("--tune", action="store_true", help="fit eval/_pairwise_weights.py on the tuning split")
    ap.add_argument("--tune-items", type=int, default=1500, help="tuning items per task for --tune")
    args = ap.parse_args()
    settings = Settings()
    if args.tune:
        tune_pairwise(settings, args.tune_items)
        return
    run = Run("loop", timing=False)
    data = {}
    for task in args.tasks:
        items = task_items(settings, task)
        tune_idx, test_idx = split(len(items))
        held = [items[i] for i in test_idx]
        flips = orient(len(held))
        data[task] = (held, flips, length_direction([items[i] for i in tune_idx]))
    if not (args.report_only or args.llm_only):
        # Round-robin in slices so a slow machine leaves every task with a similar n.
        for start in range(0, args.n_local, 50):
            for task in args.tasks:
                held, flips, direction = data[task]
                run_local(task, held, flips, min(args.n_local, start + 50), direction)
    n_combined = args.n_combined or args.n_local
    if not (args.no_llm or args.report_only):
        url = args.llm_url or settings.llm_base_url
        model = args.model or settings.llm_model
        judge = PairwiseJudge(openai_complete(url, "sk-local", model, timeout_s=300), model)
        deadline = time.time() + args.budget_min * 60
        # First the unbiased sample (every one of the first judge_n pairs), then the pairs the
        # shipped combination asks the LLM about; round-robin in slices so a time budget leaves
        # every task with a similar n.
        for start in range(0, args.judge_n, 10):
            for task in args.tasks:
                held, flips, _ = data[task]
                run_llm(task, held, flips, list(range(start, min(args.judge_n, start + 10))), judge, deadline)
        if not args.no_band:
            bands = {t: band_positions(t, n_combined, args.band) for t in args.tasks}
            for start in range(0, max((len(b) for b in bands.values()), default=0), 10):
                for task in args.tasks:
                    held, flips, _ = data[task]
                    run_llm(task, held, flips, bands[task][start : start + 10], judge, deadline)
    # Every task is summarised from its raw outcomes, whichever ran now.
    summary = {task: summarize(task, args.n_local, args.judge_n, args.band, n_combined) for task in TASKS}
    # Keyed judge -> task (check_targets reads judge_pairwise_accuracy.combined.<task>).
    names = {"combination": "combined", "llm_judge": "llm"}
    accuracy: dict[str, dict[str, float]] = {}
    consistency: dict[str, dict[str, float]] = {}
    for t, s in summary.items():
        for j, v in s.items():
            accuracy.setdefault(names.get(j, j), {})[t] = v["accuracy"]
            consistency.setdefault(names.get(j, j), {})[t] = v["order_consistency"]
    detail = {
        "judge_pairwise_detail": summary,
        "judge_setup": {
            "split": "bench_faithfulness.py split (seed 20231, first 1500 items tune): held-out items only",
            "local": f"eval.LocalPairwise {LOCAL_PAIRWISE_VERSION} (weights {weights_signature()}), "
            "fitted on the tuning split by --tune",
            "combination": f"local alone when |P_local - 0.5| >= {args.band}; else "
            f"{LOCAL_WEIGHT} * P_local + {1 - LOCAL_WEIGHT:.1f} * P_llm (both orders averaged); "
            "weight fixed a priori",
            "llm_judge_sample": f"the first {args.judge_n} held-out pairs of each task, every one asked",
            "order_consistency": "share of pairs whose verdict is the same with the answers swapped "
            "(for the LLM: its two single-order verdicts agree)",
            "tie": "P = 0.5 counted as wrong",
            "llm": args.model or settings.llm_model,
            "note": args.note,
        },
    }
    path = run.merge(
        {"judge_pairwise_accuracy": accuracy, "judge_order_consistency": consistency, **detail}, name="loop"
    )
    print(json.dumps(summary, indent=2))
    print(f"merged into {path}")


if __name__ == "__main__":
    main()
