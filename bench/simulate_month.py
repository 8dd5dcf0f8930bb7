"""Simulate a month of traffic through the real chain, then run the labeling loop over it.

What runs for real: the local LLM (``ragloop llm serve``), the retriever over a small Chroma index
built here (the Python FAQ answers plus the HaluEval knowledge passages of the sampled questions),
the application of :func:`ragloop.app.build_application` (chat service, chat log, online evaluator,
outbox worker), the drift detector (:func:`monitoring.drift.run_drift`), the labeling loop
(selection with reasons, candidates, the pairwise judge, :class:`labeling.PairStore`) and the DPO
export of ``ragloop loop export --format dpo``.

What is simulated, with the numbers stated in :data:`USER_MODEL` and :data:`ANNOTATOR_MODEL` (and in
docs/data-moat.md): who asks what and when, when a user rates an answer or writes a dissatisfied
follow-up, and which answer a human annotator prefers.

Timestamps: the chats run now, back to back; afterwards every row of a conversation (turns,
feedback, evaluations) is shifted by one offset so the conversation starts at its simulated time,
spread over the 30 days that end at the run's start. Relative times inside a conversation are kept.

Outputs: ``bench/results/moat.json`` (counts, ``timing=False`` for the rates; the thumbs-down to
export latency is wall-clock, with the load average beside it) and ``bench/results/moat_*.png``.

Example::

    .venv/bin/python bench/simulate_month.py --chats 300 --llm-url http://127.0.0.1:55789/v1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import pickle
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import Run, load_average  # noqa: E402

log = logging.getLogger("simulate_month")

#: The stated model of user behaviour (probabilities per answered turn).
USER_MODEL: dict[str, Any] = {
    "days": 30,
    "mix_weeks_1_3": {"python-faq": 0.7, "halueval-qa": 0.3},
    "mix_last_7_days": {"python-faq": 0.3, "halueval-qa": 0.7},
    "p_rephrased_question": 0.3,
    # An answer is "bad" when it misses the reference (FAQ: token F1 < 0.15; HaluEval: reference
    # recall < 0.5, its references are a few words), has no words, is a refusal, or the online
    # evaluator scored its faithfulness under 0.5 (the user notices unsupported claims).
    "bad_faq_token_f1_below": 0.15,
    "bad_halueval_recall_below": 0.5,
    "bad_faithfulness_below": 0.5,
    "p_rate_if_good": 0.03,
    "p_rate_if_bad": 0.06,
    "p_down_if_rated_bad": 0.85,
    "p_down_if_rated_good": 0.10,
    "p_dissatisfied_followup_if_bad": 0.35,
    "p_next_question_if_good": 0.15,
    "max_turns": 3,
}
#: The stated model of the human annotators.
ANNOTATOR_MODEL: dict[str, Any] = {
    "rule": "knows the reference answer; grades each response: correct (does not miss the reference "
    "by the user model's rule) > honest refusal ('I don't know') > wrong or no words (citations only); "
    "two correct ones by quality (FAQ token F1, HaluEval reference recall), 'tie' within tie_margin; "
    "equal grades otherwise 'tie'",
    "tie_margin": 0.05,
    "error_rate": 0.10,  # with this probability the annotator picks one of the other two choices
    "second_annotator_share": 0.30,
}

DISSATISFIED = (
    "No, that's wrong. {q}",
    "That doesn't answer my question. {r}",
    "{r}",
    "Are you sure? I don't think that's right. {q}",
    "not what I asked. {r}",
)
NEXT_QUESTION = ("Thanks! Another one: {q}", "Thanks, that helps. {q}", "{q}")
REPHRASE = (
    "Quick question: {q}",
    "{ql}",
    "Can you tell me: {q}",
    "I was wondering, {ql}",
    "{q} Thanks in advance.",
    "Please help: {q}",
)
_NO_ANSWER = re.compile(r"\b(?:don'?t|do not|cannot|can't) (?:know|find|answer)\b", re.I)


@dataclass(frozen=True)
class Item:
    """One source question with its reference answer."""

    dataset: str
    item_id: str
    question: str
    reference: str


def rephrase(question: str, rng: random.Random) -> str:
    """A template rephrasing of ``question`` (no LLM: deterministic given the seed)."""
    q = question.strip()
    ql = q[0].lower() + q[1:].rstrip("?").strip() if q else q
    return rng.choice(REPHRASE).format(q=q, ql=ql)


def quality(item: Item, answer: str) -> float:
    """How well ``answer`` matches the reference (FAQ token F1, HaluEval reference recall), in [0, 1]."""
    from eval._metrics import reference_recall, token_f1

    if item.dataset == "halueval-qa":
        return reference_recall(answer, item.reference)
    return token_f1(answer, item.reference)


def misses(item: Item, q: float) -> bool:
    """The user model's "misses the reference" rule."""
    limit = USER_MODEL[
        "bad_halueval_recall_below" if item.dataset == "halueval-qa" else "bad_faq_token_f1_below"
    ]
    return q < limit


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float | None, float | None]:
    """The Wilson 95% interval of a proportion ``k/n`` (None, None when n is 0)."""
    if n <= 0:
        return None, None
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def per_1000(k: int, n: int) -> dict[str, Any]:
    """``k`` out of ``n`` chats as a rate per 1,000 chats with its Wilson 95% interval."""
    lo, hi = wilson(min(k, n), n)
    return {
        "count": k,
        "n_chats": n,
        "per_1000": None if not n else round(1000 * k / n, 1),
        "ci95_per_1000": None if lo is None else [round(1000 * lo, 1), round(1000 * hi, 1)],  # type: ignore[operator]
    }


def kappa_agreement(a: list[str], b: list[str]) -> dict[str, Any]:
    """Percent agreement and Cohen's kappa of two label lists."""
    if not a:
        return {"n": 0, "percent_agreement": None, "cohen_kappa": None}
    from sklearn.metrics import cohen_kappa_score

    same = sum(x == y for x, y in zip(a, b, strict=True))
    lo, hi = wilson(same, len(a))
    kappa = float(cohen_kappa_score(a, b)) if len(set(a) | set(b)) > 1 else None
    return {
        "n": len(a),
        "percent_agreement": round(same / len(a), 3),
        "ci95": [round(lo, 3), round(hi, 3)],  # type: ignore[arg-type]
        "cohen_kappa": None if kappa is None or math.isnan(kappa) else round(kappa, 3),
    }


# --- setup ---------------------------------------------------------------------------------------


def load_items(settings: Any, n_faq: int, n_halu: int, seed: int) -> tuple[list[Item], list[Item], Path]:
    """The FAQ and HaluEval questions this month draws from, and the folder of their corpus files."""
    from eval._datasets import faq_cases, halueval_cases

    faq = [Item("python-faq", c.case_id, c.question, c.reference) for c in faq_cases(settings, n_faq, seed)]
    cases, _ = halueval_cases(settings, n_halu, seed, n_halu)
    corpus = settings.data_dir / "corpus"
    (corpus / "faq").mkdir(parents=True, exist_ok=True)
    (corpus / "halueval").mkdir(parents=True, exist_ok=True)
    for c in faq_cases(settings, None, seed):  # the whole FAQ is indexed: 179 answers
        (corpus / "faq" / f"{c.case_id}.txt").write_text(f"{c.question}\n\n{c.reference}\n", encoding="utf-8")
    for c in cases:
        (corpus / "halueval" / c.gold_source).write_text(c.gold_text.strip() + "\n", encoding="utf-8")
    halu = [Item("halueval-qa", c.case_id, c.question, c.reference) for c in cases]
    return faq, halu, corpus


def make_settings(workdir: Path, llm_url: str, max_tokens: int, event_driven: bool, top_k: int = 4) -> Any:
    """Settings for an isolated run: its own data dir, SQLite chat log and Chroma collection."""
    from pydantic import SecretStr

    from ragloop.settings import Settings

    return Settings().model_copy(
        update={
            "data_dir": workdir / "data",
            "collection": "moat",
            "chroma_url": None,
            "database_url": None,
            "openai_base_url": llm_url,
            "openai_api_key": SecretStr("sk-local"),
            "max_tokens": max_tokens,
            "top_k": top_k,
            "telemetry": False,
            "otlp_endpoint": None,
            "langsmith_api_key": None,
            "eval_online": True,
            "judge_sample_rate": 0.0,
            "eval_poll_s": 1.0,
            "loop_event_driven": event_driven,
            "loop_lookback_days": 0.0,
            "labeling_ui": "none",
            "outbox_poll_s": 0.5,
            "drift_dir": workdir / "data" / "drift",
            "drift_workspace": workdir / "data" / "drift-ws",
        }
    )


def start_llm_if_needed(url: str | None, workdir: Path) -> tuple[str, Any]:
    """The LLM URL to use; starts ``ragloop llm serve`` on a free port when none is given."""
    if url:
        return url, None
    import socket

    from ragloop.process import start_llm
    from ragloop.settings import Settings

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings = Settings().model_copy(
        update={"llm_port": port, "llm_parallel": 1, "data_dir": workdir / "data"}
    )
    proc = start_llm(settings)
    return f"http://127.0.0.1:{port}/v1", proc


# --- the month of chats --------------------------------------------------------------------------


def plan_chats(n: int, faq: list[Item], halu: list[Item], seed: int, start: datetime) -> list[dict[str, Any]]:
    """Each chat's simulated start time and first question (drawn with the traffic mix of its day)."""
    rng = random.Random(seed)
    days = USER_MODEL["days"]
    plan: list[dict[str, Any]] = []
    for i in range(n):
        at = start + timedelta(seconds=rng.uniform(0, days * 86400))
        late = at >= start + timedelta(days=days - 7)
        mix = USER_MODEL["mix_last_7_days" if late else "mix_weeks_1_3"]
        pool = faq if rng.random() < mix["python-faq"] else halu
        item = rng.choice(pool)
        text = (
            rephrase(item.question, rng)
            if rng.random() < USER_MODEL["p_rephrased_question"]
            else item.question
        )
        plan.append({"chat": i, "at": at, "item": item, "message": text, "rephrased": text != item.question})
    plan.sort(key=lambda p: p["at"])
    return plan


async def run_chats(
    service: Any,
    plan: list[dict[str, Any]],
    faq: list[Item],
    halu: list[Item],
    seed: int,
    budget_s: float | None = None,
) -> list[dict[str, Any]]:
    """Run the planned chats through the real service; returns one record per turn.

    Chats run in a seeded random order, so when ``budget_s`` runs out the chats done are a random
    sample of the whole month (not its first days); chats not started are left out of every count.
    """
    from tqdm import tqdm

    rng = random.Random(seed + 1)
    order = list(plan)
    random.Random(seed + 4).shuffle(order)
    deadline = None if budget_s is None else time.monotonic() + budget_s
    turns: list[dict[str, Any]] = []
    for chat in tqdm(order, desc="chats", unit="chat"):
        if deadline is not None and time.monotonic() > deadline:
            break
        conv = await asyncio.to_thread(service.new_conversation)
        item, message, kind = chat["item"], chat["message"], "first"
        for n in range(USER_MODEL["max_turns"]):
            t0 = time.perf_counter()
            try:
                res = await service.run_turn(message, conv)
            except Exception as exc:  # noqa: BLE001 - a failed turn is a data point
                turns.append(
                    {
                        "chat": chat["chat"],
                        "conv": conv,
                        "turn_id": getattr(exc, "turn_id", None),
                        "error": type(exc).__name__,
                        "item": item,
                        "kind": kind,
                        "n": n,
                    }
                )
                break
            answer = res.answer or ""
            q = quality(item, answer)
            refusal = res.status == "no_context" or bool(_NO_ANSWER.search(answer)) or not answer.strip()
            bad_ref = misses(item, q) or refusal
            rec = {
                "chat": chat["chat"],
                "conv": conv,
                "turn_id": res.turn_id,
                "status": res.status,
                "item": item,
                "kind": kind,
                "n": n,
                "quality": round(q, 4),
                "misses": bad_ref,
                "seconds": round(time.perf_counter() - t0, 3),
                "followup": None,
            }
            turns.append(rec)
            if n + 1 >= USER_MODEL["max_turns"]:
                break
            if bad_ref and rng.random() < USER_MODEL["p_dissatisfied_followup_if_bad"]:
                tmpl = rng.choice(DISSATISFIED)
                message = tmpl.format(q=item.question, r=rephrase(item.question, rng))
                rec["followup"], kind = "dissatisfied", "dissatisfied"
            elif not bad_ref and rng.random() < USER_MODEL["p_next_question_if_good"]:
                item = rng.choice(faq if item.dataset == "python-faq" else halu)
                message = rng.choice(NEXT_QUESTION).format(q=item.question)
                rec["followup"], kind = "next_question", "next_question"
            else:
                break
    return turns


def wait_for_scores(chatlog: Any, turn_ids: list[str], timeout_s: float) -> dict[str, float]:
    """Wait until the online evaluator scored every ``ok`` turn (or the timeout); faithfulness by turn."""
    from sqlalchemy import select

    from eval import LocalFaithfulness, evaluations

    deadline = time.monotonic() + timeout_s
    want = set(turn_ids)
    scores: dict[str, float] = {}
    while True:
        with chatlog.engine.connect() as conn:
            rows = conn.execute(
                select(evaluations.c.turn_id, evaluations.c.score).where(
                    evaluations.c.evaluator == LocalFaithfulness.name
                )
            ).all()
        scores = {t: float(s) for t, s in rows if s is not None}
        done = want & {t for t, _ in rows}
        if len(done) >= len(want) or time.monotonic() > deadline:
            if len(done) < len(want):
                log.warning("evaluator scored %d of %d turns before the timeout", len(done), len(want))
            return scores
        time.sleep(2.0)


def give_thumbs(service: Any, turns: list[dict[str, Any]], faith: dict[str, float], seed: int) -> None:
    """Apply the user model's thumbs through the real service (one rater per conversation)."""
    rng = random.Random(seed + 2)
    for t in turns:
        if not t.get("turn_id") or t.get("status") not in ("ok", "no_context"):
            continue
        f = faith.get(t["turn_id"])
        t["faithfulness"] = f
        bad = t["misses"] or (f is not None and f < USER_MODEL["bad_faithfulness_below"])
        t["bad"] = bad
        t["thumb"] = 0
        if rng.random() < USER_MODEL["p_rate_if_bad" if bad else "p_rate_if_good"]:
            down = rng.random() < USER_MODEL["p_down_if_rated_bad" if bad else "p_down_if_rated_good"]
            t["thumb"] = -1 if down else 1
            service.add_feedback(t["turn_id"], t["thumb"], source="simulated", rater=f"user-{t['conv'][:12]}")


def shift_month(chatlog: Any, plan: list[dict[str, Any]], turns: list[dict[str, Any]]) -> None:
    """Move each conversation's rows so it starts at its simulated time (relative times kept)."""
    from sqlalchemy import select, update

    from chatlog import conversations, feedback
    from chatlog import turns as turns_t
    from eval import evaluations

    at_of = {p["chat"]: p["at"] for p in plan}
    convs: dict[str, datetime] = {}
    for t in turns:
        convs.setdefault(t["conv"], at_of[t["chat"]])
    with chatlog.engine.begin() as conn:
        for conv, at in convs.items():
            rows = conn.execute(
                select(turns_t.c.turn_id, turns_t.c.created_at).where(turns_t.c.conversation_id == conv)
            ).all()
            if not rows:
                continue
            first = min(r[1] for r in rows)
            first = first if first.tzinfo else first.replace(tzinfo=UTC)
            delta = at - first
            ids = [r[0] for r in rows]
            for table, cols in (
                (turns_t, ("created_at", "completed_at")),
                (feedback, ("created_at", "updated_at")),
                (evaluations, ("created_at",)),
            ):
                for row in conn.execute(select(table).where(table.c.turn_id.in_(ids))).mappings().all():
                    values = {c: row[c] + delta for c in cols if row[c] is not None}
                    key = [k for k in table.primary_key.columns][0]
                    conn.execute(update(table).where(key == row[key.name]).values(**values))
            conn.execute(
                update(conversations).where(conversations.c.conversation_id == conv).values(created_at=at)
            )


# --- labels ----------------------------------------------------------------------------------------


def annotate(choice_true: str, rng: random.Random) -> str:
    """The simulated annotator: the true choice, or (with the error rate) one of the other two."""
    if rng.random() < ANNOTATOR_MODEL["error_rate"]:
        return rng.choice([c for c in ("A", "B", "tie") if c != choice_true])
    return choice_true


def rank(item: Item, answer: str) -> int:
    """The annotator's grade of one answer: 3 correct, 2 honest refusal, 1 wrong or no words."""
    from labeling._select import is_empty_answer

    if is_empty_answer(answer):
        return 1
    if _NO_ANSWER.search(answer):
        return 2
    return 1 if misses(item, quality(item, answer)) else 3


def true_choice(item: Item, a: str, b: str) -> str:
    """What an annotator who knows the reference prefers between A and B (no error).

    A correct answer (it does not miss the reference) beats an honest refusal, which beats a wrong
    answer or one with no words; two correct answers are ordered by quality (tie within the margin);
    otherwise equal grades are a tie.
    """
    ra, rb = rank(item, a), rank(item, b)
    if ra != rb:
        return "A" if ra > rb else "B"
    if ra == 3:
        qa, qb = quality(item, a), quality(item, b)
        if abs(qa - qb) >= ANNOTATOR_MODEL["tie_margin"]:
            return "A" if qa > qb else "B"
    return "tie"


def failure_type(item: Item, rejected: str) -> str:
    """The failure type an annotator records for the rejected answer."""
    if not rejected.strip() or _NO_ANSWER.search(rejected):
        return "refusal"
    return "hallucination" if misses(item, quality(item, rejected)) else "other"


def label_pairs(store: Any, item_of: dict[str, Item], seed: int) -> list[dict[str, Any]]:
    """Label every pair with annotator 1, a sample also with annotator 2; returns per-pair records."""
    from sqlalchemy import delete

    from labeling import labels
    from labeling._judge import preferred_of

    with store.engine.begin() as conn:  # a --reuse run labels afresh
        conn.execute(delete(labels).where(labels.c.backend == "simulated", labels.c.annotator.like("sim-%")))
    rng = random.Random(seed + 3)
    out = []
    for pair in store.iter_pairs():
        item = item_of.get(pair["pair_id"])
        if item is None:
            continue
        truth = true_choice(item, pair["response_a"], pair["response_b"])
        rec = {
            "pair_id": pair["pair_id"],
            "truth": truth,
            "judge": pair.get("judge") or {},
            "reasons": (pair.get("meta") or {}).get("reasons", []),
        }
        for who in ("sim-annotator-1", "sim-annotator-2"):
            if who.endswith("2") and rng.random() >= ANNOTATOR_MODEL["second_annotator_share"]:
                continue
            choice = annotate(truth, rng)
            rejected = pair["response_b"] if choice == "A" else pair["response_a"]
            ft = "none" if choice == "tie" else failure_type(item, rejected)
            store.record_label(
                pair["pair_id"], backend="simulated", annotator=who, choice=choice, failure_type=ft
            )
            rec[who] = choice
        j = rec["judge"]
        rec["judge_combined"] = j.get("preferred")
        rec["judge_llm"] = preferred_of(j["llm_score"]) if j.get("llm_score") is not None else None
        rec["judge_local"] = (
            preferred_of(j["local_pairwise"]) if j.get("local_pairwise") is not None else None
        )
        out.append(rec)
    return out


def llm_judge_sample(settings: Any, store: Any, labeled: list[dict[str, Any]], k: int, seed: int) -> None:
    """Ask the LLM judge (both orders) on ``k`` labeled pairs; adds its verdicts to their records."""
    from tqdm import tqdm

    from labeling._judge import combine, preferred_of
    from labeling._loop import judge_from_settings

    judge = judge_from_settings(settings, llm_judge=True)
    chosen = random.Random(seed + 5).sample(labeled, min(k, len(labeled)))
    for rec in tqdm(chosen, desc="LLM judge sample", unit="pair"):
        pair = store.get(rec["pair_id"])
        try:
            p_a, consistent, _ = judge.judge_llm(
                pair["question"], list(pair["context"] or []), pair["response_a"], pair["response_b"]
            )
        except Exception as exc:  # noqa: BLE001 - a failed verdict is counted, not fatal
            rec["judge_llm_error"] = f"{type(exc).__name__}: {exc}"
            continue
        local = rec["judge"].get("local_pairwise")
        rec["judge_llm"] = preferred_of(p_a)
        rec["judge_combined_llm"] = preferred_of(combine(p_a, local, settings.loop_judge_local_weight))
        rec["judge"]["order_consistent"] = consistent


# --- thumbs-down to export latency -----------------------------------------------------------------


def measure_latency(settings: Any, questions: list[str], repeats: int, workdir: Path) -> dict[str, Any]:
    """Wall-clock from a thumbs-down to its row in a DPO export, through the real event-driven path.

    The application is built with the loop sink (``RAGLOOP_LOOP_EVENT_DRIVEN``): the thumbs-down's
    outbox item wakes the worker, the sink makes, judges and saves the pair; then the simulated
    annotator labels it and ``labeling.export`` writes the DPO files. One warm-up, then ``repeats``.
    """
    from labeling import PairStore, export
    from ragloop.app import build_application

    app = build_application(settings)
    app.start()
    store = PairStore(app.chatlog)
    runs = []
    # One event loop for every turn: the chat model's async client is bound to the loop it first ran on.
    loop = asyncio.new_event_loop()
    try:
        for i, question in enumerate(questions[: repeats + 1]):
            res = loop.run_until_complete(app.service.run_turn(question))
            t0 = time.perf_counter()
            app.service.add_feedback(res.turn_id, -1, source="simulated", rater=f"latency-{i}")
            while store.get(res.turn_id) is None:
                if time.perf_counter() - t0 > 600:
                    raise TimeoutError("no pair 600 s after the thumbs-down")
                time.sleep(0.05)
            t_pair = time.perf_counter() - t0
            pair = store.get(res.turn_id)
            assert pair is not None
            # The annotator prefers the candidate (the stricter grounded answer) in this measurement.
            choice = "B" if pair["a_is_original"] else "A"
            store.record_label(
                res.turn_id, backend="simulated", annotator="latency", choice=choice, failure_type="other"
            )
            t_label = time.perf_counter() - t0
            out = workdir / f"latency-export-{i}"
            export(store, "dpo", out)
            rows = [
                json.loads(x)
                for x in (out / "standard" / "train.jsonl").read_text().splitlines()
                if x.strip()
            ]
            found = any(r.get("pair_id") == res.turn_id for r in rows)
            t_export = time.perf_counter() - t0
            runs.append(
                {
                    "pair_s": round(t_pair, 2),
                    "label_s": round(t_label, 2),
                    "export_s": round(t_export, 2),
                    "in_export": found,
                    "warmup": i == 0,
                    "load": load_average(),
                }
            )
            shutil.rmtree(out, ignore_errors=True)
    finally:
        app.stop()
        loop.close()
    timed = [r for r in runs if not r["warmup"]]
    return {
        "repeats": len(timed),
        "median_thumbs_down_to_pair_s": statistics.median(r["pair_s"] for r in timed) if timed else None,
        "median_thumbs_down_to_export_row_s": statistics.median(r["export_s"] for r in timed)
        if timed
        else None,
        "all_in_export": all(r["in_export"] for r in timed),
        "runs": runs,
        "judge": "llm+local" if settings.loop_judge_llm else "local only",
        "note": "label step is the simulated annotator recording at once; a human adds their own time",
    }


# --- plots -----------------------------------------------------------------------------------------


def plot(results: dict[str, Any], folder: Path) -> list[Path]:
    """Pairs per 1,000 chats by reason (flagged, paired, labeled into the export), with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reasons = ["thumbs_down", "implicit_feedback", "low_faithfulness", "drift_cluster", "any"]
    stages = [
        ("flagged_turns", "flagged turns"),
        ("pairs", "judged pairs"),
        ("dpo_rows", "DPO rows (human-labeled, not tie)"),
    ]
    fig, ax = plt.subplots(figsize=(9, 4.8))
    width = 0.27
    for s, (key, label) in enumerate(stages):
        vals: list[float] = []
        errs: list[list[float]] = [[], []]
        for r in reasons:
            cell = results["per_1000_chats"][key][r]
            v = cell["per_1000"] or 0.0
            lo, hi = cell["ci95_per_1000"] or (v, v)
            vals.append(v)
            errs[0].append(max(0.0, v - lo))
            errs[1].append(max(0.0, hi - v))
        xs = [i + (s - 1) * width for i in range(len(reasons))]
        ax.bar(xs, vals, width, yerr=errs, capsize=3, label=label)
    ax.set_xticks(
        range(len(reasons)),
        ["thumbs-down", "implicit\nfeedback", "low\nfaithfulness", "drift\ncluster", "any reason"],
    )
    ax.set_ylabel("per 1,000 chats (Wilson 95% CI)")
    n = results["traffic"]["chats"]
    ax.set_title(f"Labeling yield of a simulated month: {n} chats, {results['traffic']['turns']} turns")
    ax.legend()
    fig.tight_layout()
    out = folder / "moat_pairs_per_1000.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return [out]


# --- main ------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    p.add_argument("--chats", type=int, default=300, help="Conversations in the month (default 300).")
    p.add_argument("--faq", type=int, default=120, help="FAQ questions the chats draw from (default 120).")
    p.add_argument(
        "--halueval", type=int, default=120, help="HaluEval questions the chats draw from (default 120)."
    )
    p.add_argument("--llm-url", help="An OpenAI-compatible LLM to use (default: start `ragloop llm serve`).")
    p.add_argument("--max-tokens", type=int, default=160, help="Answer length cap (default 160).")
    p.add_argument("--max-pairs", type=int, default=1000, help="Cap of the loop run (default 1000).")
    p.add_argument(
        "--llm-judge", action=argparse.BooleanOptionalAction, default=True, help="Ask the LLM judge."
    )
    p.add_argument(
        "--latency-repeats", type=int, default=3, help="Timed thumbs-down -> export repeats (default 3)."
    )
    p.add_argument("--top-k", type=int, default=2, help="Passages per answer (default 2: short prompts).")
    p.add_argument(
        "--chat-budget-min",
        type=float,
        help="Stop starting chats after this many minutes (the chats done are a random sample of the month).",
    )
    p.add_argument(
        "--llm-judge-sample",
        type=int,
        help="Loop judges with the local scorer; then the LLM judge (both orders) on this many pairs.",
    )
    p.add_argument(
        "--latency-llm-judge",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="The event-driven pair in the latency measurement asks the LLM judge (the shipped default).",
    )
    p.add_argument("--no-latency", action="store_true", help="Skip the thumbs-down -> export measurement.")
    p.add_argument("--reuse", action="store_true", help="Reuse the chats already run in --workdir.")
    p.add_argument("--seed", type=int, default=0, help="Seed of the traffic and the annotators.")
    p.add_argument(
        "--workdir", type=Path, help="Where the run's chat log and index go (default: a temp dir)."
    )
    p.add_argument("--scratch", action="store_true", help="Write results under bench/results/tmp/ only.")
    args = p.parse_args(argv)
    if args.chats < 1 or args.faq < 1 or args.halueval < 1:
        p.error("--chats, --faq and --halueval must be at least 1")
    if args.latency_repeats < 3:
        p.error("--latency-repeats must be at least 3")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run = Run("moat", timing=False, scratch=args.scratch)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="ragloop-moat-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    llm_url, llm_proc = start_llm_if_needed(args.llm_url, workdir)
    try:
        return _main(args, run, workdir, llm_url, started)
    finally:
        if llm_proc is not None:
            llm_proc.stop()


def _main(args: argparse.Namespace, run: Run, workdir: Path, llm_url: str, started: float) -> int:
    from labeling import LabelingLoop, PairStore, export
    from ragloop.app import build_application
    from retrieval import ingest

    settings = make_settings(workdir, llm_url, args.max_tokens, event_driven=False, top_k=args.top_k)
    faq, halu, corpus = load_items(settings, args.faq, args.halueval, args.seed)
    report = ingest([corpus], settings, progress=True)
    print("index:", report.summary())
    month_start = (datetime.now(UTC) - timedelta(days=USER_MODEL["days"])).replace(microsecond=0)
    plan = plan_chats(args.chats, faq, halu, args.seed, month_start)

    # 1. the month of chats through the real application (chat service + online evaluator + outbox)
    from chatlog import ChatLog

    state_file = workdir / "state.pkl"
    if args.reuse and state_file.exists():
        state = pickle.loads(state_file.read_bytes())
        plan, turns, chat_s = state["plan"], state["turns"], state["chat_s"]
        print(f"reusing {len(plan)} chats, {len(turns)} turns from {state_file}")
    else:
        app = build_application(settings)
        app.start()
        t_chat = time.perf_counter()
        budget = None if args.chat_budget_min is None else 60 * args.chat_budget_min
        try:
            turns = asyncio.run(run_chats(app.service, plan, faq, halu, args.seed, budget))
            chat_s = time.perf_counter() - t_chat
            ok_ids = [t["turn_id"] for t in turns if t.get("status") == "ok"]
            faith = wait_for_scores(app.chatlog, ok_ids, timeout_s=900)
            give_thumbs(app.service, turns, faith, args.seed)
        finally:
            app.stop()
        done = {t["chat"] for t in turns}
        plan = [p for p in plan if p["chat"] in done]  # chats the budget left out count nowhere
        shift_chatlog = ChatLog(settings.chatlog_url)
        shift_month(shift_chatlog, plan, turns)
        shift_chatlog.close()
        state_file.write_bytes(pickle.dumps({"plan": plan, "turns": turns, "chat_s": chat_s}))

    chatlog = ChatLog(settings.chatlog_url)

    # 2. drift: the last 7 days (traffic mix changed) against the 7 days before
    drift: dict[str, Any] = {}
    try:
        from monitoring.drift import run_drift

        rep, expl = run_drift(
            settings, window="week", reference="previous", at=datetime.now(UTC), evidently=False
        )
        drift = {"alarm": bool(rep.alarm), "clusters": len(getattr(expl, "clusters", []) or [])}
    except Exception as exc:  # noqa: BLE001 - drift is one reason among four; report why it is missing
        drift = {"error": f"{type(exc).__name__}: {exc}"}
        log.warning("drift run failed: %s", exc)

    # 3. the labeling loop over the month (selection with reasons, candidates, judge, pairs)
    sampled_judge = args.llm_judge_sample is not None
    loop = LabelingLoop.from_settings(settings, chatlog, llm_judge=args.llm_judge and not sampled_judge)
    t_loop = time.perf_counter()
    loop_report = loop.run(since=month_start - timedelta(days=1), limit=args.max_pairs, progress=True)
    loop_s = time.perf_counter() - t_loop
    print(loop_report.summary())
    sel = loop_report.selection
    assert sel is not None

    # 4. simulated human labels, then the DPO export
    store = PairStore(chatlog)
    item_of = {t["turn_id"]: t["item"] for t in turns if t.get("turn_id")}
    labeled = label_pairs(store, item_of, args.seed)
    if sampled_judge:
        llm_judge_sample(settings, store, labeled, args.llm_judge_sample, args.seed)
    export_dir = workdir / f"export-dpo-{int(time.time())}"
    exp = export(store, "dpo", export_dir)
    dpo_ids = {
        json.loads(x)["pair_id"]
        for x in (export_dir / "standard" / "train.jsonl").read_text().splitlines()
        if x.strip()
    }
    loaded: int | str
    try:
        import datasets

        loaded = len(
            datasets.load_dataset(
                str(export_dir), "standard", split="train", cache_dir=tempfile.mkdtemp(prefix="hf-")
            )
        )
    except Exception as exc:  # noqa: BLE001 - recorded, not fatal
        loaded = f"{type(exc).__name__}: {exc}"

    # flagged reasons per turn from a full (uncapped) selection, pairs and rows by their reasons
    from labeling._select import load_signals, load_turns, select

    signals = load_signals(chatlog, since=None, threshold=settings.faithfulness_threshold)
    full = select(load_turns(chatlog), signals, max_selected=len(turns) + 10, dedupe_similarity=1.01)
    chat_of = {t["turn_id"]: t["chat"] for t in turns if t.get("turn_id")}
    reasons_all = ["thumbs_down", "implicit_feedback", "low_faithfulness", "empty_answer", "drift_cluster"]
    # only the month's turns count (a --reuse run's chat log also holds the latency turns)
    pair_reasons = {
        p["pair_id"]: (p.get("meta") or {}).get("reasons", [])
        for p in store.iter_pairs()
        if p["pair_id"] in chat_of
    }
    full.selected = {t: rs for t, rs in full.selected.items() if t in chat_of}

    def by_reason(ids_reasons: dict[str, list[str]]) -> dict[str, Any]:
        out = {r: per_1000(sum(r in rs for rs in ids_reasons.values()), len(plan)) for r in reasons_all}
        out["any"] = per_1000(len(ids_reasons), len(plan))
        chats = Counter(chat_of.get(t) for t in ids_reasons)
        out["any"]["chats_with_two_or_more"] = sum(1 for c, k in chats.items() if k > 1)
        return out

    n_turns = len([t for t in turns if t.get("turn_id")])
    answered = [t for t in turns if t.get("status") in ("ok", "no_context")]
    truth_dissat = {t["turn_id"] for t in turns if t.get("followup") == "dissatisfied"}
    flagged_implicit = {t for t, rs in full.selected.items() if "implicit_feedback" in rs}

    def judge_vs(key: str) -> dict[str, Any]:
        rows = [r for r in labeled if r.get(key) and r.get("sim-annotator-1")]
        return kappa_agreement([r[key] for r in rows], [r["sim-annotator-1"] for r in rows])

    both = [r for r in labeled if r.get("sim-annotator-2")]
    results: dict[str, Any] = {
        "command": "python bench/simulate_month.py " + " ".join(sys.argv[1:]),
        "user_model": USER_MODEL,
        "annotator_model": ANNOTATOR_MODEL,
        "config": {
            "chats": args.chats,
            "faq_pool": len(faq),
            "halueval_pool": len(halu),
            "max_tokens": args.max_tokens,
            "llm_judge": args.llm_judge,
            "candidate_strategy": settings.loop_candidate_strategy,
            "judge_local_weight": settings.loop_judge_local_weight,
            "faithfulness_threshold": settings.faithfulness_threshold,
            "model": settings.llm_model,
            "index_chunks": report.summary(),
            "seed": args.seed,
        },
        "traffic": {
            "chats": len(plan),
            "turns": n_turns,
            "answered_turns": len(answered),
            "errors": sum(1 for t in turns if t.get("error")),
            "turns_per_chat": round(n_turns / len(plan), 3),
            "bad_answer_share": round(sum(1 for t in answered if t.get("bad")) / max(1, len(answered)), 3),
            "thumbs_down": sum(1 for t in turns if t.get("thumb") == -1),
            "thumbs_up": sum(1 for t in turns if t.get("thumb") == 1),
            "rated_share_of_answers": round(
                sum(1 for t in answered if t.get("thumb")) / max(1, len(answered)), 4
            ),
            "dissatisfied_followups": len(truth_dissat),
            "next_question_followups": sum(1 for t in turns if t.get("followup") == "next_question"),
            "chat_wall_s": round(chat_s, 1),
            "median_turn_s": statistics.median(t["seconds"] for t in turns if t.get("seconds"))
            if answered
            else None,
        },
        "per_1000_chats": {
            "flagged_turns": by_reason(full.selected),
            "pairs": by_reason(pair_reasons),
            "dpo_rows": by_reason({p: rs for p, rs in pair_reasons.items() if p in dpo_ids}),
        },
        "per_1000_chats_note": (
            "Wilson 95% intervals on count/n_chats (exact when no chat holds two counted turns: "
            "see chats_with_two_or_more)"
        ),
        "implicit_detector_on_this_month": {
            "true_dissatisfied_followups": len(truth_dissat),
            "flagged": len(flagged_implicit),
            "true_positives": len(truth_dissat & flagged_implicit),
            "precision": round(len(truth_dissat & flagged_implicit) / len(flagged_implicit), 3)
            if flagged_implicit
            else None,
            "recall": round(len(truth_dissat & flagged_implicit) / len(truth_dissat), 3)
            if truth_dissat
            else None,
        },
        "drift": drift,
        "loop": {
            "summary": loop_report.summary(),
            "selected": len(sel.selected),
            "flagged": sel.flagged,
            "near_duplicates": sel.duplicates,
            "pairs_saved": loop_report.pairs_saved,
            "errors": len(loop_report.errors),
            "seconds": round(loop_s, 1),
        },
        "labels": {
            "pairs_labeled": len(labeled),
            "truth_choices": dict(Counter(r["truth"] for r in labeled)),
            "annotator_1_choices": dict(Counter(r.get("sim-annotator-1") for r in labeled)),
            "two_annotators": store.agreement(),
            "two_annotator_records": len(both),
        },
        "agreement_with_human": {
            "judge_combined_vs_annotator_1": judge_vs("judge_combined"),
            "judge_combined_with_llm_vs_annotator_1": judge_vs("judge_combined_llm"),
            "llm_judge_alone_vs_annotator_1": judge_vs("judge_llm"),
            "local_scorer_alone_vs_annotator_1": judge_vs("judge_local"),
            "judge_order_consistent_share": round(
                sum(1 for r in labeled if r["judge"].get("order_consistent"))
                / max(1, sum(1 for r in labeled if r["judge"].get("order_consistent") is not None)),
                3,
            ),
        },
        "export": {"summary": exp.summary(), "dpo_rows": len(dpo_ids), "datasets_load_dataset_rows": loaded},
    }
    chatlog.close()

    # 5. thumbs-down -> pair -> label -> export row, event-driven, wall-clock
    lat_settings = make_settings(workdir, llm_url, args.max_tokens, event_driven=True, top_k=args.top_k)
    lat_settings = lat_settings.model_copy(update={"loop_judge_llm": args.latency_llm_judge})
    questions = [i.question for i in faq[-(args.latency_repeats + 1) :]]
    if not args.no_latency:
        results["thumbs_down_to_export"] = measure_latency(
            lat_settings, questions, args.latency_repeats, workdir
        )
    results["total_wall_s"] = round(time.perf_counter() - started, 1)
    turns_dump = workdir / "turns.jsonl"
    with turns_dump.open("w") as fh:
        for t in turns:
            fh.write(
                json.dumps({k: (v.item_id if isinstance(v, Item) else v) for k, v in t.items()}, default=str)
                + "\n"
            )
    results["workdir"] = str(workdir)

    out = run.write(results)
    print(f"wrote {out}")
    folder = out.parent
    for png in plot(results, folder):
        print(f"wrote {png}")
    print(
        json.dumps(
            {
                k: results[k]
                for k in ("traffic", "agreement_with_human", "thumbs_down_to_export")
                if k in results
            },
            indent=1,
            default=str,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
