"""Known values of the relevance scorers (real MiniLM encoder)."""

from __future__ import annotations

import numpy as np
import pytest

from eval import AnswerRelevance, ContextRelevance
from eval._relevance import cosine_to_score


class UnitAxes:
    """A tiny embedder implementing the real interface: a text's first word picks a fixed vector."""

    table = {"a": [1.0, 0.0], "b": [0.0, 1.0], "c": [0.6, 0.8]}

    def embed_documents(self, texts):
        return np.array([self.table[t.split()[0].lower().strip(".")] for t in texts], dtype=np.float32)


def test_known_values_with_fixed_vectors():
    assert cosine_to_score(-0.2) == 0.0 and cosine_to_score(0.7) == 0.7
    res = ContextRelevance(UnitAxes()).score("a question", ["b passage", "c passage"])
    assert res.score == pytest.approx(0.6)
    assert [s.supported for s in res.sentences] == [False, True]
    assert res.details["precision"] == 0.5
    assert ContextRelevance(UnitAxes()).score("a q", []).score == 0.0


def test_answer_relevance_on_real_embeddings(encoder):
    scorer = AnswerRelevance(encoder)
    q = "How do I copy a file in Python?"
    on = scorer.score("Use shutil.copy to copy a file in Python.", q)
    off = scorer.score("The Eiffel Tower is in Paris.", q)
    assert on.score > 0.5 > off.score
    assert scorer.score("", q).error


def test_context_relevance_on_real_embeddings(encoder):
    res = ContextRelevance(encoder).score(
        "How do I copy a file in Python?",
        ["Bananas are yellow fruit.", "shutil.copy(src, dst) copies the file src to the file dst."],
    )
    assert res.sentences[1].score > res.sentences[0].score
    assert res.score == pytest.approx(res.sentences[1].score)
