from pytest import approx

from eval._metrics import (
    contains_reference,
    distribution,
    first_hit_rank,
    hit_at_k,
    mrr,
    normalize_answer,
    reference_recall,
    token_f1,
)


def test_ranks_hit_at_k_and_mrr():
    ranks = [first_hit_rank(r) for r in ([False, True], [True], [False, False, False], [False, False, True])]
    assert ranks == [2, 1, None, 3]
    assert hit_at_k(ranks, 1) == 0.25
    assert hit_at_k(ranks, 3) == 0.75
    assert mrr(ranks) == approx((1 / 2 + 1 + 0 + 1 / 3) / 4)
    assert hit_at_k([], 3) == 0.0 and mrr([]) == 0.0


def test_correctness_metrics_known_values():
    assert normalize_answer("The Oberoi Group!") == "oberoi group"
    assert token_f1("Delhi", "Delhi") == 1.0
    assert token_f1("It is in Delhi, India", "Delhi") == approx(2 * (1 / 5) * 1 / (1 / 5 + 1))
    assert token_f1("Mumbai", "Delhi") == 0.0
    assert reference_recall("The head office is in Delhi.", "Delhi India") == 0.5
    assert contains_reference("The head office is in New Delhi.", "new delhi")
    assert not contains_reference("Delhiite", "Delhi")


def test_distribution_ignores_missing_values():
    d = distribution([0.0, 1.0, None, 0.5])
    assert d["n"] == 3 and d["mean"] == 0.5 and d["p50"] == 0.5 and d["min"] == 0.0
    assert distribution([None])["mean"] is None
