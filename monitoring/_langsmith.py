"""The LangSmith adapter: LangChain runs per turn (a tracer), and feedback as an outbox :class:`Sink`.

Runs: a ``LangChainTracer`` joins the turn's RunnableConfig (:meth:`LangSmithReporter.langchain_config`),
with the root run's id derived from the turn id (so feedback can name the run without a lookup)
and the turn id in the run metadata.

Feedback and evaluation scores: the chat log writes a ``feedback`` / ``evaluation`` item into its
outbox in the same transaction as the row itself, and :class:`LangSmithSink` delivers it. Each item
has a fixed LangSmith feedback id derived from its key, so a retry or a re-delivered edit updates
the one feedback on LangSmith, never adds a second.

Privacy: with content tracing off (TRACELOOP_TRACE_CONTENT=false) run inputs and outputs are hidden
and feedback comments are not sent; with redaction on (RAGLOOP_REDACT) both are redacted with the
same rules as span attributes (:func:`monitoring._attributes.redact`).
"""

from __future__ import annotations

import logging
import uuid
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from chatlog import redact, redact_tree
from chatlog.outbox import OutboxItem
from monitoring._tracing import ErrorCounter
from ragloop.settings import Settings

log = logging.getLogger(__name__)

#: The sink's name on outbox rows.
SINK_NAME = "langsmith"
#: The LangSmith feedback key of a user's thumbs (score 1 up, 0 down).
USER_SCORE_KEY = "user_score"


def run_id_for(turn_id: str) -> uuid.UUID:
    """The LangSmith root run id of a turn: the turn id itself when it is a UUID (it is, hex)."""
    try:
        return uuid.UUID(hex=turn_id)
    except ValueError:
        return uuid.uuid5(uuid.NAMESPACE_URL, f"ragloop:turn:{turn_id}")


def feedback_id_for(kind: str, key: str) -> uuid.UUID:
    """The fixed LangSmith feedback id of an outbox item (same kind and key, same id)."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"ragloop:langsmith:{kind}:{key}")


def _secret(value: Any) -> str | None:
    if value is None:
        return None
    getter = getattr(value, "get_secret_value", None)
    return str(getter()) if callable(getter) else str(value)


def privacy_hooks(
    settings: Settings,
) -> tuple[bool | Callable[[dict], dict], Callable[[str | None], str | None]]:
    """What the client does to run inputs/outputs, and what a comment becomes, under ``settings``.

    Returns:
        (``hide`` for the Client's ``hide_inputs``/``hide_outputs``: True hides everything, a
        function redacts, False sends as is; a function mapping a comment to what is sent).
    """
    if not settings.trace_content:
        return True, lambda _comment: None
    if settings.redact:
        return (lambda data: redact_tree(data)), (lambda c: redact(c) if c else c)
    return False, (lambda c: c)


def make_client(settings: Settings) -> Any:
    """A LangSmith client for ``settings``, with the privacy switches applied to runs.

    Raises:
        ImportError: the ``langsmith`` extra is not installed.
    """
    try:
        from langsmith import Client
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("LangSmith needs: pip install 'ragloop[langsmith]'") from exc
    hide, _ = privacy_hooks(settings)
    return Client(
        api_url=settings.langsmith_endpoint,
        api_key=_secret(settings.langsmith_api_key),
        hide_inputs=hide,
        hide_outputs=hide,
    )


def enabled(settings: Settings) -> bool:
    """True when LangSmith is configured (an API key, or LANGSMITH_TRACING for a self-hosted one)."""
    return bool(settings.langsmith_api_key or settings.langsmith_tracing)


class LangSmithReporter:
    """LangSmith runs for turns: the LangChain tracer that telemetry adds to each turn's config."""

    def __init__(
        self,
        settings: Settings,
        client: Any | None = None,
        errors: ErrorCounter | None = None,
        engine: Any | None = None,
    ) -> None:
        """Connect to LangSmith (``client`` for tests; ``engine`` is unused, kept for callers)."""
        try:
            from langchain_core.tracers.langchain import LangChainTracer
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ImportError("LangSmith needs: pip install 'ragloop[langsmith]'") from exc
        self.settings = settings
        self.client = client or make_client(settings)
        self.tracer = LangChainTracer(project_name=settings.langsmith_project, client=self.client)
        self.errors = errors or ErrorCounter()

    def langchain_config(self, turn: dict[str, Any]) -> dict[str, Any]:
        """Callbacks, root run id and metadata for one turn's chain run."""
        meta = {"turn_id": turn["turn_id"], "conversation_id": turn["conversation_id"]}
        return {"callbacks": [self.tracer], "run_id": run_id_for(turn["turn_id"]), "metadata": meta}

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait for queued runs to be sent."""
        try:
            self.tracer.wait_for_futures()
            self.client.flush()
        except Exception:  # noqa: BLE001 - flushing telemetry never raises
            log.debug("LangSmith flush failed", exc_info=True)

    def shutdown(self) -> None:
        """Send what is queued (feedback waits in the chat log's outbox, not here)."""
        self.flush()


class LangSmithSink:
    """Delivers ``feedback`` and ``evaluation`` outbox items as LangSmith feedback on the turn's run.

    Idempotent by item key: the LangSmith feedback id is fixed per (kind, key). The first delivery
    creates it; a later one (an edit, or a retry after a crash) updates it.
    """

    name = SINK_NAME
    kinds = frozenset({"feedback", "evaluation"})

    def __init__(
        self, settings: Settings, client: Any | None = None, errors: ErrorCounter | None = None
    ) -> None:
        """Use ``client`` (tests) or a client built from ``settings``."""
        self.client = client or make_client(settings)
        _, self._comment = privacy_hooks(settings)
        self.errors_counter = errors or ErrorCounter()
        self.errors: dict[str, str] = {}  # item key -> why its last send failed

    @classmethod
    def from_settings(cls, settings: Settings, chatlog: Any = None) -> LangSmithSink | None:
        """The sink when LangSmith is configured, else None."""
        return cls(settings) if enabled(settings) else None

    def feedback_args(self, item: OutboxItem) -> dict[str, Any]:
        """The LangSmith feedback an item becomes: run id, key, score, comment, feedback id."""
        p = item.payload
        turn_id = str(p["turn_id"])
        score: float | None
        if item.kind == "feedback":
            key, score = USER_SCORE_KEY, 1.0 if int(p["value"]) > 0 else 0.0
        else:
            key, score = str(p["evaluator"]), (None if p.get("score") is None else float(p["score"]))
        return {
            "run_id": str(p.get("run_id") or run_id_for(turn_id)),
            "key": key,
            "score": score,
            "comment": self._comment(p.get("comment")),
            "feedback_id": str(_legacy_id(p) or feedback_id_for(item.kind, item.key)),
        }

    def send(self, items: Sequence[OutboxItem]) -> list[bool]:
        """Create (or update) one LangSmith feedback per item; never raises."""
        return [self._send_one(item) for item in items]

    def _send_one(self, item: OutboxItem) -> bool:
        try:
            args = self.feedback_args(item)
            if item.version > 1:
                self._update_or_create(args)
            else:
                self._create_or_update(args)
        except Exception as exc:  # noqa: BLE001 - an outage is expected; the outbox retries
            self.errors[item.key] = f"{type(exc).__name__}: {exc}"[:2000]
            self.errors_counter.failed("langsmith", type(exc).__name__)
            return False
        self.errors.pop(item.key, None)
        return True

    def _create(self, args: dict[str, Any]) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # session_id deprecation: we name runs, not projects
            self.client.create_feedback(**args, stop_after_attempt=1)

    def _update(self, args: dict[str, Any]) -> None:
        self.client.update_feedback(args["feedback_id"], score=args["score"], comment=args["comment"])

    def _create_or_update(self, args: dict[str, Any]) -> None:
        from langsmith.utils import LangSmithConflictError

        try:
            self._create(args)
        except LangSmithConflictError:  # delivered before (a retry after a crash): update it
            self._update(args)

    def _update_or_create(self, args: dict[str, Any]) -> None:
        from langsmith.utils import LangSmithNotFoundError

        try:
            self._update(args)
        except LangSmithNotFoundError:  # the first version never arrived
            self._create(args)

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Send what the client still queues."""
        try:
            self.client.flush()
        except Exception:  # noqa: BLE001 - shutting down never raises
            log.debug("LangSmith flush failed", exc_info=True)


def _legacy_id(payload: Mapping[str, Any]) -> str | None:
    # Items moved from the pre-outbox table (revision 0002) keep the UUID they were first sent with.
    value = payload.get("feedback_id")
    return value if isinstance(value, str) and len(value) == 36 else None


def from_settings(settings: Settings, chatlog: Any = None) -> LangSmithSink | None:
    """The LangSmith sink for the composition root's registry (None when LangSmith is off)."""
    return LangSmithSink.from_settings(settings, chatlog)
