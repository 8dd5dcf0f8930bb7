"""The offline harness: run a dataset through the real chain, measure retrieval, answers and faithfulness.

``ragloop eval run --dataset halueval-qa|python-faq`` calls :func:`run_dataset`. A run is
reproducible: a seeded sample, and the model, prompt, index and evaluator versions recorded in the
report; :func:`compare_reports` lines two reports up metric by metric.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from eval import _metrics as m
from eval._datasets import DATASETS, Case, faq_cases, halueval_cases
from eval._text import coverage, tokenize
from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: Ranks reported for hit@k.
HIT_KS = (1, 3, 5)


def is_relevant(case: Case, source: str, text: str) -> bool:
    """A retrieved chunk is relevant when it comes from the gold file and overlaps the gold text."""
    if Path(source or "").name != case.gold_source:
        return False
    chunk = set(tokenize(text).content)
    return coverage(chunk, set(tokenize(case.gold_text).content), empty=0.0) >= 0.5


def prepare(
    dataset: str,
    settings: Settings,
    limit: int | None,
    seed: int,
    corpus_size: int,
    corpus_paths: list[Path] | None = None,
) -> tuple[list[Case], Settings]:
    """Load the cases and make sure their corpus is indexed; returns the settings the chain must use."""
    from retrieval import fetch_corpus, ingest

    if dataset == "halueval-qa":
        cases, folder = halueval_cases(settings, limit, seed, corpus_size)
        # HaluEval passages are their own corpus: a separate collection in a separate data dir.
        run_settings = settings.model_copy(
            update={
                "collection": "halueval_qa",
                "data_dir": settings.data_dir / "eval" / "halueval-qa",
                "chroma_url": None,
                "database_url": None,
            }
        )
        paths = corpus_paths or [folder]
    elif dataset == "python-faq":
        cases, run_settings = faq_cases(settings, limit, seed), settings
        paths = corpus_paths or [fetch_corpus(settings)]
    else:
        raise ValueError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    report = ingest(paths, run_settings)
    log.info("index ready for %s: %s", dataset, report.summary())
    return cases, run_settings


async def _ask(service: Any, case: Case) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        res = await service.run_turn(case.question)
        return {"turn": res, "error": None}
    except Exception as exc:  # noqa: BLE001 - a failed turn is a data point, not the end of the run
        return {
            "turn": getattr(exc, "turn_id", None),
            "error": f"{type(exc).__name__}: {exc}",
            "total_ms": (time.perf_counter() - started) * 1000,
        }


def score_case(case: Case, turn: Any, faithfulness: Any) -> dict[str, Any]:
    """Per-question record: retrieval rank, correctness, faithfulness, latency, tokens."""
    sources = list(getattr(turn, "sources", []) or [])
    relevant = [is_relevant(case, s.source, s.text) for s in sources]
    answer = getattr(turn, "answer", "") or ""
    faith = faithfulness.score(answer, [s.text for s in sources], case.question) if answer else None
    return {
        "case_id": case.case_id,
        "question": case.question,
        "reference": case.reference[:500],
        "answer": answer,
        "status": getattr(turn, "status", "error"),
        "sources": [
            {"source": Path(s.source).name, "score": round(s.score, 4), "relevant": r}
            for s, r in zip(sources, relevant, strict=True)
        ],
        "first_relevant_rank": m.first_hit_rank(relevant),
        "token_f1": round(m.token_f1(answer, case.reference), 4),
        "reference_recall": round(m.reference_recall(answer, case.reference), 4),
        "contains_reference": m.contains_reference(answer, case.reference),
        "faithfulness": None if faith is None else faith.score,
        "input_tokens": getattr(turn, "input_tokens", None),
        "output_tokens": getattr(turn, "output_tokens", None),
        "retrieval_ms": getattr(turn, "retrieval_ms", None),
        "ttft_ms": getattr(turn, "ttft_ms", None),
        "total_ms": getattr(turn, "total_ms", None),
    }


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's metrics over per-question rows."""
    ranks = [r["first_relevant_rank"] for r in rows]
    ok = [r for r in rows if r["status"] == "ok"]
    return {
        "n": len(rows),
        "n_answered": len(ok),
        "retrieval": {
            **{f"hit@{k}": round(m.hit_at_k(ranks, k), 4) for k in HIT_KS},
            "mrr": round(m.mrr(ranks), 4),
        },
        "correctness": {
            "token_f1": m.distribution([r["token_f1"] for r in rows])["mean"],
            "reference_recall": m.distribution([r["reference_recall"] for r in rows])["mean"],
            "contains_reference": round(sum(r["contains_reference"] for r in rows) / max(1, len(rows)), 4),
        },
        "faithfulness": m.distribution([r["faithfulness"] for r in rows]),
        "latency_ms": {
            k: m.distribution([r[k] for r in rows]) for k in ("retrieval_ms", "ttft_ms", "total_ms")
        },
        "tokens": {k: m.distribution([r[k] for r in rows]) for k in ("input_tokens", "output_tokens")},
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def run_dataset(
    dataset: str,
    settings: Settings,
    limit: int | None = 30,
    seed: int = 0,
    corpus_size: int = 2000,
    corpus_paths: list[Path] | None = None,
    *,
    service_factory: Callable[[Settings], Any],
    prompt_version: str | None = None,
) -> dict[str, Any]:
    """Run ``dataset`` through the real chain; returns the report (see :mod:`eval._report` to write it).

    Args:
        dataset: ``halueval-qa`` or ``python-faq``.
        settings: the base settings (the run indexes into its own collection).
        limit: questions in the fixed sample (None = all).
        seed: seed of the sample.
        corpus_size: HaluEval passages indexed (the sample plus distractors).
        corpus_paths: index these paths instead of the dataset's corpus.
        service_factory: settings -> a chat service (``ragloop.app.build_chat_service``): eval sits
            below the chat layer, so the composition root hands the chat service in.
        prompt_version: the chat layer's prompt version, recorded in the report.
    """
    from eval._embed import get_encoder
    from eval._faithfulness import LocalFaithfulness

    cases, run_settings = prepare(dataset, settings, limit, seed, corpus_size, corpus_paths)
    service = service_factory(run_settings)
    faithfulness = LocalFaithfulness(get_encoder(settings))
    rows = []
    for case in tqdm(cases, desc=f"eval {dataset}", unit="q"):
        out = asyncio.run(_ask(service, case))
        rows.append(
            score_case(case, out["turn"], faithfulness) | ({"error": out["error"]} if out["error"] else {})
        )
    return {
        "dataset": dataset,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": {
            "seed": seed,
            "limit": limit,
            "corpus_size": corpus_size if dataset == "halueval-qa" else None,
            "model": run_settings.llm_model,
            "prompt_version": prompt_version,
            "top_k": run_settings.top_k,
            "max_tokens": run_settings.max_tokens,
            "temperature": run_settings.temperature,
            "collection": run_settings.collection,
            "index_version": _index_version(service),
            "faithfulness_version": faithfulness.version,
            "corpus": [str(p) for p in corpus_paths] if corpus_paths else "default",
            "git_commit": _git_commit(),
        },
        "metrics": summarize(rows),
        "rows": rows,
    }


def _index_version(service: Any) -> str | None:
    try:
        return str(service.retriever.index_version)
    except Exception:  # noqa: BLE001 - a version is informative, not required
        return None


def compare_reports(
    a: dict[str, Any], b: dict[str, Any]
) -> list[tuple[str, float | None, float | None, float | None]]:
    """(metric, A, B, B - A) for every numeric metric both reports share, in a stable order."""
    fa, fb = _flatten(a["metrics"]), _flatten(b["metrics"])
    out = []
    for key in fa:
        if key in fb:
            va, vb = fa[key], fb[key]
            out.append((key, va, vb, None if va is None or vb is None else round(vb - va, 4)))
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, int | float | type(None)) and not isinstance(v, bool):
            out[key] = v
    return out
