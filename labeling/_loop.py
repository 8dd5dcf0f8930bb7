"""The labeling loop: select flagged turns, make an alternative answer, judge the pair, save it.

Saving a pair enqueues it (same transaction) for every labeling backend through the outbox, so
``ragloop loop run``, the Dagster asset and the thumbs-down sink all end the same way.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from chatlog import ChatLog, new_id, now
from labeling._candidates import (
    CANDIDATE_PROMPT_VERSION,
    Candidate,
    CandidateGenerator,
    passages_of,
    question_of,
)
from labeling._judge import PairwiseJudge, Verdict
from labeling._select import (
    THUMBS_DOWN,
    Selection,
    load_signals,
    load_turns,
    load_vectors,
    model_answer,
    select,
    turn_reasons,
)
from labeling._store import PairStore

log = logging.getLogger(__name__)


def a_is_original(turn_id: str) -> bool:
    """Which side shows the original answer: a fixed coin flip per turn, so annotators see no pattern."""
    return hashlib.sha256(turn_id.encode()).digest()[0] % 2 == 0


def build_pair(
    turn: Mapping[str, Any],
    candidate: Candidate,
    reasons: Sequence[str],
    judge: Callable[..., Verdict] | None,
) -> dict[str, Any]:
    """The ``pairs`` row for a turn and its alternative, judged as displayed (A, B).

    Args:
        turn: the chat-log turn (its answer is the original).
        candidate: the alternative answer and its context.
        reasons: why the turn was selected.
        judge: ``judge(question, contexts, a, b) -> Verdict``; None stores no verdict.
    """
    original = model_answer(turn).strip()  # the model's draft, when the grounding gate replaced it
    first = a_is_original(str(turn["turn_id"]))
    a, b = (original, candidate.answer) if first else (candidate.answer, original)
    question = question_of(turn)
    # The pair shows the context the candidate used: the turn's own passages come first in it.
    context = candidate.context or passages_of(turn)
    verdict = judge(question, context, a, b) if judge is not None else None
    return {
        "pair_id": str(turn["turn_id"]),
        "question": question,
        "context": context,
        "response_a": a or "(empty answer)",
        "response_b": b or "(empty answer)",
        "a_is_original": first,
        "strategy": candidate.strategy,
        "judge": verdict.to_dict() if verdict is not None else None,
        "meta": {
            "reasons": list(reasons),
            "candidate_model": candidate.model,
            "candidate_prompt": CANDIDATE_PROMPT_VERSION,
            "original_model": turn.get("model"),
            "original_prompt": turn.get("prompt_version"),
        },
    }


@dataclass
class LoopReport:
    """What one loop run did."""

    run_id: str
    selection: Selection | None = None
    pairs_saved: int = 0
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        """One line for the command line."""
        sel = self.selection
        head = f"run {self.run_id}: "
        if sel is not None:
            reasons = ", ".join(f"{k} {v}" for k, v in sel.counts.items() if v)
            head += f"{sel.flagged} flagged ({reasons or 'none'}), {sel.duplicates} near-duplicates dropped, "
            head += f"{len(sel.selected)} selected, {len(sel.positives)} positives; "
        return head + f"{self.pairs_saved} pairs saved, {len(self.errors)} errors in {self.seconds:.1f} s"


class LabelingLoop:
    """Select -> candidate -> judge -> save, over one chat log."""

    def __init__(
        self,
        chatlog: ChatLog,
        generator: CandidateGenerator | None,
        judge: PairwiseJudge | None,
        *,
        threshold: float = 0.5,
        max_per_run: int = 50,
        dedupe_similarity: float = 0.95,
        lookback: timedelta | None = None,
    ) -> None:
        """Wire a loop; see :meth:`from_settings` for the configured one."""
        self.chatlog = chatlog
        self.store = PairStore(chatlog)
        self.generator = generator
        self.judge = judge
        self.threshold = threshold
        self.max_per_run = max_per_run
        self.dedupe_similarity = dedupe_similarity
        self.lookback = lookback

    @classmethod
    def from_settings(cls, settings: Any, chatlog: ChatLog, *, llm_judge: bool | None = None) -> LabelingLoop:
        """The loop ``settings`` configure (candidate strategy, judge model, caps, thresholds)."""
        from labeling._candidates import from_settings as generator_from_settings

        return cls(
            chatlog,
            generator_from_settings(settings),
            judge_from_settings(settings, llm_judge=llm_judge),
            threshold=settings.faithfulness_threshold,
            max_per_run=settings.loop_max_per_run,
            dedupe_similarity=settings.loop_dedupe_similarity,
            lookback=timedelta(days=settings.loop_lookback_days) if settings.loop_lookback_days else None,
        )

    @classmethod
    def selection_only(cls, settings: Any, chatlog: ChatLog) -> LabelingLoop:
        """A loop that can select but not make pairs (no model is loaded)."""
        return cls(
            chatlog,
            None,
            None,
            threshold=settings.faithfulness_threshold,
            max_per_run=settings.loop_max_per_run,
            dedupe_similarity=settings.loop_dedupe_similarity,
            lookback=timedelta(days=settings.loop_lookback_days) if settings.loop_lookback_days else None,
        )

    def select(self, since: datetime | None = None, limit: int | None = None) -> Selection:
        """Run selection over turns since ``since`` (default: the lookback window)."""
        since = since or (now() - self.lookback if self.lookback else None)
        signals = load_signals(self.chatlog, since=since, threshold=self.threshold)
        before = self.store.selected_ids()
        return select(
            load_turns(self.chatlog, since),
            signals,
            max_selected=limit or self.max_per_run,
            dedupe_similarity=self.dedupe_similarity,
            already_selected=before,
            # Near-duplicates of turns selected by earlier runs are dropped too, not only within a run.
            exclude_vectors=load_vectors(self.chatlog, before),
        )

    def pair_for(
        self, turn_id: str, reasons: Sequence[str], still_wanted: Callable[[Any], bool] | None = None
    ) -> dict[str, Any] | None:
        """Make, judge and save the pair of one turn; returns the saved row.

        Args:
            turn_id: the turn.
            reasons: why it was selected.
            still_wanted: checked in the saving transaction, after the candidate and the judge
                (:meth:`PairStore.save_pair`); False: nothing is saved or pushed and None returned.

        Raises:
            LookupError: the turn is not in the chat log.
            Exception: the candidate model failed (callers count it; the turn stays selectable).
        """
        if self.generator is None:
            raise RuntimeError("this loop was built for selection only: it has no candidate generator")
        turn = self.chatlog.get_turn(turn_id)
        if turn is None:
            raise LookupError(f"no turn {turn_id}")
        candidate = self.generator.generate(turn)
        judge = self.judge.judge if self.judge is not None else None
        pair = build_pair(turn, candidate, reasons, judge)
        if not self.store.save_pair(pair, still_wanted):
            return None
        return pair

    def run(
        self, since: datetime | None = None, limit: int | None = None, progress: bool = False
    ) -> LoopReport:
        """One scheduled run: select, record the selections, then pair each selected turn."""
        started = time.perf_counter()
        report = LoopReport(run_id=new_id())
        report.selection = self.select(since, limit)
        chosen = report.selection.selected
        self.store.record_selections(chosen, report.run_id)
        items = list(chosen.items())
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(items), desc="pairs", unit="pair")
        for turn_id, reasons in items:
            try:
                # A turn selected for a thumbs-down only is not paired if that rating was changed
                # since the selection (checked again in the saving transaction).
                wanted = None
                if list(reasons) == [THUMBS_DOWN]:
                    wanted = functools.partial(self.still_negative, turn_id, None)
                if self.pair_for(turn_id, reasons, wanted) is None:
                    log.info("labeling loop: turn %s is no longer rated down; no pair", turn_id)
                else:
                    report.pairs_saved += 1
            except Exception as exc:  # noqa: BLE001 - one bad turn never stops the run
                log.warning("labeling loop: turn %s failed: %s", turn_id, exc)
                report.errors.append(f"{turn_id}: {type(exc).__name__}: {exc}")
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        report.seconds = time.perf_counter() - started
        return report

    def run_for_turn(self, turn_id: str, rater: str | None = None) -> bool:
        """The event-driven path (a thumbs-down): pair this one turn unless it already has a pair.

        The rating is read again from the chat log (the ``feedback`` row of ``rater``, or any
        rater's when None): a thumbs-down changed to a thumbs-up before this runs makes no pair,
        and one changed while the candidate and the judge run is caught in the saving transaction,
        so nothing is saved or pushed to the labeling backends. When the turn already has a pair
        that was flagged as withdrawn (:meth:`rating_changed`), a renewed thumbs-down clears it.

        Args:
            turn_id: the rated turn.
            rater: who gave the thumbs-down (the outbox item's ``rater``).

        Returns:
            True when the turn has a pair now (made here or before), False when it is not
            selectable or the thumbs-down is no longer there.
        """
        existing = self.store.get(turn_id)
        if existing is not None:
            if self.still_negative(turn_id, rater):
                self.store.mark_rating_withdrawn(turn_id, None)
            return True
        turn = self.chatlog.get_turn(turn_id)
        if turn is None:
            raise LookupError(f"no turn {turn_id}")
        if not self.still_negative(turn_id, rater):
            log.info(
                "labeling loop: turn %s is no longer rated down by %s; no pair", turn_id, rater or "anyone"
            )
            return False
        signals = load_signals(self.chatlog, since=None, threshold=self.threshold, turn_ids=[turn_id])
        reasons = turn_reasons(turn, None, signals)
        if THUMBS_DOWN not in reasons:
            reasons = [THUMBS_DOWN, *reasons]
        self.store.record_selections({turn_id: reasons}, f"event:{new_id()[:12]}")
        pair = self.pair_for(turn_id, reasons, lambda conn: self.still_negative(turn_id, rater, conn))
        if pair is None:
            log.info("labeling loop: turn %s was re-rated while its pair was made; not saved", turn_id)
            return False
        return True

    def still_negative(self, turn_id: str, rater: str | None, conn: Any = None) -> bool:
        """True when the chat log holds a thumbs-down on the turn from ``rater`` (None: from anyone)."""
        from sqlalchemy import select as sql_select

        from chatlog import feedback

        query = sql_select(feedback.c.value).where(feedback.c.turn_id == turn_id, feedback.c.value < 0)
        if rater is not None:
            query = query.where(feedback.c.rater == rater)
        if conn is not None:
            return conn.execute(query.limit(1)).first() is not None
        with self.chatlog.engine.connect() as own:
            return own.execute(query.limit(1)).first() is not None

    def rating_changed(self, turn_id: str, rater: str | None) -> bool:
        """A thumbs-up arrived: flag the turn's thumbs-down pair when no thumbs-down is left on it.

        A pair already made (and maybe pushed and labeled) for a thumbs-down stays, but its
        ``meta["rating_withdrawn"]`` records who changed the rating and when, so a reviewer or an
        export can tell; a later thumbs-down clears the flag (:meth:`run_for_turn`).

        Returns:
            True when the pair was flagged now.
        """
        pair = self.store.get(turn_id)
        if pair is None or THUMBS_DOWN not in ((pair.get("meta") or {}).get("reasons") or []):
            return False
        if self.still_negative(turn_id, None):
            return False
        flagged = self.store.mark_rating_withdrawn(turn_id, {"rater": rater, "at": now().isoformat()})
        if flagged:
            log.warning(
                "labeling loop: the thumbs-down of turn %s was withdrawn after its pair was made; "
                "the pair is flagged (meta.rating_withdrawn)",
                turn_id,
            )
        return flagged


def judge_from_settings(settings: Any, *, llm_judge: bool | None = None) -> PairwiseJudge:
    """The pairwise judge: the local comparison, and the configured LLM where that is unsure.

    The LLM (unless disabled) is asked only when the local P(A better) is within
    ``RAGLOOP_LOOP_JUDGE_LLM_BAND`` of 0.5.
    """
    from eval import LOCAL_PAIRWISE_VERSION, LocalFaithfulness, LocalPairwise, get_encoder
    from labeling._judge import openai_complete
    from ragloop.settings import secret_value

    pairwise = LocalPairwise(LocalFaithfulness(get_encoder(settings)))

    def local_compare(
        a: str, b: str, contexts: Sequence[str], question: str | None
    ) -> tuple[float, float, float]:
        pref = pairwise.compare(a, b, contexts, question)
        return pref.p_a, pref.score_a, pref.score_b

    use_llm = settings.loop_judge_llm if llm_judge is None else llm_judge
    model = settings.loop_judge_model or settings.llm_model
    complete = None
    if use_llm:
        complete = openai_complete(
            settings.loop_judge_base_url or settings.llm_base_url,
            secret_value(settings.loop_judge_api_key) or secret_value(settings.openai_api_key) or "sk-local",
            model,
            timeout_s=settings.llm_timeout_s,
        )
    return PairwiseJudge(
        complete,
        model,
        local_compare,
        local_weight=settings.loop_judge_local_weight,
        llm_band=settings.loop_judge_llm_band,
        local_name=LOCAL_PAIRWISE_VERSION,
    )
