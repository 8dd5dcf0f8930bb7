"""Hybrid retrieval and calibrated refusals: hit@1/3/5 and MRR, dense vs hybrid; refusal rates; p95.

Datasets (issue 13, "Hybrid retrieval"):

* ``python-faq``: all 176 Python FAQ questions against the full default index (the python3.11-doc
  sources, ~14.5k chunks);
* ``halueval-qa``: 1,000 HaluEval QA questions (seed 0) against their knowledge index (the 1,000
  items' knowledge plus 1,000 distractor items, as ``ragloop eval run`` builds it);
* ``mixed``: both corpora in one collection, both question sets (the key holds the pooled figure,
  ``mixed_by_dataset`` each set's own).

A retrieved chunk is relevant as the offline harness decides (``eval._harness.is_relevant``: from
the gold file and overlapping the gold text).

Refusals ("Calibrated refusals"): the top hit's relevance score (the dense cosine of the best hit,
which is what ``RetrievalResult.above`` compares with ``RAGLOOP_SCORE_THRESHOLD``) on answerable
questions (the FAQ against the Python index) and off-corpus ones (the HaluEval questions against the
Python index, the FAQ questions against the HaluEval index). The threshold that best separates them
is reported, with both refusal rates at the configured threshold and a histogram PNG.

Timing: ``retrieval_p95_ms_100k_hybrid`` is the p95 of ``Retriever.search`` in hybrid mode on the
100k-chunk collection that ``bench/bench_retrieval.py`` builds (its helpers; BM25 indexes the
chunk texts stored there). It is written only when the load allowed (bench/_common.py).

Indexes are built once under ``--work`` (default ``~/.cache/ragloop/bench/answers-retrieval``, not
the user's data dir) and reused; the mixed index reuses the other two's stored vectors, so it
costs no second embedding pass.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import RESULTS, Run, table  # noqa: E402
from eval import _metrics as m  # noqa: E402
from eval._datasets import Case, faq_cases, halueval_cases  # noqa: E402
from eval._harness import is_relevant  # noqa: E402
from ragloop.settings import Settings  # noqa: E402
from retrieval import (  # noqa: E402
    Retriever,
    check_index_variant,
    fetch_corpus,
    get_embedder,
    ingest,
    open_collection,
)
from retrieval._bm25 import all_ids  # noqa: E402
from retrieval._ingest import META_EMBEDDING_VARIANT, index_variant, index_version  # noqa: E402
from retrieval._store import META_EMBEDDING_MODEL, META_INDEX_VERSION, sync_bm25  # noqa: E402

HALUEVAL_QUESTIONS = 1000
HALUEVAL_CORPUS = 2000
SEED = 0
KS = (1, 3, 5)
#: Chunks of the whole python3.11-doc corpus at the default chunk size (700/100).
CORPUS_CHUNKS = 14465


def index_settings(work: Path, name: str) -> Settings:
    """Settings of one bench index (embedded Chroma under ``work/name``; never the user's)."""
    return Settings(data_dir=work / name, collection=name, chroma_url=None, database_url=None)


def build_indexes(work: Path, build: bool = True) -> tuple[dict[str, list[Case]], Path]:
    """Build (or resume) the three indexes (``build``); returns the cases by dataset and the docs folder.

    HaluEval first (small), then the Python docs part by part (an interrupted build resumes:
    ingestion keeps the chunks already stored). The mixed index is :func:`refresh_mixed`'s union
    of the two, made when measuring.
    """
    base = Settings()
    docs = fetch_corpus(Settings(corpus="python-docs"), progress=False)
    halu_cases, halu_folder = halueval_cases(base, HALUEVAL_QUESTIONS, SEED, HALUEVAL_CORPUS)
    faq = faq_cases(base, None, SEED)
    embedder = get_embedder(base)
    steps = [("halueval", [halu_folder])] + [("python", [part]) for part in python_parts(docs)]
    for name, paths in steps if build else []:
        print(f"index {name}: {', '.join(map(str, paths))}", flush=True)
        report = ingest(paths, index_settings(work, name), progress=True, embedder=embedder)
        print(report.summary(), flush=True)
    return {"python-faq": faq, "halueval-qa": halu_cases}, docs


def python_parts(docs: Path) -> list[Path]:
    """The Python docs in the order they are indexed: the FAQ first, the large library last.

    Each part is complete before the next starts, so an interrupted build (embedding is slow on a
    busy machine) leaves whole parts; :func:`coverage` records how much of the corpus is in.
    """
    return [
        docs / "faq",
        docs / "tutorial",
        docs / "howto",
        docs / "glossary.rst.txt",
        docs / "reference",
        docs,
    ]


def refresh_mixed(work: Path) -> None:
    """Make the mixed index the union of the HaluEval and Python indexes as they are now.

    Vectors are copied (no embedding); the version is stamped as ingestion would (a hash of the
    chunk ids) and the BM25 index caught up, as after an ingest.
    """
    mixed = index_settings(work, "mixed")
    target = open_collection(mixed)
    sources = [open_collection(index_settings(work, name)) for name in ("halueval", "python")]
    wanted: set[str] = set()
    for source in sources:
        wanted |= set(all_ids(source))
        _copy_vectors(source, target)
    stale = [cid for cid in all_ids(target) if cid not in wanted]
    for lo in range(0, len(stale), 5000):
        target.delete(ids=stale[lo : lo + 5000])
    meta = dict(target.metadata or {})
    variants = {index_variant(source.metadata) for source in sources}
    if len(variants) != 1 or None in variants:
        raise SystemExit(f"the HaluEval and Python indexes hold different embedding variants: {variants}")
    meta.update(
        {
            META_INDEX_VERSION: index_version(wanted),
            META_EMBEDDING_MODEL: get_embedder(Settings()).model_name,
            META_EMBEDDING_VARIANT: variants.pop(),
        }
    )
    target.modify(metadata=meta)
    sync_bm25(mixed, target)


def _copy_vectors(source: Any, target: Any, page: int = 2000) -> None:
    """Add the chunks of ``source`` that ``target`` lacks, with their stored embeddings."""
    have = set(all_ids(target))
    ids = [cid for cid in all_ids(source) if cid not in have]
    for lo in tqdm(range(0, len(ids), page), desc="copying vectors", unit="page"):
        got = source.get(ids=ids[lo : lo + page], include=["embeddings", "documents", "metadatas"])
        target.add(
            ids=got["ids"],
            embeddings=got["embeddings"],
            documents=got["documents"],
            metadatas=got["metadatas"],
        )


def coverage(settings: Settings, docs: Path) -> dict[str, Any]:
    """How much of the Python docs corpus an index holds (chunks, and files per part)."""
    collection = open_collection(settings)
    sources: dict[str, int] = {}
    for lo in range(0, collection.count(), 5000):
        for meta in collection.get(include=["metadatas"], limit=5000, offset=lo)["metadatas"] or []:
            src = str((meta or {}).get("source", ""))
            sources[src] = sources.get(src, 0) + 1
    files = sorted(str(f) for f in docs.rglob("*.rst.txt"))
    parts: dict[str, list[int]] = {}
    for f in files:
        part = Path(f).relative_to(docs).parts[0]
        parts.setdefault(part, [0, 0])[1] += 1
        parts[part][0] += f in sources
    return {
        "chunks": sum(n for src, n in sources.items() if src.startswith(str(docs))),
        "corpus_chunks": CORPUS_CHUNKS,
        "files_indexed_of_total": {part: f"{a}/{b}" for part, (a, b) in sorted(parts.items())},
    }


def evaluate(retriever: Retriever, cases: list[Case], vectors: np.ndarray, desc: str) -> dict[str, Any]:
    """Ranks of the first relevant chunk (dense and hybrid) and the threshold's input per question.

    The refusal score of a question is the best dense cosine among the ``top_k`` hits the chat
    would use (hybrid mode), as the chain compares each hit's score with the threshold.
    """
    k_max, top_k = max(KS), retriever.settings.top_k
    ranks: dict[str, list[int | None]] = {"dense": [], "hybrid": []}
    scores: list[float] = []
    for case, vector in tqdm(list(zip(cases, vectors, strict=True)), desc=desc, unit="q"):
        for method in ranks:
            if method == "dense":
                hits = retriever.search_embedding(vector, k_max)
            else:
                hits = retriever.search_hybrid(case.question, vector, k_max)
                # The fused order does not depend on k (both rankings are cut at the candidates,
                # max(k, RAGLOOP_HYBRID_CANDIDATES) = 20), so the chat's top_k hits are these first ones.
                scores.append(max((h.score for h in hits[:top_k]), default=float("-inf")))
            ranks[method].append(m.first_hit_rank([is_relevant(case, h.source, h.text) for h in hits]))
    return {"ranks": ranks, "scores": scores}


def hits_table(ranks: dict[str, list[int | None]]) -> dict[str, dict[str, float]]:
    """hit@1/3/5 and MRR@5 per method."""
    out = {f"hit_at_{k}": {meth: round(m.hit_at_k(r, k), 4) for meth, r in ranks.items()} for k in KS}
    out["mrr"] = {meth: round(m.mrr(r), 4) for meth, r in ranks.items()}
    return out


def calibrate(answerable: list[float], offcorpus: list[float]) -> dict[str, Any]:
    """Refusal rates over thresholds; the threshold that best separates the two score sets.

    ``best`` maximises (share of off-corpus refused) - (share of answerable refused) (Youden's J);
    ``target`` is the lowest threshold refusing >= 90% of off-corpus questions.
    """
    ans, off = np.asarray(answerable), np.asarray(offcorpus)
    grid = np.round(np.arange(0.0, 1.0001, 0.01), 2)
    refused_off = np.array([(off < t).mean() for t in grid])
    refused_ans = np.array([(ans < t).mean() for t in grid])
    best = int(np.argmax(refused_off - refused_ans))
    target = int(np.argmax(refused_off >= 0.9)) if (refused_off >= 0.9).any() else len(grid) - 1

    def at(i: int) -> dict[str, float]:
        return {
            "threshold": float(grid[i]),
            "refusal_rate_offcorpus": round(float(refused_off[i]), 4),
            "refusal_rate_answerable": round(float(refused_ans[i]), 4),
        }

    return {"best": at(best), "lowest_for_90pct_offcorpus": at(target)}


def rates(answerable: list[float], offcorpus: list[float], threshold: float) -> tuple[float, float]:
    """(off-corpus refused, answerable refused) at ``threshold``: refused means no hit reaches it."""
    return (
        round(float((np.asarray(offcorpus) < threshold).mean()), 4),
        round(float((np.asarray(answerable) < threshold).mean()), 4),
    )


def distribution(values: list[float]) -> dict[str, float]:
    """Quantiles of a score set."""
    q = np.percentile(np.asarray(values), [0, 5, 25, 50, 75, 95, 100])
    return {
        k: round(float(v), 4)
        for k, v in zip(("min", "p5", "p25", "p50", "p75", "p95", "max"), q, strict=True)
    }


def plot(sets: dict[str, list[float]], thresholds: dict[str, float], path: Path) -> None:
    """Histogram of the refusal scores of each question set, with the thresholds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    bins = np.linspace(-0.1, 1.0, 56).tolist()
    for name, values in sets.items():
        ax.hist(values, bins=bins, alpha=0.5, density=True, label=f"{name} (n={len(values)})")
    for name, t in thresholds.items():
        ax.axvline(t, linestyle="--", color="black" if name.startswith("default") else "grey")
        ax.text(t, ax.get_ylim()[1] * 0.95, f" {name} {t:.2f}", fontsize=8, rotation=90, va="top")
    ax.set_xlabel("best dense cosine among the top-k hybrid hits (the refusal threshold's input)")
    ax.set_ylabel("density")
    ax.set_title("Calibrated refusals: answerable vs off-corpus questions")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def timing_100k(args: argparse.Namespace, run: Run) -> dict[str, Any] | None:
    """p95 of hybrid ``Retriever.search`` on bench_retrieval's 100k-chunk collection (its helpers)."""
    from bench.bench_retrieval import _fill, _pct, _sample_vectors

    if run.busy:
        print(f"timing refused: load {run.load_before} > {run.max_load} before the run")
        return None
    questions = [c.question for c in faq_cases(Settings(), None, SEED)][:100]
    base, texts = _sample_vectors(argparse.Namespace(ingest_chunks=300))
    with tempfile.TemporaryDirectory(prefix="ragloop-bench-") as tmp:
        settings = Settings(data_dir=Path(tmp), collection="bench-100k", retrieval_mode="hybrid")
        _fill(settings, base, texts, 100_000, 0.03)
        retriever = Retriever(settings)
        for q in questions[:10]:
            retriever.search(q)  # warm-up: builds the BM25 index, loads HNSW
        loops = []
        for r in range(3):
            times = [retriever.search(q).retrieval_ms for q in tqdm(questions, desc=f"hybrid @100k #{r + 1}")]
            loops.append({"p50_ms": _pct(times, 50), "p95_ms": _pct(times, 95), "load": os.getloadavg()[0]})
    return {"p95_ms": statistics.median(x["p95_ms"] for x in loops), "repeats": loops}


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_work = Settings().cache_dir / "bench" / "answers-retrieval"
    p.add_argument("--work", type=Path, default=default_work, help="where the bench indexes live")
    p.add_argument("--build-only", action="store_true", help="build the indexes and stop")
    p.add_argument("--no-build", action="store_true", help="measure the indexes as they are (no ingest)")
    p.add_argument("--no-timing", action="store_true", help="skip the 100k-chunk p95")
    p.add_argument("--limit", type=int, default=None, help="questions per dataset (smoke runs)")
    p.add_argument("--scratch", action="store_true", help="a smoke run: write under bench/results/tmp/")
    return p.parse_args()


def measure(args: argparse.Namespace, cases: dict[str, list[Case]], docs: Path) -> dict[str, Any]:
    """Every quality key of issue 13's hybrid retrieval and calibrated refusals."""
    embedder = get_embedder(Settings())
    refresh_mixed(args.work)
    cases = {name: c[: args.limit] for name, c in cases.items()}
    vectors = {
        name: embedder.embed_documents([c.question for c in cs], progress=True) for name, cs in cases.items()
    }
    python = Retriever(index_settings(args.work, "python"), embedder=embedder)
    halueval = Retriever(index_settings(args.work, "halueval"), embedder=embedder)
    mixed = Retriever(index_settings(args.work, "mixed"), embedder=embedder)
    faq = evaluate(python, cases["python-faq"], vectors["python-faq"], "faq @ python")
    halu = evaluate(halueval, cases["halueval-qa"], vectors["halueval-qa"], "halueval @ halueval")
    mixed_runs = {n: evaluate(mixed, cases[n], vectors[n], f"{n} @ mixed") for n in cases}
    off_halu = evaluate(python, cases["halueval-qa"], vectors["halueval-qa"], "halueval @ python (off)")
    off_faq = evaluate(halueval, cases["python-faq"], vectors["python-faq"], "faq @ halueval (off)")
    pooled: dict[str, list[int | None]] = {
        meth: sum((r["ranks"][meth] for r in mixed_runs.values()), []) for meth in ("dense", "hybrid")
    }
    tables = {
        "python-faq": hits_table(faq["ranks"]),
        "halueval-qa": hits_table(halu["ranks"]),
        "mixed": hits_table(pooled),
    }
    keys: dict[str, Any] = {
        name: {ds: tables[ds][name] for ds in tables} for name in ("hit_at_1", "hit_at_3", "hit_at_5", "mrr")
    }
    keys["mixed_by_dataset"] = {n: hits_table(r["ranks"]) for n, r in mixed_runs.items()}
    answerable, offcorpus = faq["scores"], off_halu["scores"] + off_faq["scores"]
    threshold = Settings().score_threshold
    keys["refusal_rate_offcorpus"], keys["refusal_rate_answerable"] = rates(answerable, offcorpus, threshold)
    keys["refusal_calibration"] = {
        "threshold": threshold,
        "score": f"best dense cosine among the top {python.settings.top_k} hybrid hits",
        "by_set": {
            "answerable (FAQ @ python)": {
                "refused": rates(answerable, [], threshold)[1],
                **distribution(answerable),
            },
            "off-corpus (HaluEval QA @ python)": {
                "refused": rates([], off_halu["scores"], threshold)[0],
                **distribution(off_halu["scores"]),
            },
            "off-corpus (FAQ @ HaluEval)": {
                "refused": rates([], off_faq["scores"], threshold)[0],
                **distribution(off_faq["scores"]),
            },
        },
        **calibrate(answerable, offcorpus),
        "plot": "bench/results/refusal_scores.png",
    }
    cal = keys["refusal_calibration"]
    plot(
        {
            "answerable: FAQ @ python": answerable,
            "off: HaluEval QA @ python": off_halu["scores"],
            "off: FAQ @ HaluEval": off_faq["scores"],
        },
        {"default": threshold, "best (Youden)": cal["best"]["threshold"]},
        (RESULTS / "tmp" if args.scratch else RESULTS) / "refusal_scores.png",
    )
    keys["retrieval_index"] = {
        "python": coverage(python.settings, docs),
        "halueval": {
            "chunks": halueval.count(),
            "questions": len(cases["halueval-qa"]),
            "items": HALUEVAL_CORPUS,
        },
        "mixed": {"chunks": mixed.count()},
        "mrr_note": "MRR over the top 5 hits (0 when no relevant hit is among them)",
        "settings": {"rrf_k": python.settings.rrf_k, "hybrid_candidates": python.settings.hybrid_candidates},
    }
    return keys


def _print(keys: dict[str, Any]) -> None:
    rows = [
        {
            "dataset": ds,
            "method": meth,
            **{k: keys[k][ds][meth] for k in ("hit_at_1", "hit_at_3", "hit_at_5", "mrr")},
        }
        for ds in keys["hit_at_3"]
        for meth in ("dense", "hybrid")
    ]
    print(table(rows))
    cal = keys["refusal_calibration"]
    print(
        f"\nrefusals at threshold {cal['threshold']}: off-corpus {keys['refusal_rate_offcorpus']}, "
        f"answerable {keys['refusal_rate_answerable']}; best {cal['best']}"
    )
    print(table([{"set": name, **row} for name, row in cal["by_set"].items()]))


def main() -> None:
    """Build the indexes, measure, merge the keys into bench/results/answers.json, print tables."""
    args = _parse()
    cases, docs = build_indexes(args.work, build=not args.no_build)
    if args.build_only:
        return
    # Search with another embedding variant than the index's gives plausible but wrong figures.
    embedder = get_embedder(Settings())
    for name in ("halueval", "python"):
        check_index_variant(index_settings(args.work, name), embedder)
    quality = Run("answers", timing=False, scratch=args.scratch)
    keys = measure(args, cases, docs)
    print(f"written {quality.merge(keys, name='answers')}")
    _print(keys)
    if not args.no_timing:
        timed = Run("answers", scratch=args.scratch)
        result = timing_100k(args, timed)
        if result is not None:
            out = timed.merge(
                {"retrieval_p95_ms_100k_hybrid": result["p95_ms"], "retrieval_100k_hybrid": result},
                name="answers",
            )
            print(f"p95 hybrid @100k: {result['p95_ms']:.1f} ms -> {out}")


if __name__ == "__main__":
    main()
