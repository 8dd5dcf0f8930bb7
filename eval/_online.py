"""The online evaluator: scores every finished turn off the hot path, fed from the chat log.

A background thread polls the chat log for ``ok`` turns that have no local faithfulness row yet,
scores them (faithfulness, answer relevance, context relevance), records each result in the
``evaluations`` table (which enqueues it for the vendor sinks in the same transaction), flags
low-faithfulness turns, and hands each result to callbacks (metrics and trace: plain callables,
so the tracing code wires itself in). A deterministic share of turns is also judged by the LLM.
All progress is in the database: nothing is lost on restart.

Failures: a deterministic failure (an unparsable judge reply, a rejected request) is recorded
with its error and is final. A transient one (judge endpoint down, timeout, rate limit, database
locked: :func:`eval._results.is_transient`) is not recorded: the pass stops, the turn stays
pending, and the next pass retries it after an exponential backoff (tenacity's wait strategy).
Scores are reproducible: the encoder embeds every text on its own (``eval._embed``), so a turn
gets the same score alone or among any other turns.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from chatlog import ChatLog
from eval._results import EvalResult, is_transient
from eval._store import EvaluationStore
from monitoring import semconv
from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: ``callback(turn, evaluator_name, result)``; exceptions are logged, never propagated.
ScoreCallback = Callable[[dict[str, Any], str, EvalResult], None]

#: Longest wait between passes after transient failures (seconds).
MAX_BACKOFF_S = 300.0

LOCAL = semconv.SCORE_FAITHFULNESS_LOCAL
JUDGE = semconv.SCORE_FAITHFULNESS_LLM
ANSWER_RELEVANCE = semconv.SCORE_ANSWER_RELEVANCE
CONTEXT_RELEVANCE = semconv.SCORE_CONTEXT_RELEVANCE


def sampled(turn_id: str, rate: float) -> bool:
    """Deterministic sampling by turn id: the same turn is in or out on every run and every worker."""
    if rate <= 0:
        return False
    h = int.from_bytes(hashlib.sha256(turn_id.encode()).digest()[:8], "big")
    return h / 2**64 < rate


def turn_inputs(turn: dict[str, Any]) -> tuple[str, list[str], str]:
    """(answer, retrieved passage texts, question) of a chat-log turn."""
    contexts = [str(r.get("text") or "") for r in (turn.get("retrieved") or [])]
    question = turn.get("standalone_question") or turn.get("user_message") or ""
    return str(turn.get("answer") or ""), contexts, str(question)


def telemetry_callback(telemetry: Any) -> ScoreCallback:
    """A callback sending scores to ``monitoring.Telemetry.record_score`` (span, histogram).

    Vendors (LangSmith, Arize ...) get scores through the outbox, enqueued with the row.
    """

    def send(turn: dict[str, Any], name: str, result: EvalResult) -> None:
        if result.score is None:
            return  # failures are in the chat log; a metric of a failure would be a fake number
        telemetry.record_score(
            turn["turn_id"],
            turn.get("trace_id"),
            name,
            result.score,
            span_id=turn.get("span_id"),
            comment=result.error,
        )

    return send


class OnlineEvaluator:
    """Background scoring of chat-log turns; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        chatlog: ChatLog,
        faithfulness: Any | None = None,
        judge: Any | None = None,
        relevance: tuple[Any, Any] | None = None,
        callbacks: Sequence[ScoreCallback] = (),
        batch_size: int = 20,
    ) -> None:
        """Build the worker (it does not start until :meth:`start`).

        Args:
            settings: threshold (RAGLOOP_FAITHFULNESS_THRESHOLD), judge share, poll interval.
            chatlog: the chat log to read turns from and write evaluations to.
            faithfulness: a local scorer; default :class:`eval.LocalFaithfulness` on the evaluation encoder.
            judge: an LLM judge; default one on the configured endpoint when the judge share is > 0.
            relevance: (AnswerRelevance, ContextRelevance); default ones on the same encoder.
            callbacks: called with every result (metrics, trace, LangSmith hooks).
            batch_size: turns fetched per poll.
        """
        self.settings = settings
        self.store = EvaluationStore(chatlog)
        self.callbacks = list(callbacks)
        self.batch_size = batch_size
        self._faith, self._judge, self._relevance = faithfulness, judge, relevance
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: Consecutive passes that ended on a transient failure (drives the backoff).
        self.transient_failures = 0
        self.last_transient_error: str | None = None

    def _scorers(self) -> tuple[Any, Any, tuple[Any, Any]]:
        # Built lazily, in the worker thread: loading torch must not delay the app's start-up.
        if self._faith is None or self._relevance is None:
            from eval._embed import get_encoder
            from eval._faithfulness import LocalFaithfulness
            from eval._relevance import AnswerRelevance, ContextRelevance

            enc = get_encoder(self.settings)
            self._faith = self._faith or LocalFaithfulness(
                enc, threshold=self.settings.faithfulness_threshold
            )
            self._relevance = self._relevance or (AnswerRelevance(enc), ContextRelevance(enc))
        if self._judge is None and self.settings.judge_sample_rate > 0:
            from eval._judge import LLMJudgeFaithfulness

            self._judge = LLMJudgeFaithfulness.from_settings(self.settings)
        return self._faith, self._judge, self._relevance

    def run_once(self) -> int:
        """Score one batch of pending turns (local scorers, then the sampled judge); returns turns scored.

        A transient failure ends the pass without recording anything for the turn at hand (it stays
        pending, see the module docstring); :attr:`transient_failures` counts such passes in a row.
        """
        try:
            done = self._pass()
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.transient_failures += 1
            self.last_transient_error = f"{type(exc).__name__}: {exc}"
            log.warning(
                "online evaluation paused (transient failure #%d, retried later): %s",
                self.transient_failures,
                self.last_transient_error,
            )
            return 0
        self.transient_failures, self.last_transient_error = 0, None
        return done

    def retry_delay_s(self) -> float:
        """Seconds to wait before the next pass: the poll interval, or a growing backoff after failures."""
        if not self.transient_failures:
            return float(self.settings.eval_poll_s)
        from tenacity import RetryCallState, wait_exponential

        wait = wait_exponential(multiplier=max(self.settings.eval_poll_s, 0.1), max=MAX_BACKOFF_S)
        state = RetryCallState(None, None, (), {})  # type: ignore[arg-type]
        state.attempt_number = self.transient_failures
        return float(wait(state))

    def _pass(self) -> int:
        faith, judge, (answer_rel, context_rel) = self._scorers()
        done = 0
        for turn in self.store.pending_turns(LOCAL, self.batch_size):
            answer, contexts, question = turn_inputs(turn)
            # Relevance first, faithfulness last: its row marks the turn done for this pass.
            self._record(turn, ANSWER_RELEVANCE, answer_rel.score(answer, question))
            self._record(turn, CONTEXT_RELEVANCE, context_rel.score(question, contexts))
            res = faith.score(answer, contexts, question)
            low = res.score is not None and res.score < self.settings.faithfulness_threshold
            judge_it = judge is not None and sampled(turn["turn_id"], self.settings.judge_sample_rate)
            done += self._record(turn, LOCAL, res, flagged=low, needs_judge=judge_it)
        if judge is not None:
            for turn in self.store.pending_turns(JUDGE, self.batch_size, requires=LOCAL):
                answer, contexts, question = turn_inputs(turn)
                res = judge.score(answer, contexts, question)
                low = res.score is not None and res.score < self.settings.faithfulness_threshold
                done += self._record(turn, JUDGE, res, flagged=low)
        return done

    def _record(
        self,
        turn: dict[str, Any],
        name: str,
        result: EvalResult,
        flagged: bool = False,
        needs_judge: bool = False,
    ) -> int:
        recorded = self.store.record(
            turn["turn_id"],
            name,
            result,
            flagged=flagged,
            needs_judge=needs_judge,
            trace_id=turn.get("trace_id"),
            span_id=turn.get("span_id"),
        )
        if not recorded:
            return 0
        for cb in self.callbacks:
            try:
                cb(turn, name, result)
            except Exception:  # noqa: BLE001 - a broken exporter must not stop scoring
                log.exception("evaluation callback %r failed for turn %s", cb, turn["turn_id"])
        return 1

    def start(self) -> OnlineEvaluator:
        """Start the background thread (daemon: it never keeps the app alive)."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="ragloop-online-eval", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the thread to finish its current turn and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        log.info("online evaluator started (poll every %.1fs)", self.settings.eval_poll_s)
        while not self._stop.is_set():
            try:
                busy = self.run_once() > 0
            except Exception:  # noqa: BLE001 - a bug in a scorer must not end the worker
                log.exception("online evaluation pass failed")
                busy = False
            if not busy:
                self._stop.wait(self.retry_delay_s())
