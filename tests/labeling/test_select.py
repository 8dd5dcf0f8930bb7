"""Selection: known values on small chat logs (pure functions), then the shell on a real SQLite log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from chatlog import ChatLog
from labeling._select import (
    DRIFT_CLUSTER,
    EMPTY_ANSWER,
    IMPLICIT_FEEDBACK,
    LOW_FAITHFULNESS,
    THUMBS_DOWN,
    Signals,
    dedupe_and_cap,
    is_empty_answer,
    load_signals,
    load_turns,
    model_answer,
    select,
    turn_reasons,
    with_next,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def unit(*xs: float) -> np.ndarray:
    v = np.asarray(xs, dtype=np.float32)
    return v / np.linalg.norm(v)


def turn(tid: str, conv: str = "c1", minute: int = 0, **kw: object) -> dict:
    row = {
        "turn_id": tid,
        "conversation_id": conv,
        "created_at": T0 + timedelta(minutes=minute),
        "status": "ok",
        "user_message": f"question {tid}",
        "answer": f"An answer to {tid} [1].",
        "query_embedding": None,
    }
    row.update(kw)
    return row


@pytest.mark.parametrize(
    ("answer", "empty"),
    [
        ("", True),
        (None, True),
        ("   \n", True),
        ("[1] [2] [3]", True),
        ("[1], [2].", True),
        ("[1][2]", True),
        ("See [1].", False),
        ("[1, 2]", True),
        ("42", False),  # a bare number is an answer, not a citation marker
        ("1.", False),
        ("No.", False),
    ],
)
def test_empty_or_only_citation_markers(answer: str | None, empty: bool) -> None:
    assert is_empty_answer(answer) is empty


def test_each_reason_on_its_own() -> None:
    sig = Signals(
        thumbs={"down": [1, -1], "up": [1]},
        faithfulness={"low": 0.49, "edge": 0.5, "high": 0.9},
        drift_turn_ids=frozenset({"drift"}),
        threshold=0.5,
    )
    assert turn_reasons(turn("down"), None, sig) == [THUMBS_DOWN]  # one rater's thumbs-down is enough
    assert turn_reasons(turn("up"), None, sig) == []
    assert turn_reasons(turn("low"), None, sig) == [LOW_FAITHFULNESS]
    assert turn_reasons(turn("edge"), None, sig) == []  # at the threshold is not under it
    assert turn_reasons(turn("high"), None, sig) == []
    assert turn_reasons(turn("e", answer="[1] [2] [3]"), None, sig) == [EMPTY_ANSWER]
    assert turn_reasons(turn("drift"), None, sig) == [DRIFT_CLUSTER]
    # A rejected or failed turn is never selected, whatever its signals.
    assert turn_reasons(turn("down", status="rejected"), None, sig) == []
    assert turn_reasons(turn("down", status="error"), None, sig) == []
    # no_context answers are a fixed refusal: selectable by feedback, never "empty".
    assert turn_reasons(turn("x", status="no_context", answer=""), None, sig) == []


def test_reasons_are_ordered_and_combined() -> None:
    sig = Signals(thumbs={"t": [-1]}, faithfulness={"t": 0.1}, drift_turn_ids=frozenset({"t"}))
    nxt = turn("n", minute=1, user_message="no, that's wrong")
    assert turn_reasons(turn("t", answer=""), nxt, sig) == [
        THUMBS_DOWN,
        IMPLICIT_FEEDBACK,
        LOW_FAITHFULNESS,
        EMPTY_ANSWER,
        DRIFT_CLUSTER,
    ]


def test_implicit_feedback_by_rule_and_by_rephrase() -> None:
    sig = Signals()
    first = turn("a", query_embedding=unit(1, 0, 0), user_message="How do I copy a file?")
    rejected = turn("b", minute=1, query_embedding=unit(0, 1, 0), user_message="that's not what I asked")
    assert turn_reasons(first, rejected, sig) == [IMPLICIT_FEEDBACK]
    rephrase = turn("c", minute=1, query_embedding=unit(1, 0.1, 0), user_message="copying files in python?")
    assert turn_reasons(first, rephrase, sig) == [IMPLICIT_FEEDBACK]
    moving_on = turn(
        "d", minute=1, query_embedding=unit(1, 0.1, 0), user_message="thanks, and what about dirs?"
    )
    assert turn_reasons(first, moving_on, sig) == []
    new_topic = turn("e", minute=1, query_embedding=unit(0, 0, 1), user_message="what is a lambda?")
    assert turn_reasons(first, new_topic, sig) == []


def test_next_turn_stays_in_its_conversation() -> None:
    rows = [
        turn("a1", "a", 0),
        turn("a2", "a", 1),
        turn("b1", "b", 0),
        turn("c1", None, 0),
        turn("c2", None, 1),
    ]
    pairs = [(t["turn_id"], n["turn_id"] if n else None) for t, n in with_next(rows)]
    assert pairs == [("a1", "a2"), ("a2", None), ("b1", None), ("c1", None), ("c2", None)]


def test_dedupe_keeps_the_best_ranked_of_near_duplicates_and_caps() -> None:
    v = unit(1, 0, 0)
    near = unit(1, 0.05, 0)  # cosine 0.9988
    other = unit(0, 1, 0)
    flagged = [
        ("old_dup", [LOW_FAITHFULNESS], T0, near),
        ("best", [THUMBS_DOWN, LOW_FAITHFULNESS], T0, v),
        ("other", [LOW_FAITHFULNESS], T0 + timedelta(hours=1), other),
        ("no_vec", [DRIFT_CLUSTER], T0, None),
    ]
    kept, dropped = dedupe_and_cap(flagged, max_selected=10, similarity=0.95)
    assert list(kept) == ["best", "other", "no_vec"]  # more reasons first, then newest
    assert dropped == 1
    kept, _ = dedupe_and_cap(flagged, max_selected=10, similarity=0.9999)
    assert "old_dup" in kept  # under the threshold they are different questions
    kept, _ = dedupe_and_cap(flagged, max_selected=2, similarity=0.95)
    assert list(kept) == ["best", "other"]
    kept, dropped = dedupe_and_cap(flagged, 10, 0.95, exclude_vectors=np.stack([v]))
    assert "best" not in kept and "old_dup" not in kept and dropped == 2


def test_select_positives_counts_and_already_selected() -> None:
    rows = [
        turn("down", "c1", 0, query_embedding=unit(1, 0, 0)),
        turn("up", "c2", 0, query_embedding=unit(0, 1, 0)),
        turn("mixed", "c3", 0, query_embedding=unit(0, 0, 1)),
        turn("done", "c4", 0, query_embedding=unit(1, 1, 0)),
    ]
    sig = Signals(thumbs={"down": [-1], "up": [1, 1], "mixed": [1, -1], "done": [-1]})
    sel = select(rows, sig, max_selected=10, dedupe_similarity=0.95, already_selected={"done"})
    assert sel.selected == {"down": [THUMBS_DOWN], "mixed": [THUMBS_DOWN]}
    assert sel.positives == ["up"]
    assert sel.flagged == 3 and sel.counts[THUMBS_DOWN] == 3
    # Embeddings stored as bytes (as the chat log holds them) work the same.
    as_bytes = [{**r, "query_embedding": r["query_embedding"].astype("<f4").tobytes()} for r in rows]
    assert select(as_bytes, sig, max_selected=10, dedupe_similarity=0.95).selected.keys() == {
        "down",
        "mixed",
        "done",
    }


def test_the_shell_reads_feedback_faithfulness_and_alarmed_drift(chatlog: ChatLog) -> None:
    from eval import EvalResult, EvaluationStore, LocalFaithfulness
    from monitoring.drift._store import save_run

    c1 = chatlog.create_conversation()
    ids = {}
    for i, (name, msg, vec) in enumerate(
        [
            ("thumbs", "How do I copy a file?", unit(1, 0, 0)),
            ("followup", "no, that's wrong", unit(0, 1, 0)),
            ("low", "What is a lambda?", unit(0, 0, 1)),
            ("drift", "Who won the 1998 world cup?", unit(1, 1, 0)),
            ("alarmless", "What is pickle?", unit(1, 0, 1)),
            ("fine", "What is a tuple?", unit(0, 1, 1)),
        ]
    ):
        ids[name] = chatlog.start_turn(
            conversation_id=c1,
            created_at=T0 + timedelta(minutes=i),
            status="ok",
            user_message=msg,
            answer="An answer [1].",
            query_embedding=vec,
        )
    chatlog.add_feedback(ids["thumbs"], -1, rater="r1")
    chatlog.add_feedback(ids["fine"], 1, rater="r1")
    evals = EvaluationStore(chatlog)
    evals.record(ids["low"], LocalFaithfulness.name, EvalResult(score=0.2))
    evals.record(ids["fine"], LocalFaithfulness.name, EvalResult(score=0.9))
    evals.record(ids["drift"], "faithfulness_llm", EvalResult(score=0.0))  # another evaluator: ignored
    run = {"run_id": "r-alarm", "created_at": T0, "alarm": True}
    save_run(chatlog.engine, run, [{"rank": 1, "size": 1, "excess": 0.3, "turn_ids": [ids["drift"]]}])
    quiet = {"run_id": "r-quiet", "created_at": T0, "alarm": False}
    save_run(chatlog.engine, quiet, [{"rank": 1, "size": 1, "excess": 0.5, "turn_ids": [ids["alarmless"]]}])

    signals = load_signals(chatlog, since=None, threshold=0.5)
    sel = select(load_turns(chatlog), signals, max_selected=10, dedupe_similarity=0.95)
    by_name = {name: sel.selected.get(tid) for name, tid in ids.items()}
    assert by_name == {
        "thumbs": [THUMBS_DOWN, IMPLICIT_FEEDBACK],
        "followup": None,
        "low": [LOW_FAITHFULNESS],
        "drift": [DRIFT_CLUSTER],
        "alarmless": None,
        "fine": None,
    }
    assert sel.positives == [ids["fine"]]
    one = load_signals(chatlog, since=None, threshold=0.5, turn_ids=[ids["low"]])
    assert dict(one.thumbs) == {} and dict(one.faithfulness) == {ids["low"]: 0.2}


def test_turns_of_deleted_conversations_are_never_selected(chatlog: ChatLog) -> None:
    kept, gone = chatlog.create_conversation(), chatlog.create_conversation()
    ids = {}
    for i, (name, conv) in enumerate([("kept", kept), ("gone", gone)]):
        ids[name] = chatlog.start_turn(
            conversation_id=conv,
            created_at=T0 + timedelta(minutes=i),
            status="ok",
            user_message=f"question {name}",
            answer="",
            query_embedding=unit(1, i, 0),
        )
    chatlog.delete_conversation(gone)
    assert [t["turn_id"] for t in load_turns(chatlog)] == [ids["kept"]]


def test_near_duplicates_of_earlier_runs_are_not_selected_again(chatlog: ChatLog) -> None:
    from labeling._loop import LabelingLoop

    conv = chatlog.create_conversation()
    first = chatlog.start_turn(
        conversation_id=conv,
        created_at=T0,
        status="ok",
        user_message="How do I copy a file?",
        answer="",
        query_embedding=unit(1, 0, 0),
    )
    loop = LabelingLoop(chatlog, None, None, threshold=0.5, max_per_run=10, dedupe_similarity=0.95)
    sel = loop.select()
    assert list(sel.selected) == [first]
    loop.store.record_selections(sel.selected, "run-1")
    again = chatlog.start_turn(
        conversation_id=conv,
        created_at=T0 + timedelta(minutes=1),
        status="ok",
        user_message="how do i copy a file",
        answer="",
        query_embedding=unit(1, 0.01, 0),
    )
    other = chatlog.start_turn(
        conversation_id=conv,
        created_at=T0 + timedelta(minutes=2),
        status="ok",
        user_message="What is a tuple?",
        answer="",
        query_embedding=unit(0, 1, 0),
    )
    second = loop.select()
    assert again not in second.selected
    assert list(second.selected) == [other]


def test_a_gated_turn_is_selected_by_the_models_draft_not_the_shown_answer() -> None:
    # The grounding gate replaced a marker-only draft with a quote (which the online scorer rates
    # well), and an unsupported draft with a retry: both stay flagged for the model's answer.
    sig = Signals(faithfulness={"q": 0.95, "r": 0.9}, threshold=0.5)
    quoted = turn("q", answer="Quoted from source [1]: use sorted(). [1]")
    quoted |= {
        "gate": "extractive",
        "extra": {"gate": {"original_answer": "[1] [2]", "reason": "markers_only"}},
    }
    assert turn_reasons(quoted, None, sig) == [EMPTY_ANSWER]
    retried = turn("r", answer="Use sorted() [1].")
    retried |= {
        "gate": "retried",
        "extra": {"gate": {"original_answer": "Use list.unique().", "reason": "x"}},
    }
    assert turn_reasons(retried, None, sig) == [LOW_FAITHFULNESS]
    assert model_answer(retried) == "Use list.unique()."
    passed = turn("r", answer="Use sorted() [1].") | {
        "gate": "passed",
        "extra": {"gate": {"original_answer": "x"}},
    }
    assert turn_reasons(passed, None, sig) == []
