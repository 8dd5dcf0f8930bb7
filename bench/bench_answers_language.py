"""Rewriting that cannot lose the question, and the user's language (issue 13): quality figures.

Parts (``--parts``, all by default):

* ``followup``: the 68 two-turn FAQ conversations of ``eval/data/faq_followups.jsonl``. The first
  turn's answer in the history is the FAQ's own answer to the first question (cut to
  ``--first-answer-chars``), standing in for a good first answer. The follow-up is retrieved
  (top 3) with: ``no_condense`` (the message as typed), ``condense_as_is`` (the condense prompt of
  rag-v1, unchecked: the step as it was), ``condense_checked`` (today's prompt, checked by
  ``chatbot._rewrite.guard_rewrite`` with its fallback, retrieved as the chat does: after a
  fallback the fallback question and the message are each searched and fused, ``chatbot._fusion``),
  and two more for the breakdown: ``condense_new_prompt`` (today's prompt, unchecked) and
  ``as_is_checked`` (the old prompt's rewrites, checked and fused likewise). Without the LLM, on
  every conversation: ``fallback_all`` (previous question plus message, alone and fused). hit@3 is
  the share of follow-ups with their gold FAQ passage in the top 3. The condense calls go to the
  real local LLM (temperature 0).
* ``translated``: the 180 translated FAQ questions of ``eval/data/faq_translated.jsonl`` against the
  English index, hit@3 by language (plus ``en``: the 60 English headings they were translated from).
  The embedding model (all-MiniLM-L6-v2) was trained on English only.
* ``answers``: ``--answers`` questions per language (de, fr, es; a seeded sample of the translated
  set) through the real chain (``chatbot._chain.build_rag_chain``: language detection, retrieval,
  the answer prompt asking for the question's language, the localised refusal) and the grounding
  gate as the chat runs it (``RAGLOOP_GATE_STRATEGY``; ``--no-gate`` leaves it out). What is
  measured is what the user is SHOWN: the gated answer when the gate ran. Its language is detected
  with the same detector (``eval._language.detect_language``, no history) on its prose: quoted
  lines (``> ...``, an extractive answer's passage in the source's own words, under a label in the
  user's language) are left out. ``answer_language_match`` is the share that matches the
  question's language. Also reported: the model's own answers before the gate
  (``draft_match``), the shown answers with quotes included (``shown_with_quotes_match``), the
  gate's outcomes, the share among generated answers alone (refusals are fixed texts), and the
  refusals.

Index (``--index``): ``docs`` is the full default index (python3.11-doc sources, ~14.5k chunks);
``faq`` indexes only the FAQ pages (for quick runs). Built once under ``--work`` and reused.
Retrieval uses the configured mode (``RAGLOOP_RETRIEVAL_MODE``), recorded in the results.

Quality figures do not depend on the load, so they are always written (bench/_common.py): the keys
``followup_hit_at_3`` (by variant), ``translated_hit_at_3`` (by language) and
``answer_language_match`` go into bench/results/answers.json (``run.merge``), with ``*_detail``
keys beside them; every case goes to bench/results/answers_language.json.

The LLM: ``--llm-url`` (an OpenAI-compatible base URL), or the default local model is started with
``ragloop llm serve`` on a free port for the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench._common import Run, table  # noqa: E402
from chatbot import _prompts as prompts  # noqa: E402
from chatbot._chain import build_chat_model, build_rag_chain  # noqa: E402
from chatbot._fusion import search_queries  # noqa: E402
from chatbot._gate import GroundingGate  # noqa: E402
from chatbot._rewrite import fallback_question, guard_rewrite, turn_language  # noqa: E402
from eval._convsets import FollowupCase, followup_cases, translated_cases  # noqa: E402
from eval._datasets import Case  # noqa: E402
from eval._harness import is_relevant  # noqa: E402
from eval._language import detect_language  # noqa: E402
from ragloop.settings import Settings  # noqa: E402

K = 3
LANGS = ("de", "fr", "es")
#: The condense prompt before this work (prompt version rag-v1): the step "as it is now".
CONDENSE_V1 = (
    "Rewrite the user's last message as one standalone question that can be understood without "
    "the conversation. Reply with the question only."
)
FOLLOWUP_VARIANTS = (
    "no_condense",
    "condense_as_is",
    "condense_checked",
    "condense_new_prompt",
    "as_is_checked",
)


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_work = Settings().cache_dir / "bench" / "answers-language"
    p.add_argument("--work", type=Path, default=default_work, help="where the bench index lives")
    p.add_argument(
        "--index", choices=("docs", "faq"), default="docs", help="full docs index, or FAQ pages only"
    )
    p.add_argument("--parts", nargs="+", choices=("followup", "translated", "answers"), default=None)
    p.add_argument(
        "--llm-url", default=None, help="an OpenAI-compatible base URL (default: start the local model)"
    )
    p.add_argument("--followups", type=int, default=None, help="conversations to run (default: all 68)")
    p.add_argument("--answers", type=int, default=10, help="answered questions per language (de, fr, es)")
    p.add_argument("--answer-tokens", type=int, default=80, help="max tokens of each answer")
    p.add_argument(
        "--answer-k", type=int, default=None, help="passages in the answer prompt (default RAGLOOP_TOP_K)"
    )
    p.add_argument(
        "--first-answer-chars", type=int, default=400, help="length of the first answer in history"
    )
    p.add_argument("--concurrency", type=int, default=2, help="LLM requests in flight (the server's slots)")
    p.add_argument("--no-gate", action="store_true", help="answers: measure the model's answers ungated")
    p.add_argument("--seed", type=int, default=0, help="seed of the answered sample")
    p.add_argument(
        "--until",
        default=None,
        help="UTC time HH:MM after which no LLM case starts (the n that finished is recorded)",
    )
    p.add_argument("--scratch", action="store_true", help="a smoke run: write under bench/results/tmp/")
    p.add_argument(
        "--no-build", action="store_true", help="open the index as it is (another run is building it)"
    )
    return p.parse_args()


def _deadline(args: argparse.Namespace) -> float | None:
    """``--until`` (HH:MM UTC today) as a ``time.time()`` value."""
    if not args.until:
        return None
    from datetime import UTC, datetime

    hh, mm = (int(x) for x in args.until.split(":"))
    return datetime.now(UTC).replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()


def build_index(work: Path, which: str, ingest_now: bool = True) -> Settings:
    """Index the Python docs (or only their FAQ pages) under ``work/which``; returns its settings."""
    from retrieval import fetch_corpus, ingest

    settings = Settings(data_dir=work / which, collection=f"lang-{which}", chroma_url=None, database_url=None)
    if not ingest_now:
        return settings
    corpus = fetch_corpus(Settings(corpus="python-docs"), progress=False)
    report = ingest([corpus if which == "docs" else corpus / "faq"], settings, progress=True)
    print(report.summary(), flush=True)
    return settings


_SEARCHES: dict[tuple[int, str], dict[str, list[Any]]] = {}


def _top(retriever: Any, question: str) -> dict[str, list[Any]]:
    """The top :data:`K` chunks for ``question``, hybrid and dense, from one query embedding (memoised)."""
    key = (id(retriever), question)
    if key not in _SEARCHES:
        vector = retriever.embedder.embed_query(question)
        _SEARCHES[key] = {
            "hybrid": list(retriever.search_hybrid(question, vector, K))[:K],
            "dense": list(retriever.search_embedding(vector, K))[:K],
        }
    return _SEARCHES[key]


def hit(retriever: Any, case: Case, question: str, mode: str | None = None) -> bool:
    """Whether a gold passage of ``case`` is among the top :data:`K` chunks for ``question``.

    ``mode`` is ``"hybrid"`` or ``"dense"`` (None: the configured ``RAGLOOP_RETRIEVAL_MODE``).
    """
    chunks = _top(retriever, question)[mode or retriever.settings.retrieval_mode]
    return any(is_relevant(case, c.source, c.text) for c in chunks)


def hit_queries(retriever: Any, case: Case, queries: list[str]) -> bool:
    """:func:`hit` for the chat's retrieval of several queries fused (``chatbot._fusion``), top :data:`K`."""
    if len(queries) == 1:
        return hit(retriever, case, queries[0])
    _, chunks, _ = search_queries(retriever, queries, K)
    return any(is_relevant(case, c.source, c.text) for c in chunks)


@contextlib.contextmanager
def llm_endpoint(url: str | None, logs: Path) -> Iterator[str]:
    """``url``, or the default local model served by ``ragloop llm serve`` for the block."""
    if url:
        yield url
        return
    from ragloop.process import ManagedProcess, free_port, http_ok

    port = free_port()
    argv = [sys.executable, "-m", "ragloop.cli", "llm", "serve", "--port", str(port), "--parallel", "2"]
    proc = ManagedProcess("llm", argv, logs / "llm.log").start()
    try:
        proc.wait_ready(lambda: http_ok(f"http://127.0.0.1:{port}/v1/models"), timeout=600)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.stop()


async def _bounded(
    items: list[Any], fn: Any, concurrency: int, desc: str, deadline: float | None
) -> list[Any]:
    """``fn`` over ``items``, at most ``concurrency`` in flight, in order, with a progress bar.

    No item runs past ``deadline`` (``time.time()``; None: no limit): one not started is skipped,
    one still running is cancelled. The result holds the cases that finished.
    """
    gate = asyncio.Semaphore(concurrency)
    bar = tqdm(total=len(items), desc=desc, unit="case")

    async def one(item: Any) -> Any:
        async with gate:
            if deadline is None:
                out = await fn(item)
            else:
                try:  # a case still running at the deadline is given up, not waited for
                    out = await asyncio.wait_for(fn(item), timeout=deadline - time.time())
                except TimeoutError:
                    return None
        bar.update(1)
        return out

    try:
        return [r for r in await asyncio.gather(*(one(i) for i in items)) if r is not None]
    finally:
        bar.close()


async def _condense(llm: Any, system: str, history: list[tuple[str, str]], message: str) -> str:
    """One condense call, exactly as the chain's step makes it, with the given system prompt."""
    from langchain_core.messages import HumanMessage, SystemMessage

    reply = await llm.ainvoke(
        [SystemMessage(system), HumanMessage(prompts.condense_prompt(history, message))], max_tokens=64
    )
    return prompts.clean_condensed(str(reply.content), fallback=message)


def run_followups(args: argparse.Namespace, settings: Settings, retriever: Any, url: str) -> dict[str, Any]:
    """hit@3 of the follow-ups per variant; the rewrites and check outcomes of every conversation."""
    convs: list[FollowupCase] = followup_cases(Settings())[: args.followups]
    llm = build_chat_model(url, "local", settings.llm_model, 0.0, 64, 900.0)

    async def rewrite(conv: FollowupCase) -> dict[str, Any]:
        history = [(conv.first, conv.first_answer[: args.first_answer_chars])]
        message = conv.case.question
        language = turn_language(message, history).language
        t0 = time.perf_counter()
        old = await _condense(llm, CONDENSE_V1, history, message)
        new = await _condense(llm, prompts.CONDENSE_SYSTEM_PROMPT, history, message)
        checked = guard_rewrite(new, message, history, language)
        old_checked = guard_rewrite(old, message, history, language)
        return {
            "id": conv.case.case_id,
            "language": conv.language,
            "detected_language": language,
            "first": conv.first,
            "followup": message,
            "gold_page": conv.case.gold_source,
            "condense_as_is": old,
            "condense_new_prompt": new,
            "condense_checked": checked.question,
            "checked_failed": list(checked.failed),
            "checked_queries": list(checked.queries),
            "as_is_checked": old_checked.question,
            "as_is_failed": list(old_checked.failed),
            "as_is_queries": list(old_checked.queries),
            "llm_s": time.perf_counter() - t0,
        }

    rows = asyncio.run(_bounded(convs, rewrite, args.concurrency, "condense", _deadline(args)))
    by_id = {c.case.case_id: c for c in convs}
    for row in rows:
        conv = by_id[row["id"]]
        row["no_condense"] = conv.case.question
        row["hits"] = {v: hit(retriever, conv.case, row[v]) for v in FOLLOWUP_VARIANTS}
        # The checked variants retrieve as the chat does: after a fallback, fused with the message.
        row["hits"]["condense_checked"] = hit_queries(retriever, conv.case, row["checked_queries"])
        row["hits"]["as_is_checked"] = hit_queries(retriever, conv.case, row["as_is_queries"])
        row["hits_dense"] = {v: hit(retriever, conv.case, row[v], "dense") for v in FOLLOWUP_VARIANTS}
    summary = _followup_summary(rows)
    # The LLM-free variant on every conversation, whatever --followups/--until left out.
    everyone = [c for c in followup_cases(Settings())]
    summary["detail"]["no_condense_all"] = {
        "n": len(everyone),
        "hit_at_3": _share([hit(retriever, c.case, c.case.question) for c in everyone]),
    }
    # The fallback alone, and fused with the message, on every conversation (no LLM): what the
    # checked variant does when every rewrite is rejected, before and after the fusion.
    fallbacks = [(c, fallback_question(c.case.question, c.first)) for c in everyone]
    summary["detail"]["fallback_all"] = {
        "n": len(everyone),
        "hit_at_3": _share([hit(retriever, c.case, q) for c, q in fallbacks]),
        "fused_with_message_hit_at_3": _share(
            [hit_queries(retriever, c.case, [q, c.case.question]) for c, q in fallbacks]
        ),
    }
    return summary


def _share(values: list[bool]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def _followup_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    by_variant = {v: _share([r["hits"][v] for r in rows]) for v in FOLLOWUP_VARIANTS}
    subsets = {
        "en": [r for r in rows if r["language"] == "en"],
        "other": [r for r in rows if r["language"] != "en"],
    }
    return {
        "hit_at_3": {v: by_variant[v] for v in ("condense_as_is", "condense_checked", "no_condense")},
        "detail": {
            "n": len(rows),
            "hit_at_3_all_variants": by_variant,
            "hit_at_3_all_variants_dense": {
                v: _share([r["hits_dense"][v] for r in rows]) for v in FOLLOWUP_VARIANTS
            },
            "hit_at_3_by_language": {
                name: {v: _share([r["hits"][v] for r in sub]) for v in FOLLOWUP_VARIANTS}
                for name, sub in subsets.items()
            },
            "n_by_language": {name: len(sub) for name, sub in subsets.items()},
            "checked_fallback_share": _share([bool(r["checked_failed"]) for r in rows]),
            "as_is_fallback_share": _share([bool(r["as_is_failed"]) for r in rows]),
            "checked_failures": _count(r for row in rows for r in row["checked_failed"]),
            "as_is_failures": _count(r for row in rows for r in row["as_is_failed"]),
            "llm_s_median": sorted(r["llm_s"] for r in rows)[len(rows) // 2] if rows else None,
        },
        "rows": rows,
    }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def run_translated(retriever: Any) -> dict[str, Any]:
    """hit@3 of the translated questions by language, and of their English originals."""
    cases = translated_cases(Settings())
    rows = []
    for case in tqdm(cases, desc="translated", unit="q"):
        rows.append(
            {
                "id": case.case_id,
                "language": case.extra["language"],
                "hit": hit(retriever, case, case.question),
                "dense": hit(retriever, case, case.question, "dense"),
            }
        )
    originals = {c.extra["english"]: c for c in cases}
    for english, case in tqdm(originals.items(), desc="english originals", unit="q"):
        rows.append(
            {
                "id": f"en:{english}",
                "language": "en",
                "hit": hit(retriever, case, english),
                "dense": hit(retriever, case, english, "dense"),
            }
        )
    by_lang = {lang: _share([r["hit"] for r in rows if r["language"] == lang]) for lang in ("en", *LANGS)}
    return {
        "hit_at_3": by_lang,
        "detail": {
            "n_by_language": {lang: sum(r["language"] == lang for r in rows) for lang in by_lang},
            "hit_at_3_dense": {
                lang: _share([r["dense"] for r in rows if r["language"] == lang]) for lang in by_lang
            },
        },
        "rows": rows,
    }


def run_answers(args: argparse.Namespace, settings: Settings, retriever: Any, url: str) -> dict[str, Any]:
    """The share of answers in the question's language, with the real chain and the local model."""
    cases = translated_cases(Settings())
    rng = random.Random(args.seed)
    per_lang = []
    for lang in LANGS:
        pool = [c for c in cases if c.extra["language"] == lang]
        per_lang.append(rng.sample(pool, min(args.answers, len(pool))))
    # de, fr, es, de, fr, es, ...: a run cut short by --until stays balanced across languages.
    sample: list[Case] = [c for group in zip(*per_lang, strict=False) for c in group]
    llm = build_chat_model(url, "local", settings.llm_model, 0.0, args.answer_tokens, 900.0)
    answer_k = args.answer_k or settings.top_k
    gate = None if args.no_gate else GroundingGate.from_settings(settings)
    chain = build_rag_chain(llm, retriever, answer_k, settings.score_threshold, gate=gate)

    async def answer(case: Case) -> dict[str, Any]:
        t0 = time.perf_counter()
        text, refused, language, outcome = "", False, None, None
        async for chunk in chain.astream({"message": case.question, "history": []}):
            if "language" in chunk:
                language = chunk["language"].language
            if "retrieval" in chunk:
                refused = not chunk["retrieval"].relevant
            if "answer" in chunk:
                text += str(chunk["answer"].content or "")
            if "gate" in chunk:
                outcome = chunk["gate"]
        shown = outcome.answer if outcome is not None else text
        got = detect_language(unquoted(shown))
        want = case.extra["language"]
        return {
            "id": case.case_id,
            "language": want,
            "question_detected": language,
            "answer_detected": got.language,
            "answer_source": got.source,
            "match": got.language == want,
            "draft_match": detect_language(text).language == want,
            "shown_with_quotes_match": detect_language(shown).language == want,
            "gate": None if outcome is None else outcome.status,
            "gate_reason": None if outcome is None else outcome.reason,
            "unchecked_language": None if outcome is None else outcome.unchecked_language,
            "refused": refused,
            "answer": shown,
            "draft": text,
            "s": time.perf_counter() - t0,
        }

    rows = asyncio.run(_bounded(sample, answer, args.concurrency, "answers", _deadline(args)))
    generated = [r for r in rows if not r["refused"]]
    return {
        "match": _share([r["match"] for r in rows]),
        "detail": {
            "n": len(rows),
            "measured_on": "shown answer (after the gate), quoted lines left out"
            if gate is not None
            else "the model's answer (no gate)",
            "draft_match": _share([r["draft_match"] for r in rows]),
            "shown_with_quotes_match": _share([r["shown_with_quotes_match"] for r in rows]),
            "gate": _count(str(r["gate"]) for r in rows if not r["refused"]),
            "gate_strategy": None if gate is None else gate.strategy,
            "n_per_language": args.answers,
            "answer_max_tokens": args.answer_tokens,
            "answer_k": answer_k,
            "by_language": {
                lang: _share([r["match"] for r in rows if r["language"] == lang]) for lang in LANGS
            },
            "generated_only": _share([r["match"] for r in generated]),
            "generated_n": len(generated),
            "refused_n": len(rows) - len(generated),
            "question_language_correct": _share([r["question_detected"] == r["language"] for r in rows]),
        },
        "rows": rows,
    }


def unquoted(answer: str) -> str:
    """``answer`` without its quoted lines (``> ...``): the passage an extractive answer quotes."""
    return "\n".join(line for line in answer.splitlines() if not line.lstrip().startswith(">")).strip()


def main() -> None:
    """Build or reuse the index, run the parts, merge the keys into answers.json, print tables."""
    args = _parse()
    # A busy machine takes minutes to prefill a prompt: wait for the model instead of giving up.
    os.environ.setdefault("LANGCHAIN_OPENAI_STREAM_CHUNK_TIMEOUT_S", "0")
    parts = args.parts or ["followup", "translated", "answers"]
    run = Run("answers_language", timing=False, scratch=args.scratch)
    from retrieval import Retriever

    settings = build_index(args.work, args.index, ingest_now=not args.no_build)
    retriever = Retriever(settings)
    meta = {
        "index": args.index,
        "chunks": retriever.count(),
        "retrieval_mode": getattr(settings, "retrieval_mode", "dense"),
        "embedding_model": settings.embedding_model,
        "prompt_version": prompts.PROMPT_VERSION,
        "llm_model": settings.llm_model,
    }
    results: dict[str, Any] = {"setup": meta}
    keys: dict[str, Any] = {}
    if "translated" in parts:
        tr = run_translated(retriever)
        results["translated"] = tr
        keys["translated_hit_at_3"] = tr["hit_at_3"]
        keys["translated_detail"] = {**tr["detail"], **meta}
    if {"followup", "answers"} & set(parts):
        with llm_endpoint(args.llm_url, args.work) as url:
            if "followup" in parts:
                fu = run_followups(args, settings, retriever, url)
                results["followup"] = fu
                keys["followup_hit_at_3"] = fu["hit_at_3"]
                keys["followup_detail"] = {**fu["detail"], **meta}
            if "answers" in parts:
                an = run_answers(args, settings, retriever, url)
                results["answers"] = an
                keys["answer_language_match"] = an["match"]
                keys["answer_language_detail"] = {**an["detail"], **meta}
    detail_name = "answers_language_" + "_".join(parts)
    run.write(results, detail_name)
    path = run.merge(keys, name="answers")
    _print(results)
    print(f"\nwritten {path} and {run.path(detail_name)}")


def _print(results: dict[str, Any]) -> None:
    if "followup" in results:
        d = results["followup"]["detail"]
        dense = d["hit_at_3_all_variants_dense"]
        rows = [
            {"variant": v, "hit@3": d["hit_at_3_all_variants"][v], "dense hit@3": dense[v]}
            for v in FOLLOWUP_VARIANTS
        ]
        print(f"\nfollow-ups (n={d['n']}; checked fallback share {d['checked_fallback_share']})")
        print(table(rows))
    if "translated" in results:
        print("\ntranslated questions against the English index")
        dense = results["translated"]["detail"]["hit_at_3_dense"]
        print(
            table(
                [
                    {"language": k, "hit@3": v, "dense hit@3": dense[k]}
                    for k, v in results["translated"]["hit_at_3"].items()
                ]
            )
        )
    if "answers" in results:
        a = results["answers"]
        print(f"\nanswer language match {a['match']} (n={a['detail']['n']})")
        print(table([{"language": k, "match": v} for k, v in a["detail"]["by_language"].items()]))


if __name__ == "__main__":
    main()
