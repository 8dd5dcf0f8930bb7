"""The offline harness end to end: real chain, real local LLM, real Chroma index, small fixed samples."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from eval._cli import app
from eval._datasets import Case
from eval._harness import compare_reports, is_relevant, run_dataset
from eval._report import write_report
from ragloop.app import build_chat_service, prompt_version
from ragloop.settings import Settings


def test_relevance_needs_gold_file_and_overlap():
    case = Case("c", "q?", "Delhi", "item-1.txt", "The Oberoi Group has its head office in Delhi.")
    assert is_relevant(case, "/x/item-1.txt", "The Oberoi Group has its head office in Delhi.")
    assert not is_relevant(case, "/x/item-2.txt", "The Oberoi Group has its head office in Delhi.")
    assert not is_relevant(case, "/x/item-1.txt", "Completely unrelated words about volcanoes erupting.")


@pytest.mark.llm
@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["halueval-qa", "python-faq"])
def test_harness_end_to_end(dataset, settings: Settings, llm_server, tmp_path):
    settings = settings.model_copy(update={"openai_base_url": llm_server, "max_tokens": 16})
    corpus = None
    if dataset == "python-faq":
        from retrieval import fetch_corpus

        corpus = [fetch_corpus(settings) / "faq"]  # the FAQ pages only: a small index for the test
    report = run_dataset(
        dataset,
        settings,
        limit=2,
        seed=3,
        corpus_size=12,
        corpus_paths=corpus,
        service_factory=build_chat_service,
        prompt_version=prompt_version(),
    )
    mt = report["metrics"]
    assert mt["n"] == 2 and len(report["rows"]) == 2
    assert 0.0 <= mt["retrieval"]["mrr"] <= mt["retrieval"]["hit@5"] <= 1.0
    assert mt["retrieval"]["hit@5"] > 0  # gold passages are in the index and the retriever finds some
    assert report["config"]["model"] and report["config"]["prompt_version"] and report["config"]["seed"] == 3
    for row in report["rows"]:
        assert row["status"] in ("ok", "no_context", "error")
        assert row["faithfulness"] is None or 0.0 <= row["faithfulness"] <= 1.0
    again = {**report, "metrics": {**mt, "retrieval": {**mt["retrieval"], "mrr": mt["retrieval"]["mrr"] / 2}}}
    paths = write_report(report, tmp_path / "reports")
    assert paths["png"].stat().st_size > 1000 and "hit@1" in paths["md"].read_text()
    other = write_report(again | {"dataset": dataset + "-b"}, tmp_path / "reports")
    deltas = dict((k, d) for k, _, _, d in compare_reports(report, again))
    assert deltas["retrieval.mrr"] == pytest.approx(-mt["retrieval"]["mrr"] / 2, abs=1e-4)
    assert "correctness.token_f1" in deltas
    out = CliRunner().invoke(app, ["compare", str(paths["json"]), str(other["json"])])
    assert out.exit_code == 0 and "retrieval.mrr" in out.output
    assert json.loads(paths["json"].read_text())["dataset"] == dataset


def test_samples_are_fixed_by_seed(settings: Settings):
    from eval._datasets import halueval_cases, sample_indices

    assert sample_indices(100, 5, seed=1) == sample_indices(100, 5, seed=1) != sample_indices(100, 5, seed=2)
    a, folder = halueval_cases(settings, 3, seed=1, corpus_size=10)
    b, _ = halueval_cases(settings, 3, seed=1, corpus_size=10)
    assert [c.case_id for c in a] == [c.case_id for c in b]
    assert len(list(folder.glob("*.txt"))) == 10
    assert all((folder / c.gold_source).exists() for c in a)
