"""Scalar features of a turn (pure)."""

from __future__ import annotations

import math

from monitoring.drift._features import (
    INPUT_FEATURES,
    OUTPUT_FEATURES,
    feature_columns,
    non_english,
    turn_features,
)


def test_features_of_an_answered_turn():
    turn = {
        "standalone_question": "How do I copy a file?",
        "answer": "Use shutil.copy [1].",
        "status": "ok",
        "retrieved": [{"score": 0.7}, {"score": 0.4}],
        "cited": [1],
        "total_ms": 1200.0,
        "input_tokens": 400,
        "output_tokens": 12,
        "extra": {"faithfulness": 0.1},  # nothing writes it: the score comes from the evaluations table
    }
    f = turn_features(turn, score_threshold=0.25, thumbs_down=True, faithfulness=0.9)
    assert set(f) == set(INPUT_FEATURES + OUTPUT_FEATURES)
    assert f["query_chars"] == 21 and f["answer_chars"] == 20 and f["retrieval_top_score"] == 0.7
    assert f["no_relevant_retrieval"] == 0.0 and f["refusal"] == 0.0 and f["cited_sources"] == 1.0
    assert f["thumbs_down"] == 1.0 and f["faithfulness"] == 0.9 and f["latency_ms"] == 1200.0


def test_features_of_a_refusal_without_answer():
    f = turn_features(
        {
            "user_message": "Что такое GIL?",
            "language": "ru",
            "status": "no_context",
            "retrieved": [],
            "total_ms": float("inf"),
        },
        0.25,
    )
    assert f["refusal"] == 1.0 and f["no_relevant_retrieval"] == 1.0 and f["query_non_english"] == 1.0
    assert (
        math.isnan(f["answer_chars"])
        and math.isnan(f["retrieval_top_score"])
        and math.isnan(f["faithfulness"])
        and math.isnan(f["latency_ms"])  # inf is no measurement
    )


def test_low_score_counts_as_no_relevant_retrieval_and_columns():
    f = turn_features(
        {"user_message": "x", "status": "ok", "answer": "", "retrieved": [{"score": 0.1}]}, 0.25
    )
    assert f["no_relevant_retrieval"] == 1.0
    assert math.isnan(f["query_non_english"])  # logged before turns.language existed: unknown
    assert non_english("en") == 0.0 and non_english("de") == 1.0 and non_english("zh") == 1.0
    assert math.isnan(non_english(None)) and math.isnan(non_english(""))
    cols = feature_columns([f, f])
    assert cols["no_relevant_retrieval"].tolist() == [1.0, 1.0]
