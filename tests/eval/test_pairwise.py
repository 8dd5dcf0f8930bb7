"""The local comparison of two answers (eval.LocalPairwise): known values and the real scorer.

The judge's local half compares the evidence of two answers to one context instead of their two
faithfulness scores. On HaluEval dialogue, comparing the scores preferred the right response in 70%
of held-out pairs, comparing the evidence in 86% (bench/bench_judge.py); the dialogue case below is
one the score comparison gets wrong.
"""

from __future__ import annotations

import pytest

from eval import LocalFaithfulness, LocalPairwise
from eval._features import FEATURE_NAMES
from eval._pairwise import ANSWER_FEATURES, PAIR_FEATURES, answer_vector, pair_features, preference


def test_features_are_antisymmetric_so_the_order_never_matters() -> None:
    a = answer_vector(0.8, dict.fromkeys(FEATURE_NAMES, 0.5), "It was released in 2010.")
    b = answer_vector(0.3, dict.fromkeys(FEATURE_NAMES, 0.1), "I don't know, sorry. Do you like it?")
    ab, ba = pair_features(a, b, 40, 12), pair_features(b, a, 40, 12)
    assert len(ab) == len(PAIR_FEATURES) == 3 * len(ANSWER_FEATURES)
    assert ab == pytest.approx([-x for x in ba])
    assert preference(ab) + preference(ba) == pytest.approx(1.0)
    assert preference(pair_features(a, a, 40, 12)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        pair_features(a[:-1], b, 1, 1)
    with pytest.raises(ValueError):
        preference(ab[:-1])


def test_answer_vector_known_values() -> None:
    v = answer_vector(0.25, None, "I don't have any information on that. Have you seen Witness?")
    names = dict(zip(ANSWER_FEATURES, v, strict=True))
    assert names["faithfulness"] == 0.25
    assert all(names[n] == 0.0 for n in FEATURE_NAMES)  # no content evidence: zeros
    assert names["hedges"] == 1.0 and names["ends_with_question"] == 1.0
    assert names["log_words"] == pytest.approx(2.4849, abs=1e-3)  # log1p(11)
    plain = dict(zip(ANSWER_FEATURES, answer_vector(1.0, None, "Peter Weir directed it."), strict=True))
    assert plain["hedges"] == 0.0 and plain["ends_with_question"] == 0.0


def test_the_real_scorer_prefers_the_grounded_reply_where_scores_alone_do_not(encoder) -> None:  # type: ignore[no-untyped-def]
    # HaluEval dialogue, a held-out item (position 695 of bench_judge's split).
    pairwise = LocalPairwise(LocalFaithfulness(encoder))
    knowledge = ["The Matrix is starring Keanu Reeves. Keanu Reeves starred in Constantine"]
    history = "[Human]: Do you know any movie like The Matrix? "
    right = "Sure, you might like Constantine, it is starring Keanu Reaves too"
    hallucinated = (
        "Actually, Keanu Reeves never starred in The Matrix. But you might like Constantine, which stars "
        "Sylvester Stallone."
    )
    pref = pairwise.compare(right, hallucinated, knowledge, history)
    assert pref.score_a < pref.score_b  # the two faithfulness scores alone prefer the hallucination
    assert pref.p_a > 0.7  # the comparison of their evidence does not
    swapped = pairwise.compare(hallucinated, right, knowledge, history)
    assert swapped.p_a == pytest.approx(1.0 - pref.p_a)
    assert (pref.score_a, pref.score_b) == (swapped.score_b, swapped.score_a)
