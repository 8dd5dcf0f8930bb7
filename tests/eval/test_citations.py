"""Known values of the citation verifier: marker removal, insertion, ranges, markers only, no support."""

from __future__ import annotations

import pytest

from eval import (
    CitationVerifier,
    LocalFaithfulness,
    SentenceEvidence,
    align_evidence,
    attribute,
    parse_answer,
)
from eval._citations import MIN_OVERLAP, marker_numbers, overlap, prefer_ranked


def ev(sentence: str, score: float, source: int | None) -> SentenceEvidence:
    """Evidence as the scorer gives it; ``source`` is 0-based (None: no candidate)."""
    return SentenceEvidence(sentence, score >= 0.5, score, source, None)


def test_parse_attaches_markers_to_the_sentence_they_follow():
    p = parse_answer("[3] Lists are mutable [2]. Tuples are not. [1][5]\n\nSources: [4]")
    assert p.sentences == ["Lists are mutable.", "Tuples are not."]
    assert p.markers == [[3, 2], [1, 5, 4]]
    assert p.text.strip() == "Lists are mutable. Tuples are not.\n\nSources:"


@pytest.mark.parametrize(
    ("marker", "numbers"),
    [("[1]", [1]), ("[1, 3]", [1, 3]), ("[1][2]", [1, 2]), ("[2-4]", [2, 3, 4]), ("[1-99]", [1])],
)
def test_marker_numbers(marker: str, numbers: list[int]):
    assert marker_numbers(marker) == numbers


def test_indexing_and_code_are_not_markers():
    p = parse_answer("Use `xs[1]` or xs[0] and f(a)[2] [1].\n```\nx = [3]\n```")
    assert p.markers == [[1]]
    assert "`xs[1]`" in p.text and "xs[0]" in p.text and "f(a)[2]" in p.text and "[3]" in p.text


def test_unsupported_and_out_of_range_markers_are_removed():
    p = parse_answer("Lists are mutable [2][7]. Tuples are not [0].")
    evidence = [ev("Lists are mutable.", 0.9, 0), ev("Tuples are not.", 0.2, 1)]
    res = attribute(p, evidence, n_sources=2, threshold=0.5)
    # [2] names a passage that does not support the sentence, [7] and [0] name none; passage 1
    # supports the first sentence, so it gets [1]; the second is unsupported: no marker.
    assert res.answer == "Lists are mutable [1]. Tuples are not."
    assert res.to_dicts() == [{"sentence": 0, "source": 1, "score": 0.9}]
    assert (res.kept, res.removed, res.added) == (0, 3, 1)


def test_a_marker_to_another_supporting_passage_is_kept():
    p = parse_answer("Tuples are immutable [2].")
    res = attribute(p, [ev("Tuples are immutable.", 0.8, 0)], 2, 0.5, pair_support={(0, 2): 0.7})
    assert res.answer == "Tuples are immutable [2]."
    assert res.to_dicts() == [{"sentence": 0, "source": 2, "score": 0.7}]
    assert (res.kept, res.removed, res.added) == (1, 0, 0)


def test_missing_markers_are_added_where_support_is_clear():
    p = parse_answer("Lists are mutable. Tuples are immutable!\n- Dicts map keys")
    evidence = [
        ev("Lists are mutable.", 0.9, 0),
        ev("Tuples are immutable!", 0.7, 2),
        ev("- Dicts map keys", 0.3, 1),
    ]
    res = attribute(p, evidence, 3)
    assert res.answer == "Lists are mutable [1]. Tuples are immutable [3]!\n- Dicts map keys"
    assert [(c.sentence, c.source) for c in res.citations] == [(0, 1), (1, 3)]
    assert res.added == 2


def test_lexical_floor_blocks_a_citation_without_shared_words():
    p = parse_answer("The moon is made of green cheese [1].")
    res = attribute(p, [ev(p.sentences[0], 0.89, 0)], 1, overlaps={(0, 1): 0.0})
    assert res.answer == "The moon is made of green cheese." and res.citations == []
    assert overlap("The moon is made of green cheese.", "Lists are mutable sequences.") < MIN_OVERLAP
    assert overlap("Tuples are immutable sequences.", "A tuple is an immutable sequence.") == 1.0


def test_answer_of_only_markers_is_empty():
    for answer in ("[1] [2] [3]", "[1], [2].", "Sources: [1][2]", "", "   "):
        p = parse_answer(answer)
        assert not p.has_content, answer
        assert attribute(p, [], 3).answer == ""


def test_no_support_means_no_citation_and_no_marker():
    p = parse_answer("Python was named after a snake [1]. It is fast [2].")
    res = attribute(p, [ev(s, 0.1, 0) for s in p.sentences], 2)
    assert res.answer == "Python was named after a snake. It is fast."
    assert res.citations == [] and res.removed == 2


def test_evidence_is_aligned_by_sentence_text():
    p = parse_answer("Yes. Lists are mutable [1]. Ok.")
    aligned = align_evidence(p, [ev("Lists are mutable.", 0.9, 0)])
    assert [a is not None for a in aligned] == [False, True, False]


PASSAGES = [
    "Lists are mutable sequences, typically used to store collections of homogeneous items. "
    "The sort() method sorts a list in place.",
    "Tuples are immutable sequences, typically used to store collections of heterogeneous data. "
    "A tuple cannot be changed after it is created.",
]


def test_verifier_with_the_real_scorer(encoder):  # type: ignore[no-untyped-def]
    verifier = CitationVerifier(LocalFaithfulness(encoder, threshold=0.5))
    out = verifier.verify(
        "Lists are mutable sequences [2]. A tuple cannot be changed after it is created [9].",
        PASSAGES,
        "What is the difference between lists and tuples?",
    )
    assert out.result.answer == (
        "Lists are mutable sequences [1]. A tuple cannot be changed after it is created [2]."
    )
    assert [(c.sentence, c.source) for c in out.result.citations] == [(0, 1), (1, 2)]
    assert out.faithfulness is not None and out.faithfulness >= 0.5
    empty = verifier.verify("[1] [2]", PASSAGES)
    assert empty.empty and empty.result.answer == "" and empty.faithfulness is None


def test_prefer_ranked_moves_a_citation_to_the_best_ranked_supporting_passage():
    evidence = [ev("There are many books.", 0.9, 2), ev("Unsupported.", 0.2, 0), None, ev("Top.", 0.8, 0)]
    out = prefer_ranked(evidence, {(0, 1): 0.4, (0, 2): 0.6}, 0.5)
    assert out[0] is not None and (out[0].source_index, out[0].score) == (1, 0.6)  # [2], not [1]: 0.4 < 0.5
    assert out[1:] == evidence[1:]  # unsupported, unscored and already-first sentences are unchanged
    # The lexical floor holds for the better-ranked passage too.
    assert prefer_ranked(evidence, {(0, 2): 0.6}, 0.5, {(0, 2): MIN_OVERLAP - 0.1})[0] == evidence[0]


# Two neighbouring entries of the Python FAQ's general page (the retriever's top two for the
# question), and a real answer of the local model (bench/bench_answers_citations.py, python-faq-058).
FAQ_BOOKS = [
    "Yes, there are many, and more are being published.  See the python.org wiki at "
    "https://wiki.python.org/moin/PythonBooks for a list.\n\nYou can also search online bookstores for "
    '"Python" and filter out the Monty Python references; or perhaps search for "Python" and "language".',
    "It's probably best to cite your favorite book about Python.\n\nThe very first article about Python "
    "was written in 1991 and is now quite outdated.",
]


def test_a_sentence_supported_by_two_neighbours_cites_the_better_ranked_one(encoder):  # type: ignore[no-untyped-def]
    verifier = CitationVerifier(LocalFaithfulness(encoder, threshold=0.5))
    question = "Are there any books on Python?"
    out = verifier.verify("Yes, there are many books on Python.", FAQ_BOOKS, question)
    # The scorer's own argmax is the second passage ("your favorite book"); the first supports the
    # sentence too and is the FAQ entry that answers the question.
    assert [(c.sentence, c.source) for c in out.result.citations] == [(0, 1)]
    assert out.result.answer == "Yes, there are many books on Python [1]."
