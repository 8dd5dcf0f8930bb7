"""Property-based tests of the DPO/KTO/SFT export (hypothesis): every row TRL can train on, no duplicates.

TRL's DPO trainer needs ``prompt``, ``chosen`` and ``rejected`` as non-empty strings (standard form)
or non-empty messages (conversational form), and a pair whose answers are the same teaches nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from labeling._export import (
    dpo_rows,
    kto_rows,
    sft_rows,
    to_conversational,
    to_standard,
    unique_rows,
    write_rows,
)

FAST = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
_ANSWER = st.sampled_from(["", "   ", "\n", "Use shutil.copy [1].", "Use os.copy().", "[1] [2]", "42"])
_PAIR = st.fixed_dictionaries(
    {
        "pair_id": st.sampled_from(["p1", "p2", "p3"]),
        "question": st.sampled_from(["How do I copy a file?", "Wie sortiere ich?"]),
        "context": st.lists(st.sampled_from(["shutil.copy copies.", "sorted() sorts.", ""]), max_size=3),
        "response_a": _ANSWER,
        "response_b": _ANSWER,
        "strategy": st.sampled_from(["strict", "retrieval"]),
        "judge": st.fixed_dictionaries({"preferred": st.sampled_from(["A", "B", "tie", None])}),
    }
)
_LABELS = st.lists(
    st.fixed_dictionaries(
        {
            "annotator": st.sampled_from(["u1", "u2", "u3"]),
            "choice": st.sampled_from(["A", "B", "tie"]),
            "correction": st.sampled_from([None, "", "  ", "Use shutil.copy2 [1]."]),
        }
    ),
    max_size=3,
)


def _trainable(text: Any) -> bool:
    return isinstance(text, str) and bool(text.strip())


EMPTY_REJECTED: dict[str, Any] = {
    "pair_id": "p1",
    "question": "How do I copy a file?",
    "context": ["shutil.copy copies."],
    "response_a": "",
    "response_b": "Use shutil.copy [1].",
    "strategy": "strict",
    "judge": {"preferred": "B"},
}


@FAST
@given(pair=_PAIR, labels=_LABELS, include_ai=st.booleans())
@example(
    pair=EMPTY_REJECTED, labels=[{"annotator": "u1", "choice": "B", "correction": None}], include_ai=False
)
@example(  # the same answer on both sides: no preference to learn
    pair={**EMPTY_REJECTED, "response_a": "Use os.copy().", "response_b": "Use os.copy(). "},
    labels=[{"annotator": "u1", "choice": "A", "correction": None}],
    include_ai=False,
)
def test_every_dpo_row_is_trainable_in_both_forms(pair: dict, labels: list[dict], include_ai: bool) -> None:
    for row in dpo_rows(pair, labels, include_ai):
        std, conv = to_standard(row), to_conversational(row)
        assert all(_trainable(std[k]) for k in ("prompt", "chosen", "rejected"))
        assert std["chosen"].strip() != std["rejected"].strip()
        assert conv["prompt"][-1]["role"] == "user" and _trainable(conv["prompt"][-1]["content"])
        assert conv["chosen"] == [{"role": "assistant", "content": std["chosen"]}]
        assert {std["chosen"], std["rejected"]} == {pair["response_a"], pair["response_b"]}


@FAST
@given(pair=_PAIR, labels=_LABELS, include_ai=st.booleans())
def test_kto_and_sft_rows_have_a_completion_to_learn(
    pair: dict, labels: list[dict], include_ai: bool
) -> None:
    kto = kto_rows(pair, labels, include_ai)
    assert all(_trainable(r["completion"]) and isinstance(r["label"], bool) for r in kto)
    assert sorted(r["label"] for r in kto) == [False, True] * (len(kto) // 2)
    sft = sft_rows(pair, labels)
    assert all(_trainable(r["completion"]) for r in sft)
    assert len({r["completion"] for r in sft}) == len(sft)


@FAST
@given(pairs=st.lists(st.tuples(_PAIR, _LABELS), max_size=8))
def test_unique_rows_drop_repeated_pairs_and_keep_the_first(pairs: list[tuple[dict, list[dict]]]) -> None:
    rows = [row for pair, labels in pairs for row in dpo_rows(pair, labels, True)]
    kept = unique_rows(rows)
    keys = [(to_standard(r)["prompt"], r["chosen"], r["rejected"]) for r in kept]
    assert len(keys) == len(set(keys))
    assert {(to_standard(r)["prompt"], r["chosen"], r["rejected"]) for r in rows} == set(keys)
    assert kept == [r for r in rows if any(r is k for k in kept)]  # order kept, first occurrence wins


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(pairs=st.lists(st.tuples(_PAIR, _LABELS), max_size=6))
def test_written_rows_read_back_the_same(pairs: list[tuple[dict, list[dict]]], tmp_path: Path) -> None:
    rows = unique_rows([row for pair, labels in pairs for row in dpo_rows(pair, labels, True)])
    out = tmp_path / "export"
    assert write_rows(out, "train", rows) == len(rows)
    std = [json.loads(line) for line in (out / "standard" / "train.jsonl").read_text("utf-8").splitlines()]
    conv = [
        json.loads(line) for line in (out / "conversational" / "train.jsonl").read_text("utf-8").splitlines()
    ]
    assert std == [to_standard(r) for r in rows]
    assert conv == [to_conversational(r) for r in rows]
