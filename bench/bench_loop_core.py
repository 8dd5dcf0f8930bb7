"""The labeling loop's core figures: implicit-feedback precision/recall, selection and export speed, memory.

- ``implicit_feedback_precision`` / ``implicit_feedback_recall``: the rule + rephrase detector on the
  ``test`` split of ``labeling/data/followups.jsonl`` (the rules and the threshold were tuned on the
  ``tune`` split only), with the project's MiniLM embedder. Counting, not timing: any load.
- ``select_s_100k``: selection (signals + turns read from the chat log, reasons, de-dup, cap) over a
  SQLite chat log of ``--turns`` turns (default 100,000) of which ``--flagged`` (10,000) are flagged:
  40% thumbs-down, 30% low faithfulness, 20% empty or citation-only, 10% implicit feedback.
- ``export_s_10k``: ``labeling.export`` in DPO format of ``--pairs`` (10,000) human-labeled pairs.
- ``peak_rss_mb``: the process's peak resident memory.

Timed cells follow bench/_common.py (warm-up, 3 repeats, median, load; results go to
bench/results/tmp/ when the machine was busy before the run).

Usage:
    python bench/bench_loop_core.py [--turns 100000] [--flagged 10000] [--pairs 10000] [--no-timing]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
from _common import Run  # noqa: E402
from sqlalchemy import insert  # noqa: E402

from chatlog import ChatLog, conversations, feedback, turns  # noqa: E402
from labeling._implicit import REPHRASE_SIMILARITY, detect_many  # noqa: E402
from labeling._store import PairStore, labels, pairs  # noqa: E402
from ragloop.settings import Settings  # noqa: E402

FOLLOWUPS = HERE.parent / "labeling" / "data" / "followups.jsonl"
T0 = datetime(2026, 10, 1, tzinfo=UTC)


def implicit_figures() -> dict[str, Any]:
    """Precision and recall of the detector on each split of the labeled follow-ups."""
    from retrieval import get_embedder

    rows = [json.loads(line) for line in FOLLOWUPS.read_text(encoding="utf-8").splitlines()]
    embed = get_embedder(Settings()).embed_documents
    out: dict[str, Any] = {}
    for split in ("tune", "test"):
        part = [r for r in rows if r["split"] == split]
        got = detect_many([(r["previous_question"], r["followup"]) for r in part], embed)
        tp = sum(v.dissatisfied and r["dissatisfied"] for v, r in zip(got, part, strict=True))
        fp = sum(v.dissatisfied and not r["dissatisfied"] for v, r in zip(got, part, strict=True))
        fn = sum(not v.dissatisfied and r["dissatisfied"] for v, r in zip(got, part, strict=True))
        out[split] = {
            "n": len(part),
            "positives": sum(r["dissatisfied"] for r in part),
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
        }
    return out


def build_log(path: Path, n_turns: int, n_flagged: int, seed: int = 0) -> ChatLog:
    """A chat log of ``n_turns`` turns in 5-turn conversations, ``n_flagged`` of them flagged."""
    from eval import LocalFaithfulness, evaluations

    rng = np.random.default_rng(seed)
    log = ChatLog(f"sqlite:///{path}")
    idx = rng.permutation(n_turns)
    flagged = idx[:n_flagged]
    kinds = {}
    cuts = [int(n_flagged * f) for f in (0.4, 0.7, 0.9)]
    for j, i in enumerate(flagged):
        kinds[int(i)] = (
            "down" if j < cuts[0] else "low" if j < cuts[1] else "empty" if j < cuts[2] else "implicit"
        )
    batch = 5000
    with log.engine.begin() as conn:
        conn.execute(
            insert(conversations),
            [{"conversation_id": f"c{c:06d}", "created_at": T0} for c in range((n_turns + 4) // 5)],
        )
    for start in range(0, n_turns, batch):
        rows, fb, ev = [], [], []
        vecs = rng.standard_normal((min(batch, n_turns - start), 384)).astype("<f4")
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        for k, i in enumerate(range(start, min(start + batch, n_turns))):
            kind = kinds.get(i)
            nxt = kinds.get(i - 1) == "implicit" and i % 5 != 0  # the follow-up of an implicit turn
            rows.append(
                {
                    "turn_id": f"t{i:07d}",
                    "conversation_id": f"c{i // 5:06d}",
                    "created_at": T0 + timedelta(seconds=i),
                    "status": "ok",
                    "user_message": "no, that's not what I asked" if nxt else f"question number {i}?",
                    "answer": "[1] [2]" if kind == "empty" else f"An answer about {i} [1].",
                    "query_embedding": vecs[k].tobytes(),
                    "retrieved": [{"text": f"passage {i}", "score": 0.8}],
                }
            )
            if kind == "down":
                fb.append(
                    {"turn_id": f"t{i:07d}", "value": -1, "rater": "u", "created_at": T0, "updated_at": T0}
                )
            score = 0.2 if kind == "low" else 0.9
            ev.append(
                {
                    "turn_id": f"t{i:07d}",
                    "evaluator": LocalFaithfulness.name,
                    "score": score,
                    "flagged": score < 0.5,
                    "needs_judge": False,
                    "created_at": T0,
                }
            )
        with log.engine.begin() as conn:
            conn.execute(insert(turns), rows)
            if fb:
                conn.execute(insert(feedback), fb)
            conn.execute(insert(evaluations), ev)
    return log


def fill_pairs(log: ChatLog, n_pairs: int) -> None:
    """``n_pairs`` pairs with one human label each (on the log's first turns)."""
    now = datetime.now(UTC)
    rng = random.Random(0)
    for start in range(0, n_pairs, 5000):
        ids = [f"t{i:07d}" for i in range(start, min(start + 5000, n_pairs))]
        with log.engine.begin() as conn:
            conn.execute(
                insert(pairs),
                [
                    {
                        "pair_id": tid,
                        "question": f"question {tid}?",
                        "context": [f"passage one for {tid}", f"passage two for {tid}"],
                        "response_a": f"answer A for {tid} [1].",
                        "response_b": f"answer B for {tid} [2].",
                        "a_is_original": rng.random() < 0.5,
                        "strategy": "strict",
                        "judge": {"preferred": "A", "score": 0.7, "reasoning": "r", "agent": "bench"},
                        "created_at": now,
                        "updated_at": now,
                    }
                    for tid in ids
                ],
            )
            conn.execute(
                insert(labels),
                [
                    {
                        "pair_id": tid,
                        "backend": "argilla",
                        "annotator": "ann",
                        "choice": rng.choice("AB"),
                        "failure_type": "none",
                        "labeled_at": now,
                    }
                    for tid in ids
                ],
            )


def main() -> None:
    """Measure, print, and merge into bench/results/loop.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=100_000)
    ap.add_argument("--flagged", type=int, default=10_000)
    ap.add_argument("--pairs", type=int, default=10_000)
    ap.add_argument("--no-timing", action="store_true", help="implicit-feedback figures only")
    args = ap.parse_args()

    counting = Run("loop", timing=False)
    implicit = implicit_figures()
    counting.merge(
        {
            "implicit_feedback_precision": implicit["test"]["precision"],
            "implicit_feedback_recall": implicit["test"]["recall"],
            "implicit_feedback_detail": {
                **implicit,
                "rephrase_similarity": REPHRASE_SIMILARITY,
                "note": "rules and threshold tuned on 'tune'; the headline figures are the 'test' split",
            },
        },
        name="loop",
    )
    print(json.dumps(implicit, indent=2))
    if args.no_timing:
        return

    from labeling._export import export
    from labeling._loop import LabelingLoop

    run = Run("loop")
    with tempfile.TemporaryDirectory() as tmp:
        log = build_log(Path(tmp) / "bench.db", args.turns, args.flagged)
        settings = Settings(data_dir=Path(tmp), loop_max_per_run=200)
        loop = LabelingLoop.selection_only(settings, log)
        sel = loop.select(since=T0 - timedelta(days=1))
        print(f"selection: {sel.flagged} flagged, {sel.counts}, {len(sel.selected)} selected")
        select_cell = run.time(lambda: loop.select(since=T0 - timedelta(days=1)))
        fill_pairs(log, args.pairs)
        store = PairStore(log)
        out = Path(tmp) / "export"
        report = export(store, "dpo", out)
        assert report.counts["train"] == args.pairs, report.counts
        export_cell = run.time(lambda: export(store, "dpo", out))
        log.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    results = {
        "select_s_100k": round(select_cell["median_s"], 3),
        "export_s_10k": round(export_cell["median_s"], 3),
        "peak_rss_mb": round(peak, 1),
        "loop_core_detail": {
            "turns": args.turns,
            "flagged_planted": args.flagged,
            "flagged_found": sel.flagged,
            "reasons_found": sel.counts,
            "pairs_exported": args.pairs,
            "select_cell": select_cell,
            "export_cell": export_cell,
        },
    }
    path = run.merge(results, name="loop")
    print(json.dumps(results, indent=2))
    print(f"merged into {path}")


if __name__ == "__main__":
    main()
