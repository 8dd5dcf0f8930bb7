"""Retrieval benchmark: ingestion throughput vs raw embedding, and search latency at 1k/10k/100k chunks.

1. Ingestion: whole files of the Python docs corpus (enough for --ingest-chunks chunks) are
   ingested into a fresh embedded Chroma; the same chunk texts are embedded alone (no reading,
   chunking, hashing or storing) before and after, in the same run. Target: ingest >= 80% of the
   raw embedding throughput (embedding is the physical limit).
2. Latency: collections of 1k, 10k and 100k chunks. Real chunk embeddings from step 1 are
   reused; the remaining vectors are real embeddings perturbed with Gaussian noise and
   re-normalised (embedding 100k chunks would take an hour here). Queries are real Python FAQ
   questions embedded at query time: the latency is ``Retriever.search`` (embed + Chroma top-k).
   Target: p95 <= 30 ms at 100k.

Protocol (bench/_common.py): the model and each collection are warmed up first; ingestion runs
``--rounds`` (>= 3) rounds and reports the median; each collection's query loop runs ``--repeat``
(>= 3) times and its p50/p95 are the medians over the repeats, every repeat and the load beside them.
When the 1-minute load average was above 1.5 at the start, the results go to bench/results/tmp/.

Writes bench/results/retrieval.json (everything) and the headline keys into
bench/results/foundation.json (read-modify-write under a lock: other benchmarks' keys are kept).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import Run  # noqa: E402
from ragloop.settings import Settings  # noqa: E402
from retrieval import Retriever, fetch_corpus, get_embedder, ingest, load_python_faq, open_collection  # noqa: E402
from retrieval._chunking import split_document  # noqa: E402
from retrieval._loaders import load_document  # noqa: E402

RESULTS = ROOT / "bench" / "results"
SIZES = (1_000, 10_000, 100_000)


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ingest-chunks", type=int, default=300, help="chunks in the ingestion sample")
    p.add_argument("--rounds", type=int, default=3, help="ingest rounds, each between two embed-only rounds")
    p.add_argument("--queries", type=int, default=100, help="FAQ questions timed per collection size")
    p.add_argument("--repeat", type=int, default=3, help="query loops per collection size (>= 3)")
    p.add_argument("--scratch", action="store_true", help="a smoke run: write under bench/results/tmp/")
    p.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), help="collection sizes")
    p.add_argument("--noise", type=float, default=0.03, help="per-dimension noise of synthetic vectors")
    p.add_argument("--no-foundation", action="store_true", help="do not update foundation.json")
    p.add_argument(
        "--latency-only",
        action="store_true",
        help="skip the ingestion rounds; update only the latency of the sizes measured (others are kept)",
    )
    args = p.parse_args()
    if args.repeat < 3 or (args.rounds < 3 and not args.latency_only):
        p.error("--repeat and --rounds must be at least 3 (each cell is repeated, the median reported)")
    return args


def _sample_files(corpus: Path, want: int, settings: Settings) -> tuple[list[Path], list[str]]:
    """Whole files of the corpus (FAQ and tutorial first) until ``want`` chunks; their embed texts."""
    files = sorted((corpus / "faq").glob("*.rst.txt")) + sorted((corpus / "tutorial").glob("*.rst.txt"))
    files += sorted(corpus.rglob("*.rst.txt"))
    chosen: list[Path] = []
    texts: list[str] = []
    for f in dict.fromkeys(files):
        if len(texts) >= want:
            break
        doc = load_document(f)
        chunks = split_document(doc.text, doc.fmt, settings.chunk_size, settings.chunk_overlap, doc.title)
        if chunks:
            chosen.append(f)
            texts += [c.embed_text for c in chunks]
    return chosen, texts


def _raw_round(embedder: Any, texts: list[str], rates: list[float]) -> np.ndarray:
    """Embed ``texts`` alone (no reading, chunking or storing); append the chunks/s to ``rates``."""
    print(f"embed-only: {len(texts)} chunks ...", flush=True)
    start = time.perf_counter()
    vectors = embedder.embed_documents(texts, batch_size=64, progress=True)
    rates.append(len(texts) / (time.perf_counter() - start))
    return vectors


def _sample_vectors(args: argparse.Namespace) -> tuple[np.ndarray, list[str]]:
    """Real embeddings of the ingestion sample's chunks, without timing ingestion."""
    settings = Settings()
    corpus = fetch_corpus(Settings(corpus="python-docs"), progress=False)
    _, texts = _sample_files(corpus, args.ingest_chunks, settings)
    return get_embedder(settings).embed_documents(texts, progress=True), texts


def bench_ingest(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], np.ndarray, list[str]]:
    """Ingest chunks/s vs embed-only chunks/s on the same texts, in interleaved rounds."""
    settings = Settings(data_dir=work / "ingest")
    embedder = get_embedder(settings)
    embedder.embed_documents(["warm up the model"] * 8)
    corpus = fetch_corpus(Settings(corpus="python-docs"), progress=False)
    files, texts = _sample_files(corpus, args.ingest_chunks, settings)
    folder = work / "sample"
    for f in files:
        dest = folder / f.relative_to(corpus)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(f, dest)
    # Interleave raw, ingest, raw, ingest, ..., raw: the other work on this machine changes the
    # CPU left to us from minute to minute, so each ingest is compared with its neighbours.
    raw_rates: list[float] = []
    ingest_rates: list[float] = []
    vectors = _raw_round(embedder, texts, raw_rates)
    for r in range(args.rounds):
        settings = Settings(data_dir=work / f"ingest-{r}")
        print(f"ingest round {r + 1}/{args.rounds}: {len(texts)} chunks ...", flush=True)
        start = time.perf_counter()
        report = ingest([folder], settings, progress=True, embedder=embedder)
        ingest_rates.append(len(texts) / (time.perf_counter() - start))
        assert report.chunks_added == len(texts), (report.chunks_added, len(texts))
        _raw_round(embedder, texts, raw_rates)
    start = time.perf_counter()
    noop = ingest([folder], settings, progress=False, embedder=embedder)
    noop_s = time.perf_counter() - start
    ratios = [rate / statistics.mean(raw_rates[i : i + 2]) for i, rate in enumerate(ingest_rates)]
    result: dict[str, Any] = {
        "chunks": len(texts),
        "files": len(files),
        "ingest_chunks_per_s": statistics.median(ingest_rates),
        "embed_only_per_s": statistics.median(raw_rates),
        "ingest_runs_per_s": ingest_rates,
        "embed_only_runs_per_s": raw_rates,
        "ratio_per_round": ratios,
        "noop_reingest_s": noop_s,
        "noop_reingest_added": noop.chunks_added,
    }
    result["ratio"] = result["ingest_chunks_per_s"] / result["embed_only_per_s"]
    return result, vectors, texts


def _fill(settings: Settings, base: np.ndarray, texts: list[str], size: int, noise: float) -> float:
    """Fill a collection with ``size`` chunks: real vectors first, then perturbed blends; returns s."""
    rng = np.random.default_rng(size)
    collection = open_collection(settings)
    start = time.perf_counter()
    step = 5000
    for lo in tqdm(range(0, size, step), desc=f"filling {size}", unit="batch"):
        idx = np.arange(lo, min(lo + step, size))
        src = idx % len(base)
        vecs = base[src].copy()
        synthetic = idx >= len(base)
        n = int(synthetic.sum())
        # Blend each real vector with another random one, then add noise: the synthetic points
        # spread between real chunks instead of piling up as near-duplicates of a few of them.
        weight = rng.uniform(0.5, 1.0, size=(n, 1)).astype(np.float32)
        other = base[rng.integers(0, len(base), size=n)]
        noisy = rng.normal(0.0, noise, size=(n, base.shape[1])).astype(np.float32)
        vecs[synthetic] = weight * vecs[synthetic] + (1 - weight) * other + noisy
        vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
        collection.add(
            ids=[f"c{i}" for i in idx],
            embeddings=vecs,
            documents=[texts[s] for s in src],
            metadatas=[{"source": "bench", "title": "", "synthetic": bool(y)} for y in synthetic],
        )
    return time.perf_counter() - start


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_latency(args: argparse.Namespace, work: Path, base: np.ndarray, texts: list[str]) -> dict[str, Any]:
    """p50/p95 of Retriever.search (embed + top-k) and of its two parts, per collection size."""
    questions = [i.question for i in load_python_faq(Settings())][: args.queries]
    out: dict[str, Any] = {}
    for size in args.sizes:
        settings = Settings(data_dir=work / f"lat-{size}", collection=f"bench-{size}")
        fill_s = _fill(settings, base, texts, size, args.noise)
        retriever = Retriever(settings)
        assert retriever.count() == size
        for q in questions[:10]:  # warm-up: load the index, JIT paths, caches
            retriever.search(q)
        loops = [_query_loop(retriever, questions, size, r) for r in range(args.repeat)]
        out[str(size)] = {
            **{key: statistics.median(loop[key] for loop in loops) for key in loops[0] if key != "load"},
            "repeats": loops,
            "fill_s": fill_s,
            "real_vectors": min(size, len(base)),
            "synthetic_vectors": max(size - len(base), 0),
            "queries": len(questions),
            "loadavg": os.getloadavg(),
        }
        shutil.rmtree(settings.data_dir, ignore_errors=True)
    return out


def _query_loop(retriever: Any, questions: list[str], size: int, repeat: int) -> dict[str, float]:
    """One pass over the questions: p50/p95 of the search and of its two parts, and the load after."""
    total, embed, query = [], [], []
    for q in tqdm(questions, desc=f"queries @{size} #{repeat + 1}", unit="q"):
        res = retriever.search(q)
        total.append(res.retrieval_ms)
        t0 = time.perf_counter()
        vec = retriever.embedder.embed_query(q)
        t1 = time.perf_counter()
        retriever.search_embedding(vec)
        t2 = time.perf_counter()
        embed.append((t1 - t0) * 1000)
        query.append((t2 - t1) * 1000)
    return {
        "p50_ms": _pct(total, 50),
        "p95_ms": _pct(total, 95),
        "embed_p50_ms": _pct(embed, 50),
        "embed_p95_ms": _pct(embed, 95),
        "chroma_p50_ms": _pct(query, 50),
        "chroma_p95_ms": _pct(query, 95),
        "load": os.getloadavg()[0],
    }


def _env(args: argparse.Namespace) -> dict[str, Any]:
    import chromadb
    import sentence_transformers
    import torch

    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "versions": {
            "chromadb": chromadb.__version__,
            "sentence_transformers": sentence_transformers.__version__,
            "torch": torch.__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "loadavg": os.getloadavg(),
        "synthetic_note": (
            "collections larger than the ingestion sample hold its real chunk embeddings plus synthetic "
            "vectors w*a + (1-w)*b + N(0, noise) re-normalised (a, b real embeddings, w ~ U(0.5, 1), "
            f"noise {args.noise} per dimension); queries are real "
            "FAQ questions "
            "embedded at query time"
        ),
    }


def _write(results: dict[str, Any], update_foundation: bool, run: Run) -> Path:
    own = RESULTS / "retrieval.json"
    if results["ingest"] is None:  # --latency-only: keep what an earlier full run measured
        old = json.loads(own.read_text()) if own.exists() else {}
        results["ingest"] = old.get("ingest")
        results["latency"] = {**old.get("latency", {}), **results["latency"]}
    path = run.write(results, "retrieval")
    if update_foundation:
        lat = results["latency"]
        keys: dict[str, Any] = {
            "retrieval_p95_ms": {k: v["p95_ms"] for k, v in lat.items()},
            "retrieval_p50_ms": {k: v["p50_ms"] for k, v in lat.items()},
            "retrieval_env": results["env"],
        }
        if results["ingest"]:
            keys["ingest_chunks_per_s"] = results["ingest"]["ingest_chunks_per_s"]
            keys["embed_only_per_s"] = results["ingest"]["embed_only_per_s"]
        run.merge(keys, name="foundation")  # locked read-modify-write: other benchmarks' keys stay
    return path


def _table(results: dict[str, Any]) -> None:
    ing = results["ingest"] or {}
    if ing:
        _ingest_table(ing)
    print(f"\n{'chunks':>8}{'p50 ms':>9}{'p95 ms':>9}{'embed p50':>11}{'chroma p50':>12}{'chroma p95':>12}")
    for size, row in results["latency"].items():
        print(
            f"{size:>8}{row['p50_ms']:>9.1f}{row['p95_ms']:>9.1f}{row['embed_p50_ms']:>11.1f}"
            f"{row['chroma_p50_ms']:>12.2f}{row['chroma_p95_ms']:>12.2f}"
        )
    print(f"\nloadavg {results['env']['loadavg']}")


def _ingest_table(ing: dict[str, Any]) -> None:
    print(f"\n{'measure':<34}{'value':>12}")
    print(f"{'embed-only chunks/s':<34}{ing['embed_only_per_s']:>12.1f}")
    print(f"{'ingest chunks/s':<34}{ing['ingest_chunks_per_s']:>12.1f}")
    print(f"{'ingest / embed-only (>= 0.80)':<34}{ing['ratio']:>12.3f}")
    print(f"{'per-round ratios':<34}{' '.join(f'{r:.2f}' for r in ing['ratio_per_round']):>12}")
    print(f"{'no-op re-ingest s':<34}{ing['noop_reingest_s']:>12.2f}")


def main() -> None:
    """Run the benchmark, write the results (tmp/ on a busy machine) and print the table."""
    args = _parse()
    run = Run("retrieval", scratch=args.scratch)
    with tempfile.TemporaryDirectory(prefix="ragloop-bench-") as tmp:
        work = Path(tmp)
        load_before = os.getloadavg()
        if args.latency_only:
            ingest_result, vectors, texts = None, *_sample_vectors(args)
        else:
            ingest_result, vectors, texts = bench_ingest(args, work)
        latency = bench_latency(args, work, vectors, texts)
    env = {**_env(args), "loadavg_before": load_before}
    results: dict[str, Any] = {"ingest": ingest_result, "latency": latency, "env": env}
    path = _write(results, not args.no_foundation, run)
    _table(results)
    kept = " (busy machine or --scratch: the committed figures stay)" if path.parent.name == "tmp" else ""
    print(f"\nwritten {path}{kept}")


if __name__ == "__main__":
    main()
