"""Verified citations and the grounding gate, with the real local LLM: coverage, precision, before/after.

Issue 13, "Citations that are verified, not hoped for" and "A grounding gate". Each question is
asked through the real chat service (retrieval, the local LLM, the gate with
``RAGLOOP_GATE_STRATEGY``); the chat log keeps the model's own draft beside the gated answer
(``turns.extra["gate"]``), so one run gives both sides:

* ``citation_coverage[dataset]``: of the shown answers that are grounded (local faithfulness at or
  above the threshold), the share with at least one verified citation. Beside it
  (``citations[dataset]``): the same share for the model's own answers (verifier run on the draft)
  and for the model's own markers before verification (the ~15% the issue starts from);
* ``citation_precision[dataset]``: the share of the shown answers' citations that point to a gold
  passage (``eval._harness.is_relevant``), over the turns whose passages include a gold one;
* ``unsupported_shown_share_before/_after[dataset]``: the share of answered turns whose shown
  answer is under the threshold (empty and marker-only answers count as unsupported): the draft
  before, the gated answer after (a ``warned`` answer counts as unsupported, shown with its
  warning); ``unsupported_unwarned_share_after`` is the share shown unsupported without one;
* ``reference_recall[dataset][before|after]`` and ``contains_reference`` likewise, with the
  harness's metrics (``eval._metrics``);
* ``gate_latency_ms[dataset]``: p50/p95 of the time the gate added per answered turn (written only
  when the load allowed, see bench/_common.py).

The indexes are built once under ``--work``: the FAQ and the tutorial of the python3.11-doc sources
(the FAQ's gold pages among distractors), and HaluEval QA's knowledge (``--corpus-size`` items).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench._common import Run, table  # noqa: E402
from ragloop.settings import Settings  # noqa: E402

DATASETS = ("python-faq", "halueval-qa")
SEED = 0


def index_settings(work: Path, dataset: str, corpus_size: int) -> tuple[Settings, list[Path]]:
    """Settings of the dataset's bench index (never the user's) and the paths it indexes."""
    from retrieval import fetch_corpus

    if dataset == "python-faq":
        docs = fetch_corpus(Settings(corpus="python-docs"), progress=False)
        paths = [docs / "faq", docs / "tutorial"]
        return Settings(data_dir=work / "python", collection="faq_tutorial"), paths
    from eval._datasets import halueval_cases

    # The sample is a prefix of the seeded order, so any limit up to corpus_size writes the same folder.
    _, folder = halueval_cases(Settings(), corpus_size, SEED, corpus_size)
    return Settings(data_dir=work / f"halueval-{corpus_size}", collection="halueval_qa"), [folder]


def cases_of(dataset: str, limit: int, corpus_size: int) -> list[Any]:
    """The seeded sample of ``limit`` questions (the harness's)."""
    from eval._datasets import faq_cases, halueval_cases

    if dataset == "python-faq":
        return faq_cases(Settings(), limit, SEED)
    return halueval_cases(Settings(), limit, SEED, corpus_size)[0]


def build(work: Path, datasets: list[str], corpus_size: int) -> None:
    """Index each dataset's corpus (incremental: a second call only checks)."""
    from retrieval import ingest

    for ds in datasets:
        settings, paths = index_settings(work, ds, corpus_size)
        print(ingest(paths, settings, progress=True).summary(), flush=True)


async def ask_interleaved(
    services: dict[str, Any], cases: dict[str, list[Any]], scorers: dict[str, Any], deadline: datetime | None
) -> dict[str, dict[str, Any]]:
    """Ask question i of every dataset in turn, scoring each turn at once, until done or ``deadline``.

    Interleaving keeps the datasets' sample sizes equal when the deadline stops the run. Failed
    turns and refusals (no passage above the threshold) are counted, not scored.
    """
    out: dict[str, dict[str, Any]] = {ds: {"rows": [], "asked": 0, "failed": 0} for ds in services}
    total = sum(len(c) for c in cases.values())
    with tqdm(total=total, desc="questions", unit="q") as bar:
        for i in range(max(len(c) for c in cases.values())):
            for ds, service in services.items():
                if i >= len(cases[ds]):
                    continue
                if deadline is not None and datetime.now(UTC) >= deadline:
                    print(f"deadline {deadline:%H:%M} UTC reached: stopping", flush=True)
                    return out
                case = cases[ds][i]
                out[ds]["asked"] += 1
                bar.update(1)
                try:
                    res = await service.run_turn(case.question)
                except Exception as exc:  # noqa: BLE001 - a failed turn is a data point
                    out[ds]["failed"] += 1
                    print(f"{case.case_id}: {type(exc).__name__}: {exc}", flush=True)
                    continue
                if res.status == "ok" and res.sources:
                    out[ds]["rows"].append(scorers[ds](case, res))
    return out


def strip_label(answer: str) -> str:
    """The quote of an extractive answer without its label, in any language (the label is not a claim)."""
    return answer.split("\n\n> ", 1)[1] if "\n\n> " in answer else answer


def score_turn(
    case: Any, result: Any, row: dict[str, Any], verifier: Any, threshold: float
) -> dict[str, Any]:
    """Per-question facts: before/after support, citations and their precision, correctness."""
    from chatbot._prompts import parse_citations
    from eval import _metrics as m
    from eval import parse_answer
    from eval._harness import is_relevant

    sources = list(result.sources)
    texts = [s.text for s in sources]
    gold = [is_relevant(case, s.source, s.text) for s in sources]
    gate = (row.get("extra") or {}).get("gate") or {}
    draft = gate.get("original_answer", result.answer)
    shown = result.answer
    before = verifier.verify(draft, texts, result.standalone_question)
    status = result.gate
    if status == "passed":
        after_faith = gate.get("faithfulness")
    elif status == "retried":
        after_faith = gate.get("retry_faithfulness")
    elif status == "extractive":
        after_faith = verifier.verify(strip_label(shown), texts, result.standalone_question).faithfulness
    else:
        after_faith = None  # warned: shown under a warning, counted as unsupported

    def unsupported(faith: float | None, empty: bool) -> bool:
        return empty or faith is None or faith < threshold

    sentences = parse_answer(shown).sentences
    cited = [c for c in result.citations if 1 <= c["source"] <= len(gold)]
    hits = [gold[c["source"] - 1] for c in cited]
    return {
        "case_id": case.case_id,
        "gate": status,
        "reason": gate.get("reason"),
        "gate_ms": gate.get("gate_ms"),
        "n_sources": len(sources),
        "has_gold": any(gold),
        "draft": draft,
        "shown": shown,
        "model_markers": bool(parse_citations(draft, len(sources))),
        "draft_faithfulness": before.faithfulness,
        "draft_grounded": not unsupported(before.faithfulness, before.empty),
        "draft_verified_cited": bool(before.result.citations),
        "shown_faithfulness": after_faith,
        "shown_grounded": status != "warned" and not unsupported(after_faith, not sentences),
        "shown_cited": bool(result.citations),
        "citations": len(result.citations),
        "gold_hits": sum(hits),
        "sources": [
            {"title": s.title, "file": Path(s.source).name, "gold": g}
            for s, g in zip(sources, gold, strict=True)
        ],
        "cited": [
            {"sentence": c["sentence"], "source": c["source"], "gold": g}
            for c, g in zip(cited, hits, strict=True)
        ],
        "warned": status == "warned",
        "reference_recall_before": m.reference_recall(draft, case.reference),
        "reference_recall_after": m.reference_recall(shown, case.reference),
        "contains_reference_before": m.contains_reference(draft, case.reference),
        "contains_reference_after": m.contains_reference(shown, case.reference),
    }


def share(rows: list[dict[str, Any]], key: str) -> float | None:
    """Share of ``rows`` where ``key`` is true (None for no rows)."""
    return round(sum(bool(r[key]) for r in rows) / len(rows), 4) if rows else None


def mean(values: list[float]) -> float | None:
    """Mean, rounded (None for no values)."""
    return round(statistics.fmean(values), 4) if values else None


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered))) - 1))], 2)


def summarize(rows: list[dict[str, Any]], n_asked: int) -> dict[str, Any]:
    """The dataset's figures over its answered turns (status ok with passages)."""
    grounded_shown = [r for r in rows if r["shown_grounded"]]
    grounded_draft = [r for r in rows if r["draft_grounded"]]
    with_gold = [r for r in rows if r["has_gold"]]
    cited = sum(r["citations"] for r in with_gold)
    return {
        "n_asked": n_asked,
        "n_answered": len(rows),
        "citation_coverage": share(grounded_shown, "shown_cited"),
        "citation_coverage_draft_verified": share(grounded_draft, "draft_verified_cited"),
        "citation_coverage_model_markers": share(grounded_draft, "model_markers"),
        "n_grounded_shown": len(grounded_shown),
        "n_grounded_draft": len(grounded_draft),
        "citation_precision": round(sum(r["gold_hits"] for r in with_gold) / cited, 4) if cited else None,
        "n_citations_scored": cited,
        "n_with_gold": len(with_gold),
        "unsupported_before": round(1 - (share(rows, "draft_grounded") or 0), 4) if rows else None,
        "unsupported_after": round(1 - (share(rows, "shown_grounded") or 0), 4) if rows else None,
        "unsupported_unwarned_after": round(
            sum(1 for r in rows if not r["shown_grounded"] and not r["warned"]) / len(rows), 4
        )
        if rows
        else None,
        "reference_recall": {
            "before": mean([r["reference_recall_before"] for r in rows]),
            "after": mean([r["reference_recall_after"] for r in rows]),
        },
        "contains_reference": {
            "before": share(rows, "contains_reference_before"),
            "after": share(rows, "contains_reference_after"),
        },
        "gate": dict(Counter(r["gate"] for r in rows)),
        "reasons": dict(Counter(r["reason"] for r in rows if r["reason"])),
        "gate_ms": [r["gate_ms"] for r in rows if r["gate_ms"] is not None],
    }


def run_all(args: argparse.Namespace, llm_url: str, tmp: Path) -> dict[str, dict[str, Any]]:
    """Ask every dataset's questions through its gated chat service; rows and summary per dataset."""
    import chatbot
    from eval import CitationVerifier, LocalFaithfulness, get_encoder

    services, cases, scorers = {}, {}, {}
    for ds in args.datasets:
        settings, _ = index_settings(args.work, ds, args.corpus_size)
        settings = settings.model_copy(
            update={
                "openai_base_url": llm_url,
                "database_url": f"sqlite:///{tmp / f'{ds}.db'}",
                "gate_enabled": True,
                "gate_strategy": args.strategy,
                "telemetry": False,
            }
        )
        service = chatbot.build_service(settings)
        threshold = settings.faithfulness_threshold
        verifier = CitationVerifier(LocalFaithfulness(get_encoder(settings), threshold=threshold))

        def score(
            case: Any, res: Any, service: Any = service, verifier: Any = verifier, t: float = threshold
        ) -> Any:
            row = service.chatlog.get_turn(res.turn_id) or {}
            return score_turn(case, res, row, verifier, t)

        done = {r["case_id"] for path in args.skip_done or [] for r in json.loads(Path(path).read_text())}
        todo = [c for c in cases_of(ds, args.limit, args.corpus_size) if c.case_id not in done]
        services[ds], cases[ds], scorers[ds] = service, todo, score
    deadline = None
    if args.deadline:
        hh, mm = (int(x) for x in args.deadline.split(":"))
        deadline = datetime.now(UTC).replace(hour=hh, minute=mm, second=0, microsecond=0)
    done = asyncio.run(ask_interleaved(services, cases, scorers, deadline))
    out = {}
    for ds, d in done.items():
        (args.work / f"rows-{ds}.json").write_text(json.dumps(d["rows"], indent=1, default=str))
        out[ds] = {"rows": d["rows"], "summary": summarize(d["rows"], d["asked"]) | {"n_failed": d["failed"]}}
    return out


def replay_all(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Re-gate the drafts of earlier runs (``--replay`` rows files) with today's verifier and gate.

    The drafts are the real local model's answers, kept in the rows files; the retrieval is re-run
    on the same index (deterministic) and the gate (extractive strategy: no LLM) applied to each
    draft as the chat applies it. This measures a change of the verifier or the gate on fixed
    answers, without waiting for the LLM. A case in several files keeps its last draft.
    """
    import asyncio as aio
    from types import SimpleNamespace

    from chatbot._gate import GroundingGate
    from eval import CitationVerifier, LocalFaithfulness, get_encoder
    from retrieval import Retriever

    drafts: dict[str, str] = {}
    for path in args.replay:
        for row in json.loads(Path(path).read_text()):
            drafts[row["case_id"]] = row["draft"]
    out: dict[str, dict[str, Any]] = {}
    for ds in args.datasets:
        settings, _ = index_settings(args.work, ds, args.corpus_size)
        settings = settings.model_copy(update={"gate_strategy": "extractive"})
        retriever, gate = Retriever(settings), GroundingGate.from_settings(settings)
        verifier = CitationVerifier(LocalFaithfulness(get_encoder(settings), threshold=gate.threshold))
        rows = []
        cases = [c for c in cases_of(ds, args.limit, args.corpus_size) if c.case_id in drafts]
        for case in tqdm(cases, desc=f"replay {ds}", unit="q"):
            hits = [c for c in retriever.search(case.question, k=settings.top_k).chunks]
            sources = [c for c in hits if c.score >= settings.score_threshold]
            if not sources:
                continue

            async def gated(case: Any = case, sources: list[Any] = sources, gate: Any = gate) -> Any:
                items = [x async for x in gate.run(drafts[case.case_id], case.question, sources, None, None)]
                return items[-1]["gate"]

            g = aio.run(gated())
            result = SimpleNamespace(
                sources=sources,
                answer=g.answer,
                gate=g.status,
                citations=g.citations,
                standalone_question=case.question,
            )
            rows.append(score_turn(case, result, {"extra": {"gate": g.record()}}, verifier, gate.threshold))
        (args.work / f"replay-rows-{ds}.json").write_text(json.dumps(rows, indent=1, default=str))
        out[ds] = {"rows": rows, "summary": summarize(rows, len(cases)) | {"n_failed": 0}}
    return out


def start_llm(logs: Path) -> tuple[Any, str]:
    """The real local LLM (as tests/conftest.py starts it); returns (process, OpenAI base URL)."""
    from ragloop.process import ManagedProcess, free_port, http_ok

    port = free_port()
    argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(port), "--parallel", "1"]
    proc = ManagedProcess("llm", argv, logs / "llm.log").start()
    proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), timeout=300)
    return proc, f"http://127.0.0.1:{port}/v1"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    p.add_argument("--limit", type=int, default=40, help="questions per dataset (seeded sample)")
    p.add_argument("--corpus-size", type=int, default=500, help="HaluEval knowledge items indexed")
    p.add_argument("--strategy", choices=("extractive", "retry"), default="extractive")
    p.add_argument("--llm-url", help="an OpenAI-compatible URL already serving the local model")
    p.add_argument(
        "--work", type=Path, default=Path.home() / ".cache/ragloop/bench/answers-citations", help="indexes"
    )
    p.add_argument("--deadline", help="HH:MM UTC: ask no further question after it (the n asked is recorded)")
    p.add_argument("--build-only", action="store_true", help="build the indexes and stop")
    p.add_argument("--scratch", action="store_true", help="write under bench/results/tmp/ (smoke runs)")
    p.add_argument(
        "--skip-done",
        nargs="+",
        type=Path,
        help="rows files of an earlier live run: ask only the sample's other questions (then --replay all)",
    )
    p.add_argument(
        "--merge-rows",
        nargs="+",
        type=Path,
        help="rows files of live runs (e.g. one and its --skip-done sequel): their figures together",
    )
    p.add_argument(
        "--replay",
        nargs="+",
        type=Path,
        help="rows files of earlier runs: re-gate their real-LLM drafts with today's code (no LLM)",
    )
    p.add_argument(
        "--gate-latency",
        action="store_true",
        help="with --replay: record only the gate's latency (the default extractive gate calls no LLM, "
        "so the replay times what users wait); the quality figures are left as they are",
    )
    args = p.parse_args(argv)
    if args.gate_latency and not args.replay:
        p.error("--gate-latency needs --replay")
    build(args.work, args.datasets, args.corpus_size)
    if args.build_only:
        return 0
    quality = Run("answers", timing=False, scratch=args.scratch)
    timing = Run(
        "answers",
        scratch=args.scratch or args.merge_rows is not None or (bool(args.replay) and not args.gate_latency),
    )
    if args.merge_rows:
        out = {}
        for ds in args.datasets:
            rows = [
                r for f in args.merge_rows for r in json.loads(f.read_text()) if r["case_id"].startswith(ds)
            ]
            out[ds] = {"rows": rows, "summary": summarize(rows, len(rows)) | {"n_failed": 0}}
    elif args.replay:
        out = replay_all(args)
    else:
        with tempfile.TemporaryDirectory(prefix="bench-citations-") as tmp:
            proc, url = (None, args.llm_url) if args.llm_url else start_llm(Path(tmp))
            try:
                out = run_all(args, url, Path(tmp))
            finally:
                if proc is not None:
                    proc.stop()
    sums = {ds: o["summary"] for ds, o in out.items()}
    keys = {
        "citation_coverage": {ds: s["citation_coverage"] for ds, s in sums.items()},
        "citation_precision": {ds: s["citation_precision"] for ds, s in sums.items()},
        "unsupported_shown_share_before": {ds: s["unsupported_before"] for ds, s in sums.items()},
        "unsupported_shown_share_after": {ds: s["unsupported_after"] for ds, s in sums.items()},
        "unsupported_unwarned_share_after": {ds: s["unsupported_unwarned_after"] for ds, s in sums.items()},
        "reference_recall": {ds: s["reference_recall"] for ds, s in sums.items()},
        "contains_reference": {ds: s["contains_reference"] for ds, s in sums.items()},
        "citations_gate": {
            ds: {k: v for k, v in s.items() if k != "gate_ms"}
            | {"strategy": args.strategy, "limit": args.limit, "seed": SEED, "corpus_size": args.corpus_size}
            | {
                "drafts": "replayed: " + ", ".join(p.name for p in args.replay)
                if args.replay
                else "live" + (f" ({len(args.merge_rows)} runs' rows merged)" if args.merge_rows else "")
            }
            for ds, s in sums.items()
        },
    }
    latency = {
        "gate_latency_ms": {
            ds: {
                "p50": percentile(s["gate_ms"], 50),
                "p95": percentile(s["gate_ms"], 95),
                "n": len(s["gate_ms"]),
            }
            for ds, s in sums.items()
        }
    }
    # Keyed by dataset: a run of some datasets (--datasets) keeps the others' figures.
    if not args.gate_latency:
        print(f"wrote {quality.merge(keys, nested=keys)}")
    print(f"wrote {timing.merge(latency, nested=latency)}")
    rows = [
        {
            "dataset": ds,
            "n": s["n_answered"],
            "coverage": s["citation_coverage"],
            "precision": s["citation_precision"],
            "unsup_before": s["unsupported_before"],
            "unsup_after": s["unsupported_after"],
            "ref_recall_before": s["reference_recall"]["before"],
            "ref_recall_after": s["reference_recall"]["after"],
            "gate_p50_ms": latency["gate_latency_ms"][ds]["p50"],
            "gate_p95_ms": latency["gate_latency_ms"][ds]["p95"],
        }
        for ds, s in sums.items()
    ]
    print(table(rows))
    for ds, s in sums.items():
        print(ds, "gate:", s["gate"], "reasons:", s["reasons"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
