"""The loop acts on a user's CURRENT rating, not on the thumbs-down an outbox item once carried.

A new user's report: a thumbs-down switched to a thumbs-up ten seconds later still became a pair
(reason ``thumbs_down``) and was delivered to Argilla. The loop sink gets the feedback item as the
outbox leased it; the rating may have changed since (before the sink runs, or while the candidate
answer and the judge are made). Every case runs the real chat log, the real outbox rows, the real
:class:`labeling._sink.LoopSink` and :class:`labeling._loop.LabelingLoop`, and the real
:class:`labeling._candidates.CandidateGenerator`; only its model call is a function (no LLM is
needed: the check under test comes before or after it), and in the race case that call is where
the user's click lands. No pair may be saved or enqueued for the labeling backends then.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chatlog import ChatLog
from chatlog.outbox import OutboxItem, items
from labeling._candidates import CandidateGenerator
from labeling._loop import LabelingLoop
from labeling._sink import LoopSink
from labeling._store import PairStore

ALTERNATIVE = "Arthur's Magazine was published in Philadelphia."


def _turn(log: ChatLog, answer: str = "[1] [2]") -> str:
    """A rated-down-able turn; the default answer is empty of text (a second selection reason)."""
    return log.start_turn(
        conversation_id=log.create_conversation(),
        status="ok",
        user_message="Where was Arthur's Magazine published?",
        answer=answer,
        retrieved=[
            {"text": "Arthur's Magazine (1844-1846) was an American literary periodical in Philadelphia."}
        ],
    )


def _leased(log: ChatLog, turn_id: str, rater: str) -> OutboxItem:
    """The loop sink's feedback item for (turn, rater) as the outbox worker leases it now."""
    row = next(r for r in items(log.engine, sink="loop") if r["key"] == f"{turn_id}:{rater}")
    return OutboxItem(
        id=row["outbox_id"], sink="loop", kind=row["kind"], key=row["key"], payload=dict(row["payload"])
    )


def _loop(log: ChatLog, on_call: Callable[[], object] | None = None) -> tuple[LoopSink, list[Any]]:
    calls: list[Any] = []

    def complete(messages: Any) -> str:
        calls.append(messages)
        if on_call is not None:
            on_call()
        return ALTERNATIVE

    generator = CandidateGenerator("strict", complete, "test-model")
    return LoopSink(LabelingLoop(log, generator, None)), calls


def _pair_items(log: ChatLog) -> list[dict[str, Any]]:
    return [r for r in items(log.engine) if r["kind"] == "pair"]


def _meta(store: PairStore, turn: str) -> dict[str, Any]:
    pair = store.get(turn)
    assert pair is not None
    return dict(pair["meta"] or {})


def _routed(log: ChatLog) -> ChatLog:
    log.set_routes({"feedback": ["loop"], "pair": ["argilla"]})
    return log


def test_a_thumbs_down_changed_before_the_sink_runs_makes_no_pair(chatlog: ChatLog) -> None:
    log = _routed(chatlog)
    turn = _turn(log)
    log.add_feedback(turn, -1, rater="u")
    item = _leased(log, turn, "u")  # the worker holds the thumbs-down ...
    log.add_feedback(turn, 1, rater="u")  # ... and the user switches to a thumbs-up
    sink, calls = _loop(log)
    assert list(sink.send([item])) == [True]  # done: nothing to retry
    assert PairStore(log).get(turn) is None
    assert _pair_items(log) == []  # nothing for Argilla
    assert calls == []  # no candidate was even asked for


def test_a_thumbs_down_changed_while_the_pair_is_made_is_not_saved_nor_pushed(chatlog: ChatLog) -> None:
    log = _routed(chatlog)
    turn = _turn(log, answer="It was published in Boston.")
    log.add_feedback(turn, -1, rater="u")
    item = _leased(log, turn, "u")
    sink, calls = _loop(log, on_call=lambda: log.add_feedback(turn, 1, rater="u"))
    assert list(sink.send([item])) == [True]
    assert len(calls) == 1  # the candidate was made: the change came during it
    assert PairStore(log).get(turn) is None
    assert _pair_items(log) == []


def test_another_raters_thumbs_down_still_makes_the_pair(chatlog: ChatLog) -> None:
    """Only the rater who changed their mind is withdrawn; a thumbs-down that stands is paired."""
    log = _routed(chatlog)
    turn = _turn(log, answer="It was published in Boston.")
    log.add_feedback(turn, -1, rater="u")
    log.add_feedback(turn, -1, rater="w")
    stale = _leased(log, turn, "u")
    log.add_feedback(turn, 1, rater="u")
    sink, _ = _loop(log)
    assert list(sink.send([stale])) == [True]
    assert PairStore(log).get(turn) is None  # u's item: u no longer rates it down
    assert list(sink.send([_leased(log, turn, "w")])) == [True]
    pair = PairStore(log).get(turn)
    assert pair is not None and pair["meta"]["reasons"][0] == "thumbs_down"
    assert [r["key"] for r in _pair_items(log)] == [turn]


def test_a_pair_whose_thumbs_down_is_withdrawn_later_is_flagged(chatlog: ChatLog) -> None:
    log = _routed(chatlog)
    turn = _turn(log, answer="It was published in Boston.")
    log.add_feedback(turn, -1, rater="u")
    sink, _ = _loop(log)
    assert list(sink.send([_leased(log, turn, "u")])) == [True]
    store = PairStore(log)
    assert "rating_withdrawn" not in _meta(store, turn)
    log.add_feedback(turn, 1, rater="u")  # after the pair was made (and pushed)
    assert list(sink.send([_leased(log, turn, "u")])) == [True]
    withdrawn = _meta(store, turn).get("rating_withdrawn")
    assert withdrawn is not None and withdrawn["rater"] == "u" and withdrawn["at"]
    log.add_feedback(turn, -1, rater="u")  # and back: the flag is cleared, no second pair
    assert list(sink.send([_leased(log, turn, "u")])) == [True]
    assert "rating_withdrawn" not in _meta(store, turn)
    assert store.count_pairs() == 1


def test_the_scheduled_run_skips_a_thumbs_down_changed_after_selection(chatlog: ChatLog) -> None:
    log = _routed(chatlog)
    turn = _turn(log, answer="It was published in Boston.")
    log.add_feedback(turn, -1, rater="u")
    loop = LabelingLoop(log, CandidateGenerator("strict", lambda _m: ALTERNATIVE, "test-model"), None)
    selection = loop.select()
    assert list(selection.selected) == [turn] and selection.selected[turn] == ["thumbs_down"]
    original_select = loop.select

    def select_then_change(*args: Any, **kwargs: Any) -> Any:
        chosen = original_select(*args, **kwargs)
        log.add_feedback(turn, 1, rater="u")  # the user changes the rating during the run
        return chosen

    loop.select = select_then_change  # type: ignore[method-assign]
    report = loop.run()
    assert report.pairs_saved == 0 and report.errors == []
    assert PairStore(log).get(turn) is None and _pair_items(log) == []
