"""First run: embedding backends on this CPU, FAQ retrieval per backend, full index, first answer.

1. ``embed_chunks_per_s`` keyed by backend: the same ``--chunks`` chunk texts of the Python docs
   (library pages, ~700 characters each) embedded by each variant (torch, onnx, onnx-int8,
   openvino, openvino-int8); ``Run.time`` (a warm-up, ``--repeat`` timed runs, the median).
2. ``hit_at_3_faq`` keyed by backend: the Python FAQ pages indexed with each variant into a fresh
   embedded Chroma; every FAQ question is searched (dense, top 3); a hit is a chunk of the
   question's page whose heading path holds the question. Quality: written whatever the load.
3. ``full_index_s`` keyed by backend (``--full``): the whole default corpus ingested into a fresh
   collection with torch (today's) and with the chosen variant, one after the other in this run.
4. ``install_to_first_answer_s`` (``--first-answer``): ``ragloop run`` on a fresh data dir (the venv
   installed, the model fetched and exported), timed from its start to the first answered FAQ
   question over ``POST /api/chat``; the background indexing progress at that moment is kept.

Timings are refused (written under bench/results/tmp/) when the 1-minute load is above 1.5 at the
start; ``--scratch`` always writes there (a smoke run with small sizes). Results are merged into
bench/results/first_run.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import Run, table  # noqa: E402
from ragloop.process import free_port  # noqa: E402
from ragloop.settings import Settings  # noqa: E402
from retrieval import Retriever, fetch_corpus, ingest, load_python_faq  # noqa: E402
from retrieval._chunking import split_document  # noqa: E402
from retrieval._embedding import BACKENDS, load_embedder, resolve_backend  # noqa: E402
from retrieval._loaders import load_document  # noqa: E402

QUESTION = "How do I make a Python script executable on Unix?"


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS, help="variants to measure"
    )
    p.add_argument("--chunks", type=int, default=1000, help="chunk texts embedded per timing")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per backend (>= 3)")
    p.add_argument("--faq-limit", type=int, default=None, help="FAQ questions searched (default: all)")
    p.add_argument("--no-embed", action="store_true", help="skip the embedding timings")
    p.add_argument("--no-faq", action="store_true", help="skip hit@3 on the FAQ")
    p.add_argument("--full", action="store_true", help="also index the whole corpus with torch and --chosen")
    p.add_argument("--full-files", type=int, default=None, help="index only this many corpus files (smoke)")
    p.add_argument("--chosen", default=None, help="the variant of the full index (default: what auto picks)")
    p.add_argument("--first-answer", action="store_true", help="time `ragloop run` to its first answer")
    p.add_argument("--first-answer-timeout", type=float, default=900.0, help="seconds before giving up")
    p.add_argument("--scratch", action="store_true", help="a smoke run: write under bench/results/tmp/")
    args = p.parse_args()
    if args.repeat < 3:
        p.error("--repeat must be at least 3 (each cell is repeated, the median reported)")
    return args


def sample_texts(corpus: Path, want: int, settings: Settings) -> list[str]:
    """Embed texts of whole library pages of the corpus (sorted by name) until ``want`` chunks."""
    texts: list[str] = []
    for f in sorted((corpus / "library").glob("*.rst.txt")) or sorted(corpus.rglob("*.*")):
        doc = load_document(f)
        texts += [
            c.embed_text
            for c in split_document(doc.text, doc.fmt, settings.chunk_size, settings.chunk_overlap, doc.title)
        ]
        if len(texts) >= want:
            break
    return texts[:want]


def bench_embed(run: Run, args: argparse.Namespace, corpus: Path) -> dict[str, Any]:
    """Chunks/s per backend on the same texts."""
    settings = Settings()
    texts = sample_texts(corpus, args.chunks, settings)
    out: dict[str, Any] = {}
    for backend in tqdm(args.backends, desc="embedding backends", unit="backend"):
        embedder = load_embedder(settings, backend)
        cell = run.time(functools.partial(embedder.embed_documents, texts), repeat=args.repeat)
        out[backend] = {**cell, "chunks": len(texts), "chunks_per_s": round(len(texts) / cell["median_s"], 2)}
        print(f"{backend}: {out[backend]['chunks_per_s']} chunks/s", flush=True)
    return out


def bench_faq(args: argparse.Namespace, corpus: Path, work: Path) -> dict[str, Any]:
    """FAQ hit@3 per backend (dense search over the FAQ pages, each backend its own index).

    Each backend's figure is merged into the results as soon as it is known (quality figures do
    not depend on the load), so a run cut short keeps what it measured.
    """
    quality = Run("first_run", timing=False, scratch=args.scratch)
    items = load_python_faq(Settings())[: args.faq_limit]
    out: dict[str, Any] = {}
    for backend in tqdm(args.backends, desc="FAQ hit@3", unit="backend"):
        settings = Settings(data_dir=work / f"faq-{backend}", collection="faq", retrieval_mode="dense")
        embedder = load_embedder(settings, backend)
        ingest([corpus / "faq"], settings, progress=False, embedder=embedder, root=corpus)
        retriever = Retriever(settings, embedder=embedder)
        hits = 0
        for item in tqdm(items, desc=backend, unit="question", leave=False):
            found = retriever.search_embedding(embedder.embed_query(item.question), 3)
            hits += any(h.source == item.source and item.question in h.title for h in found)
        out[backend] = {"hit_at_3": round(hits / len(items), 4), "questions": len(items)}
        print(f"{backend}: hit@3 {out[backend]['hit_at_3']}", flush=True)
        keys = {"hit_at_3_faq": {b: v["hit_at_3"] for b, v in out.items()}, "hit_at_3_faq_cells": out}
        quality.merge(keys, nested=keys)  # --backends: the other backends' figures stay
    return out


def bench_full(args: argparse.Namespace, corpus: Path, work: Path, chosen: str) -> dict[str, Any]:
    """The whole corpus (or ``--full-files`` of it) indexed with torch, then with ``chosen``."""
    paths: list[Path] = [corpus]
    if args.full_files:
        paths = sorted(corpus.rglob("*.rst.txt"))[: args.full_files]
    out: dict[str, Any] = {}
    for backend in dict.fromkeys(["torch", chosen]):
        settings = Settings(data_dir=work / f"full-{backend}", collection="full")
        embedder = load_embedder(settings, backend)
        embedder.embed_documents(["warm up"] * 4)
        start = time.perf_counter()
        report = ingest(paths, settings, progress=True, embedder=embedder, root=corpus)
        seconds = time.perf_counter() - start
        out[backend] = {
            "seconds": round(seconds, 1),
            "chunks": report.chunks_added,
            "chunks_per_s": round(report.chunks_added / seconds, 2),
        }
        print(f"full index with {backend}: {out[backend]}", flush=True)
    return out


def _post_json(url: str, body: dict[str, Any], timeout: float) -> tuple[int, dict[str, Any]]:
    req = urllib.request.Request(url, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - loopback only
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (OSError, ValueError):
        return 0, {}


def bench_first_answer(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Seconds from starting ``ragloop run`` on a fresh data dir to the first answered question."""
    data = work / "fresh-data"
    port = free_port()
    env = {
        **os.environ,
        "RAGLOOP_DATA_DIR": str(data),
        "RAGLOOP_PORT": str(port),
        "RAGLOOP_LLM_PORT": str(free_port()),
        "RAGLOOP_COLLECTOR_GRPC_PORT": str(free_port()),
        "RAGLOOP_COLLECTOR_HTTP_PORT": str(free_port()),
        "RAGLOOP_PHOENIX_PORT": str(free_port()),
        "RAGLOOP_ARGILLA_PORT": str(free_port()),
        "RAGLOOP_DRIFT_UI_PORT": str(free_port()),
    }
    base = f"http://127.0.0.1:{port}"
    log = open(work / "ragloop-run.log", "w")  # noqa: SIM115 - closed below
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "ragloop"), "run"], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, cwd=ROOT,
    )  # fmt: skip
    result: dict[str, Any] = {}
    try:
        with tqdm(desc="waiting for the first answer", unit="s") as bar:
            while time.perf_counter() - start < args.first_answer_timeout:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"ragloop run exited with {proc.returncode}; see {work / 'ragloop-run.log'}"
                    )
                status, body = _post_json(f"{base}/api/chat", {"message": QUESTION}, timeout=120)
                if status == 200 and body.get("answer") and body.get("sources"):
                    result["install_to_first_answer_s"] = round(time.perf_counter() - start, 1)
                    break
                time.sleep(1.0)
                bar.update(1)
        with urllib.request.urlopen(f"{base}/healthz", timeout=10) as resp:  # noqa: S310
            result["indexing_at_first_answer"] = json.loads(resp.read()).get("indexing")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
    return result


def main() -> None:
    """Run the parts asked for and merge their keys into bench/results/first_run.json."""
    args = _parse()
    run = Run("first_run", scratch=args.scratch)
    corpus = fetch_corpus(Settings(corpus="python-docs"), progress=False)
    chosen = args.chosen or resolve_backend(Settings(embedding_backend="auto"))
    timings: dict[str, Any] = {}
    quality: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="ragloop-first-run-") as tmp:
        work = Path(tmp)
        if not args.no_faq:
            faq = bench_faq(args, corpus, work)
            quality["hit_at_3_faq"] = {b: v["hit_at_3"] for b, v in faq.items()}
        if not args.no_embed:
            embed = bench_embed(run, args, corpus)
            timings["embed_chunks_per_s"] = {b: v["chunks_per_s"] for b, v in embed.items()}
            timings["embed_cells"] = embed
        if args.full:
            full = bench_full(args, corpus, work, chosen)
            timings["full_index_s"] = {b: v["seconds"] for b, v in full.items()}
            timings["full_index_cells"] = full
        if args.first_answer:
            timings.update(bench_first_answer(args, work))
    rows = [
        {
            "backend": b,
            "chunks/s": timings.get("embed_chunks_per_s", {}).get(b),
            "hit@3 FAQ": quality.get("hit_at_3_faq", {}).get(b),
            "full index s": timings.get("full_index_s", {}).get(b),
        }
        for b in args.backends
    ]
    print(table(rows))
    if "install_to_first_answer_s" in timings:
        print(f"install to first answer: {timings['install_to_first_answer_s']} s")
    if quality:  # quality does not depend on load: written by bench_faq as each backend finishes
        Run("first_run", timing=False, scratch=args.scratch).merge({"chosen_backend": chosen})
    if timings:
        print(f"timings written to {run.merge(timings)}")


if __name__ == "__main__":
    main()
