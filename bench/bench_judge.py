"""Pairwise judge accuracy on HaluEval: given the knowledge, is the right answer preferred?

For each HaluEval task (QA, dialogue, summarization) every held-out item is one pair with the same
knowledge: the right output and the hallucinated one. Which one is shown as A is a seeded coin flip
per item. A judge is correct when it prefers the right one; a tie counts as wrong.

Judges:
- ``local``: eval.LocalFaithfulness used pairwise (score both answers, the higher wins);
  symmetric by construction, so its order consistency is 1.0.
- ``length_only``: prefer the longer (or shorter: the direction is chosen on the tuning split).
- ``llm_judge``: labeling.PairwiseJudge's LLM alone (the local 0.5B model), both orders averaged;
  order consistency = share of pairs where the two orders prefer the same answer.
- ``combination``: labeling.judge.combine(llm, local) with the shipped weight; measured on the pairs
  the LLM judged (``n`` says how many).

Split: the items of each task are shuffled with ``random.Random(20231)`` exactly as
bench/bench_faithfulness.py does; its first 1,500 are the tuning split the local scorer (and the
length direction here) were fitted on. Reported pairs are held-out items only. The combination's
weight and slope were fixed a priori (not tuned on any item).

Raw per-item outcomes go to ``bench/results/.raw/judge-<task>.jsonl`` (resumable: an LLM run can
be stopped and continued); the summary is merged into ``bench/results/loop.json``.

Usage:
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

from labeling._judge import (  # noqa: E402
    LOCAL_SLOPE,
    LOCAL_WEIGHT,
    PairwiseJudge,
    combine,
    local_pairwise,
    openai_complete,
)
from ragloop.settings import Settings  # noqa: E402

RAW = HERE / "results" / ".raw"


def orient(n: int) -> list[bool]:
    """Per held-out item: True when the right answer is shown as A (seeded coin flips)."""
    rng = random.Random(SEED + 1)
    return [rng.random() < 0.5 for _ in range(n)]


def length_direction(items: list[tuple[list[str], str | None, str, str]]) -> int:
    """+1 to prefer the longer answer, -1 the shorter: whichever wins more tuning items."""
    longer = sum(len(r.split()) > len(h.split()) for _, _, r, h in items)
    shorter = sum(len(r.split()) < len(h.split()) for _, _, r, h in items)
    return 1 if longer >= shorter else -1


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


def run_local(task: str, held: list, flips: list[bool], n: int, direction: int) -> None:
    """Local scores and length verdicts for the first ``n`` held-out items (skips those done)."""
    from eval import LocalFaithfulness
    from eval._embed import get_encoder

    done = load_raw(task)
    todo = [i for i in range(min(n, len(held))) if "local_right" not in done.get(i, {})]
    if not todo:
        return
    local = LocalFaithfulness(get_encoder(Settings()))
    for i in tqdm(todo, desc=f"local {task}", unit="pair"):
        ctx, q, right, hallu = held[i]
        sr, sh = local.score(right, ctx, q).score, local.score(hallu, ctx, q).score
        lr, lh = len(right.split()), len(hallu.split())
        length_ok = (lr - lh) * direction > 0
        append_raw(
            task,
            {"pos": i, "a_is_right": flips[i], "local_right": sr, "local_hallu": sh, "length_ok": length_ok},
        )


def run_llm(task: str, held: list, flips: list[bool], n: int, judge: PairwiseJudge, deadline: float) -> None:
    """LLM verdicts (both orders) for the first ``n`` held-out items, until ``deadline`` (epoch s)."""
    done = load_raw(task)
    todo = [i for i in range(min(n, len(held))) if done.get(i, {}).get("llm_p_a") is None]
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


def summarize(task: str, n_local: int) -> dict[str, Any]:
    """Accuracy and order consistency per judge from the raw outcomes of one task."""
    raw = load_raw(task)
    local_rows = [raw[i] for i in sorted(raw) if i < n_local and "local_right" in raw[i]]
    llm_rows = [r for r in (raw[i] for i in sorted(raw)) if r.get("llm_p_a") is not None]
    both = [r for r in llm_rows if "local_right" in r]
    errors = sum(1 for r in raw.values() if r.get("llm_error") and r.get("llm_p_a") is None)

    def p_right(p_a: float, row: dict[str, Any]) -> float:
        return p_a if row["a_is_right"] else 1.0 - p_a

    out: dict[str, Any] = {}
    out["local"] = {
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
        comb = []
        for r in both:
            sa, sb = (
                (r["local_right"], r["local_hallu"])
                if r["a_is_right"]
                else (r["local_hallu"], r["local_right"])
            )
            comb.append(p_right(combine(r["llm_p_a"], local_pairwise(sa, sb)), r) > 0.5)
        out["combination"] = {
            "accuracy": _mean(comb),
            "order_consistency": out["llm_judge"]["order_consistency"],
            "n": len(comb),
            "local_on_same_pairs": _mean(r["local_right"] > r["local_hallu"] for r in both),
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
    args = ap.parse_args()
    settings = Settings()
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
    if not (args.no_llm or args.report_only):
        url = args.llm_url or settings.llm_base_url
        model = args.model or settings.llm_model
        judge = PairwiseJudge(openai_complete(url, "sk-local", model, timeout_s=300), model)
        deadline = time.time() + args.budget_min * 60
        # Round-robin in slices so a time budget leaves every task with a similar n.
        for start in range(0, args.judge_n, 10):
            for task in args.tasks:
                held, flips, _ = data[task]
                run_llm(task, held, flips, min(args.judge_n, start + 10), judge, deadline)
    summary = {task: summarize(task, args.n_local) for task in args.tasks}
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
            "combination": f"{LOCAL_WEIGHT} * sigmoid({LOCAL_SLOPE} * (local_a - local_b)) + "
            f"{1 - LOCAL_WEIGHT:.1f} * llm, fixed a priori",
            "tie": "counted as wrong",
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
