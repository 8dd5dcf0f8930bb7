"""Property-based tests of selection (hypothesis): caps, reasons, duplicates, positives, injection flags."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from labeling._select import INJECTION, REASONS, SELECTABLE_STATUSES, Signals, is_empty_answer, select

FAST = settings(max_examples=120, deadline=None)
T0 = datetime(2026, 11, 1, tzinfo=UTC)
_VECTORS = [None, np.array([1, 0, 0], "f4"), np.array([0.99, 0.1, 0], "f4"), np.array([0, 1, 0], "f4")]


@st.composite
def logs(draw: Any) -> tuple[list[dict[str, Any]], Signals]:
    n = draw(st.integers(0, 12))
    turns = []
    for i in range(n):
        turns.append(
            {
                "turn_id": f"t{i}",
                "conversation_id": draw(st.sampled_from(["c1", "c2", "c3"])),
                "created_at": T0 + timedelta(minutes=i),
                "status": draw(st.sampled_from(["ok", "no_context", "error", "cancelled"])),
                "user_message": draw(st.sampled_from(["How do I copy?", "That's wrong", "thanks", ""])),
                "answer": draw(st.sampled_from(["", "[1] [2]", "Use shutil.copy [1].", "42"])),
                "query_embedding": _VECTORS[draw(st.integers(0, len(_VECTORS) - 1))],
                "flags": draw(st.sampled_from([None, {}, {INJECTION: True}, {INJECTION: False}, {"x": 1}])),
            }
        )
    turns.sort(key=lambda t: (t["conversation_id"], t["created_at"]))
    ids = [t["turn_id"] for t in turns]
    thumbs = {
        tid: draw(st.lists(st.sampled_from([1, -1]), min_size=1, max_size=2))
        for tid in ids
        if draw(st.booleans())
    }
    faith = {tid: draw(st.floats(0, 1)) for tid in ids if draw(st.booleans())}
    drift = frozenset(tid for tid in ids if draw(st.booleans()))
    return turns, Signals(thumbs=thumbs, faithfulness=faith, drift_turn_ids=drift)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@FAST
@given(
    log=logs(),
    cap=st.integers(0, 6),
    sim=st.floats(0.5, 1.01),
    done=st.sets(st.sampled_from(["t0", "t1", "t2"])),
)
def test_selection_respects_the_cap_reasons_duplicates_and_earlier_runs(
    log: tuple[list[dict[str, Any]], Signals], cap: int, sim: float, done: set[str]
) -> None:
    turns, signals = log
    sel = select(turns, signals, max_selected=cap, dedupe_similarity=sim, already_selected=done)
    by_id = {t["turn_id"]: t for t in turns}
    assert len(sel.selected) <= cap and not set(sel.selected) & done
    for tid, reasons in sel.selected.items():
        assert reasons and reasons == [r for r in REASONS if r in reasons]  # known reasons, ranked order
        assert by_id[tid]["status"] in SELECTABLE_STATUSES
    assert sum(sel.counts.values()) >= sel.flagged >= len(sel.selected) + sel.duplicates - len(done)
    assert not set(sel.positives) & set(sel.selected)
    assert all(min(signals.thumbs[t]) > 0 for t in sel.positives)
    kept = [by_id[t]["query_embedding"] for t in sel.selected if by_id[t]["query_embedding"] is not None]
    assert all(_cos(a, b) < sim for i, a in enumerate(kept) for b in kept[i + 1 :])


@FAST
@given(log=logs())
def test_an_injection_flag_makes_a_candidate_and_nothing_else_does(
    log: tuple[list[dict[str, Any]], Signals],
) -> None:
    turns, _ = log
    sel = select(turns, Signals(), max_selected=100, dedupe_similarity=1.01)
    expected = {
        t["turn_id"]
        for t in turns
        if t["status"] in SELECTABLE_STATUSES and (t["flags"] or {}).get(INJECTION) is True
    }
    assert {tid for tid, r in sel.selected.items() if INJECTION in r} == expected
    assert sel.counts[INJECTION] == len(expected)


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_an_answer_with_a_letter_is_never_empty(text: str) -> None:
    if any(ch.isalpha() for ch in text):
        assert not is_empty_answer(text)
    if not text.strip():
        assert is_empty_answer(text)
