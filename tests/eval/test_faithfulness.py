"""Known values of the local faithfulness scorer on small hand-made cases (real MiniLM encoder)."""

from __future__ import annotations

import math

import pytest

from eval import EvalResult, LocalFaithfulness
from eval._faithfulness import combine, expand
from eval._features import (
    COUNT_FEATURES,
    FEATURE_NAMES,
    SENTENCE_FEATURES,
    answer_features,
    index_context,
    sentence_features,
)
from eval._text import tokenize

CONTEXT = [
    "The Oberoi family is an Indian family famous for its hotels.",
    "The Oberoi Group is a hotel company with its head office in Delhi. It runs 31 hotels.",
]
QUESTION = "The Oberoi family is part of a hotel company that has a head office in what city?"


def test_sentence_features_known_values():
    ctx = index_context(CONTEXT, QUESTION)
    row = sentence_features(tokenize("The Oberoi Group runs 31 hotels in Delhi."), ctx, similarity=0.9)
    f = dict(zip(FEATURE_NAMES, answer_features([row], [1.0]), strict=False))
    assert f["content_coverage"] == 1.0 and f["number_coverage"] == 1.0 and f["no_novel_name"] == 1.0
    assert f["best_sentence_coverage"] == pytest.approx(4 / 6)  # "runs 31" is in the next sentence
    assert f["novel_words"] == 0.0
    # Names the context backs that the question did not already give: Group, Delhi (Oberoi is given).
    assert f["context_name_coverage"] == 1.0 and f["new_context_names"] == pytest.approx(math.log1p(2))
    assert f["question_coverage"] == pytest.approx(2 / 6)  # oberoi, hotel
    bad = sentence_features(tokenize("The Oberoi Group runs 45 hotels in Mumbai."), ctx, similarity=0.9)
    g = dict(zip(FEATURE_NAMES, answer_features([bad], [1.0]), strict=False))
    assert g["number_coverage"] == 0.0 and g["no_novel_name"] == 0.0
    assert g["content_coverage"] == pytest.approx(4 / 6)
    assert g["novel_words"] == pytest.approx(math.log1p(2))
    assert g["context_name_coverage"] == pytest.approx(2 / 3)  # Mumbai is not in the context


def test_names_only_the_history_gave_are_not_context_backed():
    # Dialogue: a hallucinated turn reuses a name the user said; the knowledge never names it.
    history = "[Human]: Louisa May Alcott was influenced by Stephenie Meyer, any works by her?"
    ctx = index_context(
        ["Little Women is written by Louisa May AlcottLouisa May Alcott is a/an Writer"], history
    )
    row = sentence_features(tokenize("I suggest works by Stephenie Meyer."), ctx, similarity=0.5)
    f = dict(zip(SENTENCE_FEATURES, row, strict=True))
    assert f["name_coverage"] == 1.0 and f["novel_names"] == 0.0  # the history "covers" it
    assert f["context_name_coverage"] == 0.0 and f["new_context_names"] == 0.0
    right = sentence_features(tokenize("May I suggest Little Women by Louisa May Alcott?"), ctx, 0.5)
    r = dict(zip(SENTENCE_FEATURES, right, strict=True))
    assert r["context_name_coverage"] == 1.0 and r["new_context_names"] == 2.0  # Little Women


def test_answer_features_aggregate_mean_counts_and_min():
    row = dict.fromkeys(SENTENCE_FEATURES, 1.0) | dict.fromkeys(COUNT_FEATURES, 0.0)
    rows = [list(row.values()), list((row | {"content_coverage": 0.0, "novel_words": 3.0}).values())]
    f = dict(zip(FEATURE_NAMES, answer_features(rows, [3.0, 1.0]), strict=True))
    assert f["content_coverage"] == 0.75 and f["question_coverage"] == 1.0
    assert f["min_content_coverage"] == 0.0
    assert f["novel_words"] == pytest.approx(math.log1p(3)) and f["new_context_names"] == 0.0


def test_expand_and_combine_are_a_logistic_on_products():
    assert expand([2.0, 3.0]) == [2.0, 3.0, 4.0, 6.0, 9.0]
    n = len(expand([0.0] * len(FEATURE_NAMES)))
    # Full coverage, similarity 0.5, nothing novel.
    feats = dict.fromkeys(FEATURE_NAMES, 1.0) | dict.fromkeys(COUNT_FEATURES, 0.0)
    clean = list((feats | {"embedding_similarity": 0.5, "min_embedding_similarity": 0.5}).values())
    assert combine(clean, weights=[0.0] * n, bias=0.0) == 0.5
    assert combine(clean, weights=[1.0] + [0.0] * (n - 1), bias=-1.0) == 0.5
    # The evidence gate: a novel number and no coverage caps the score whatever the weights say.
    assert combine([0.0] * len(FEATURE_NAMES), weights=[0.0] * n, bias=5.0) == 0.2
    # The support floor: everything covered and similar sentences is never scored unsupported.
    similar = list((feats | {"embedding_similarity": 0.9, "min_embedding_similarity": 0.9}).values())
    assert combine(similar, weights=[0.0] * n, bias=-5.0) == 0.55


@pytest.fixture(scope="module")
def scorer(encoder):
    return LocalFaithfulness(encoder)


def test_supported_answer_scores_high_and_cites_its_source(scorer):
    res = scorer.score("The Oberoi Group has its head office in Delhi.", CONTEXT, QUESTION)
    assert res.ok and res.score > 0.5
    assert res.sentences[0].supported and res.sentences[0].source_index == 1
    assert "Delhi" in res.sentences[0].evidence


def test_hallucinated_answer_scores_lower(scorer):
    good = scorer.score("The Oberoi Group has its head office in Delhi.", CONTEXT, QUESTION)
    bad = scorer.score(
        "The Oberoi family's hotel company is based in Mumbai, run by Ratan Tata.", CONTEXT, QUESTION
    )
    assert bad.score < 0.5 < good.score
    assert not bad.sentences[0].supported


def test_mixed_answer_marks_each_sentence(scorer):
    res = scorer.score(
        "The Oberoi Group is a hotel company with its head office in Delhi. "
        "It was founded on Mars in 1802 by Napoleon Bonaparte and Elon Musk.",
        CONTEXT,
        QUESTION,
    )
    assert [s.supported for s in res.sentences] == [True, False]


def test_edge_cases_never_nan(scorer):
    empty = scorer.score("", CONTEXT)
    assert empty.score == 1.0 and empty.sentences == []  # claims nothing
    no_ctx = scorer.score("The Oberoi Group is in Delhi.", [])
    assert no_ctx.ok and no_ctx.score < 0.5
    lexical_only = LocalFaithfulness(None).score("The Oberoi Group is in Delhi.", CONTEXT)
    assert lexical_only.ok and 0.0 <= lexical_only.score <= 1.0


def test_result_contract():
    with pytest.raises(ValueError):
        EvalResult(score=float("nan"))
    with pytest.raises(ValueError):
        EvalResult(score=None)
    assert EvalResult.failed("boom").to_dict()["error"] == "boom"
