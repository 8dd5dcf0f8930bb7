"""Arize: turns (with query and answer embeddings), feedback and evaluations, as an outbox sink.

The only module that imports the ``arize`` SDK (8.x), lazily; without it
:class:`ArizeNotInstalledError` names ``pip install 'ragloop[arize]'``.

What goes where (read in the SDK: ``arize/spans/client.py``):

* ``turn`` items -> ``client.spans.log``: one OpenInference span per turn, an Arrow IPC stream
  POSTed over HTTP to ``{api_scheme}://{api_host}:{api_port}/v1/pandas_arrow``. ``client.ml.log``
  refuses ``GENERATIVE_LLM``, so spans are the only way for LLM data.
* ``evaluation`` items -> ``client.spans.update_evaluations`` (``eval.<evaluator>.score/label``)
  and ``feedback`` items -> ``client.spans.update_annotations`` (``annotation.user_feedback.*``),
  both an Arrow Flight ``DoPut`` to ``{flight_scheme}://{flight_host}:{flight_port}``, keyed by the
  same ``context.span_id`` as the turn's span.

Every batch is first checked with the SDK's own validators (``arize.spans.validation``), the same
steps ``spans.log`` runs; a row that fails is reported failed with the validator's message and the
rest of the batch is still sent. Span ids are the ones the turn was traced with (so Arize lines up
with Phoenix/SigNoz); a turn logged without tracing gets ids derived from its turn id, so sending a
turn again always sends the same ids.

The pure mapping (``monitoring._arize_rows``: :func:`span_row`, :func:`evaluation_rows`,
:func:`annotation_rows`, :func:`span_ids`) holds no I/O; :class:`ArizeSink` is the thin shell.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from monitoring._arize_rows import (
    SPAN_ID,
    TextPolicy,
    annotation_rows,
    evaluation_rows,
    feedback_label,
    span_ids,
    span_row,
)

if TYPE_CHECKING:
    import pandas as pd

    from chatlog import ChatLog
    from ragloop.settings import Settings

log = logging.getLogger(__name__)

NAME = "arize"
"""The sink's name in the outbox (``sink`` column) and in ``RAGLOOP_*`` routes."""
KINDS = frozenset({"turn", "feedback", "evaluation"})
"""Outbox item kinds this sink takes."""
INSTALL = "pip install 'ragloop[arize]'"

MAX_ERRORS = 10_000
"""Failure reasons kept in :attr:`ArizeSink.errors` (oldest dropped first)."""


class ArizeNotInstalledError(ImportError):
    """The ``arize`` extra is missing."""


def _sdk() -> Any:
    try:
        import arize
    except ImportError as exc:
        raise ArizeNotInstalledError(f"Arize export needs the arize SDK: {INSTALL}") from exc
    return arize


class ItemLike(Protocol):
    """What the sink reads of an outbox item (``chatlog.outbox.OutboxItem``)."""

    @property
    def kind(self) -> str: ...  # noqa: D102

    @property
    def key(self) -> str: ...  # noqa: D102

    @property
    def payload(self) -> Mapping[str, Any]: ...  # noqa: D102


# --- validation with the SDK's own validators ----------------------------------------------------------
def _frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(list(rows))


def _messages(errors: Sequence[Any]) -> list[str]:
    return [e.error_message() if hasattr(e, "error_message") else str(e) for e in errors]


def validate_spans(frame: pd.DataFrame, project: str) -> list[str]:
    """Run the checks ``client.spans.log(validate=True)`` runs, in its order; the error messages."""
    from arize.constants.spans import DEFAULT_DATETIME_FMT
    from arize.spans.columns import SPAN_OPENINFERENCE_COLUMNS
    from arize.spans.conversion import convert_timestamps
    from arize.spans.validation.spans import spans_validation as v
    from arize.utils.dataframe import remove_extraneous_columns

    df = frame.reset_index(drop=True).copy()
    errors = v.validate_argument_types(spans_dataframe=df, project_name=project, dt_fmt=DEFAULT_DATETIME_FMT)
    errors = errors or v.validate_dataframe_form(spans_dataframe=df)
    if errors:
        return _messages(errors)
    df = remove_extraneous_columns(
        df=df, column_list=[c.name for c in SPAN_OPENINFERENCE_COLUMNS], regex=r"^attributes\."
    )
    try:
        df = convert_timestamps(df=df, fmt=DEFAULT_DATETIME_FMT)
    except (KeyError, TypeError, ValueError) as exc:
        return [f"timestamps: {exc}"]
    return _messages(v.validate_values(spans_dataframe=df, project_name=project))


def validate_evaluations(frame: pd.DataFrame, project: str) -> list[str]:
    """The checks of ``client.spans.update_evaluations(validate=True)``; the error messages."""
    from arize.spans.columns import EVAL_COLUMN_PATTERN, SPAN_SPAN_ID_COL
    from arize.spans.validation.evals import evals_validation as v
    from arize.utils.dataframe import remove_extraneous_columns

    df = frame.reset_index(drop=True).copy()
    errors = v.validate_argument_types(evals_dataframe=df, project_name=project)
    errors = errors or v.validate_dataframe_form(evals_dataframe=df)
    if errors:
        return _messages(errors)
    df = remove_extraneous_columns(df=df, column_list=[SPAN_SPAN_ID_COL.name], regex=EVAL_COLUMN_PATTERN)
    return _messages(v.validate_values(evals_dataframe=df, project_name=project))


def validate_annotations(frame: pd.DataFrame, project: str) -> list[str]:
    """The checks of ``client.spans.update_annotations(validate=True)``; the error messages."""
    from arize.spans.columns import ANNOTATION_COLUMN_PATTERN, SPAN_SPAN_ID_COL
    from arize.spans.validation.annotations import annotations_validation as v
    from arize.utils.dataframe import remove_extraneous_columns

    df = frame.reset_index(drop=True).copy()
    errors = v.validate_argument_types(annotations_dataframe=df, project_name=project)
    errors = errors or v.validate_dataframe_form(annotations_dataframe=df)
    if errors:
        return _messages(errors)
    df = remove_extraneous_columns(
        df=df, column_list=[SPAN_SPAN_ID_COL.name], regex=ANNOTATION_COLUMN_PATTERN
    )
    return _messages(v.validate_values(annotations_dataframe=df, project_name=project))


Validator = Callable[["pd.DataFrame", str], list[str]]


def split_valid(
    rows: Sequence[Mapping[str, Any]], validate: Validator, project: str
) -> tuple[list[int], dict[int, str]]:
    """Validate a batch; when it fails, each row alone, so one bad row does not hold back the rest.

    Returns:
        (indices of the rows to send, index -> reason for the rows the validators reject).
    """
    if not rows:
        return [], {}
    errors = validate(_frame(rows), project)
    if not errors:
        return list(range(len(rows))), {}
    good: list[int] = []
    bad: dict[int, str] = {}
    for i, row in enumerate(rows):
        row_errors = validate(_frame([row]), project)
        if row_errors:
            bad[i] = "; ".join(row_errors)
        else:
            good.append(i)
    if not bad:  # the batch as a whole fails (e.g. mixed column types): nothing is sent
        return [], dict.fromkeys(range(len(rows)), "; ".join(errors))
    return good, bad


# --- the sink ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Item:
    kind: str
    key: str
    payload: Mapping[str, Any]


# --- the sink ---------------------------------------------------------------------------------------------
Embed = Callable[[list[str]], Any]
"""Texts -> an array of shape ``(len(texts), dim)`` (the project's embedder)."""


class ArizeSink:
    """Delivers ``turn``, ``feedback`` and ``evaluation`` outbox items to Arize.

    ``send`` never raises: each item gets True (delivered, or nothing to deliver) or False (retry
    later; the reason is logged and kept in :attr:`errors` by item key). Sending an item again sends
    the same span id with the same values: Arize upserts spans, evaluations and annotations by
    span id, so a retry after a crash does not duplicate.
    """

    name = NAME
    kinds = KINDS

    def __init__(
        self,
        client: Any,
        *,
        space_id: str,
        project: str,
        chatlog: ChatLog,
        embed: Embed | None = None,
        text: TextPolicy = TextPolicy(),
        faithfulness_threshold: float | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        """Wrap an ``arize.ArizeClient``.

        Args:
            client: the SDK client (``ArizeClient(api_key=..., ...)``).
            space_id: the Arize space.
            project: the Arize tracing project the spans go to.
            chatlog: where ``turn`` items' rows are read from (by turn id).
            embed: embeds answers whose turn row has no answer embedding; None sends those spans
                with the query embedding only.
            text: content/redaction policy for texts (``TRACELOOP_TRACE_CONTENT``, ``RAGLOOP_REDACT``).
            faithfulness_threshold: labels faithfulness scores ``faithful``/``unfaithful``.
            timeout_s: HTTP timeout of one span upload.
        """
        self.client = client
        self.space_id = space_id
        self.project = project
        self.chatlog = chatlog
        self.embed = embed
        self.text = text
        self.threshold = faithfulness_threshold
        self.timeout_s = timeout_s
        self.errors: dict[str, str] = {}

    # --- Sink --------------------------------------------------------------------------------------------
    def send(self, items: Sequence[ItemLike]) -> list[bool]:
        """Deliver a batch: turns first (so their spans exist), then evaluations, then feedback."""
        results = [False] * len(items)
        try:
            items = self._with_span_ids(items)
        except Exception as exc:  # the chat log is unreachable: retry the whole batch later
            for item in items:
                self._fail(item, f"reading span ids: {type(exc).__name__}: {exc}")
            return results
        for kind, method in (
            ("turn", self._send_turns),
            ("evaluation", self._send_evaluations),
            ("feedback", self._send_feedback),
        ):
            indices = [i for i, item in enumerate(items) if item.kind == kind]
            if not indices:
                continue
            try:
                for i, ok in zip(indices, method([items[i] for i in indices]), strict=True):
                    results[i] = ok
            except Exception as exc:  # a vendor failure never escapes a sink
                log.warning("arize: %d %s item(s) not delivered: %s", len(indices), kind, exc)
                for i in indices:
                    self._remember(items[i].key, f"{type(exc).__name__}: {exc}")
        for i, item in enumerate(items):
            if item.kind not in KINDS:
                self._fail(item, f"the arize sink does not take {item.kind!r} items")
            elif results[i]:
                self.errors.pop(item.key, None)
        return results

    def shutdown(self, timeout_s: float = 5.0) -> None:
        """Nothing is buffered here (the outbox holds undelivered items); drop the client."""
        self.client = None

    def _with_span_ids(self, items: Sequence[ItemLike]) -> list[ItemLike]:
        """Fill in the turn's traced ids where a feedback/evaluation payload lacks them.

        A payload without ids would otherwise map to the ids derived from the turn id, which are
        not the span's when the turn was traced.
        """
        from sqlalchemy import select

        from chatlog import turns

        missing = {
            str(item.payload["turn_id"])
            for item in items
            if item.kind in ("feedback", "evaluation")
            and "turn_id" in item.payload
            and not (item.payload.get("trace_id") and item.payload.get("span_id"))
        }
        if not missing:
            return list(items)
        ids: dict[str, tuple[str | None, str | None]] = {}
        with self.chatlog.engine.connect() as conn:
            query = select(turns.c.turn_id, turns.c.trace_id, turns.c.span_id)
            for r in conn.execute(query.where(turns.c.turn_id.in_(sorted(missing)))):
                ids[r.turn_id] = (r.trace_id, r.span_id)
        out: list[ItemLike] = []
        for item in items:
            turn_id = str(item.payload.get("turn_id"))
            if turn_id in missing and turn_id in ids:
                trace_id, span_id = ids[turn_id]
                payload = {
                    **item.payload,
                    "trace_id": item.payload.get("trace_id") or trace_id,
                    "span_id": item.payload.get("span_id") or span_id,
                }
                out.append(_Item(item.kind, item.key, payload))
            else:
                out.append(item)
        return out

    # --- per kind ------------------------------------------------------------------------------------------
    def _remember(self, key: str, reason: str) -> None:
        self.errors.pop(key, None)
        self.errors[key] = reason
        while len(self.errors) > MAX_ERRORS:  # dead items' reasons live on in the outbox rows
            self.errors.pop(next(iter(self.errors)))

    def _fail(self, item: ItemLike, reason: str) -> bool:
        self._remember(item.key, reason)
        log.warning("arize: %s %s not delivered: %s", item.kind, item.key, reason)
        return False

    def _send_turns(self, items: Sequence[ItemLike]) -> list[bool]:
        turn_ids = [str(item.payload.get("turn_id") or item.key) for item in items]
        found = self._read_turns(turn_ids)
        results = [False] * len(items)
        ready: list[tuple[int, Mapping[str, Any]]] = []
        for i, (item, turn_id) in enumerate(zip(items, turn_ids, strict=True)):
            turn = found.get(turn_id)
            if turn is None:
                self._fail(item, f"turn {turn_id} is not in the chat log")
            elif turn["status"] == "in_progress":
                self._fail(item, f"turn {turn_id} has not finished yet")
            else:
                ready.append((i, turn))
        answers = self._answer_vectors([t for _, t in ready])
        rows = [span_row(t, answers.get(t["turn_id"]), self.text) for _, t in ready]
        good, bad = split_valid(rows, validate_spans, self.project)
        for j, reason in bad.items():
            self._fail(items[ready[j][0]], f"rejected by the Arize validators: {reason}")
        if good:
            self.client.spans.log(
                space_id=self.space_id,
                project_name=self.project,
                dataframe=_frame([rows[j] for j in good]),
                validate=True,
                timeout=self.timeout_s,
            )
            for j in good:
                results[ready[j][0]] = True
        return results

    def _read_turns(self, turn_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        from sqlalchemy import select

        from chatlog import decode_vector, turns

        out: dict[str, dict[str, Any]] = {}
        unique = list(dict.fromkeys(turn_ids))
        with self.chatlog.engine.connect() as conn:
            for start in range(0, len(unique), 500):
                query = select(turns).where(turns.c.turn_id.in_(unique[start : start + 500]))
                for row in conn.execute(query).mappings():
                    turn = dict(row)
                    turn["query_embedding"] = decode_vector(turn.get("query_embedding"))
                    turn["answer_embedding"] = decode_vector(turn.get("answer_embedding"))
                    out[turn["turn_id"]] = turn
        return out

    def _answer_vectors(self, turns_: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        need = [t for t in turns_ if t.get("answer") and t.get("answer_embedding") is None]
        if not need or self.embed is None:
            return {}
        vectors = self.embed([str(t["answer"]) for t in need])
        return {t["turn_id"]: vectors[k] for k, t in enumerate(need)}

    def _send_evaluations(self, items: Sequence[ItemLike]) -> list[bool]:
        results = [False] * len(items)
        scored: list[int] = []
        for i, item in enumerate(items):
            if item.payload.get("score") is None:
                results[i] = True  # the evaluator failed: there is no score to send
            else:
                scored.append(i)
        rows = evaluation_rows([items[i].payload for i in scored], self.threshold)
        return self._update(items, results, scored, rows, validate_evaluations, "update_evaluations")

    def _send_feedback(self, items: Sequence[ItemLike]) -> list[bool]:
        results = [False] * len(items)
        valid: list[int] = []
        for i, item in enumerate(items):
            try:
                feedback_label(int(item.payload["value"]))
            except (KeyError, TypeError, ValueError) as exc:
                self._fail(item, f"bad feedback payload: {exc}")
            else:
                valid.append(i)
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        rows = annotation_rows([items[i].payload for i in valid], now_ms, self.text)
        return self._update(items, results, valid, rows, validate_annotations, "update_annotations")

    def _update(
        self,
        items: Sequence[ItemLike],
        results: list[bool],
        indices: Sequence[int],
        rows: Sequence[Mapping[str, Any]],
        validate: Validator,
        method: str,
    ) -> list[bool]:
        """Send evaluation or annotation rows (one per span) and map the answer back to the items."""
        by_span: dict[str, list[int]] = {}
        for i in indices:
            p = items[i].payload
            by_span.setdefault(span_ids(p["turn_id"], p.get("trace_id"), p.get("span_id"))[1], []).append(i)
        good, bad = split_valid(rows, validate, self.project)
        for j, reason in bad.items():
            for i in by_span[rows[j][SPAN_ID]]:
                self._fail(items[i], f"rejected by the Arize validators: {reason}")
        if not good:
            return results
        response = getattr(self.client.spans, method)(
            space_id=self.space_id,
            project_name=self.project,
            dataframe=_frame([rows[j] for j in good]),
            validate=True,
        )
        unmatched = set((response or {}).get("unmatched_ids") or [])
        for j in good:
            span_id = rows[j][SPAN_ID]
            for i in by_span[span_id]:
                if span_id in unmatched:
                    self._fail(items[i], f"Arize has no span {span_id} yet (its turn is not delivered)")
                else:
                    results[i] = True
        return results


def make_client(settings: Settings) -> Any:
    """An ``arize.ArizeClient`` from the settings (host/port/scheme overrides only when set).

    Raises:
        ArizeNotInstalledError: the ``arize`` extra is missing.
        ValueError: ``ARIZE_API_KEY`` is not set.
    """
    arize = _sdk()
    # The SDK prints an INFO line per upload to stdout; the sink logs every failure with its reason.
    sdk_log = logging.getLogger("arize")
    sdk_log.setLevel(max(sdk_log.level, logging.WARNING))
    api_key = _secret(settings)
    if not api_key:
        raise ValueError("ARIZE_API_KEY is not set")
    overrides = {
        "api_host": settings.arize_api_host,
        "api_port": settings.arize_api_port,
        "api_scheme": settings.arize_api_scheme,
        "flight_host": settings.arize_flight_host,
        "flight_port": settings.arize_flight_port,
        "flight_scheme": settings.arize_flight_scheme,
    }
    kwargs: dict[str, Any] = {k: v for k, v in overrides.items() if v is not None}
    if settings.arize_region:
        from arize.regions import Region

        kwargs["region"] = Region(settings.arize_region)
    return arize.ArizeClient(api_key=api_key, enable_caching=False, **kwargs)


def _secret(settings: Settings) -> str:
    key = settings.arize_api_key
    return key.get_secret_value().strip() if key is not None else ""


def configured(settings: Settings) -> bool:
    """True when both ``ARIZE_API_KEY`` and ``ARIZE_SPACE_ID`` are set (non-empty)."""
    return bool(_secret(settings) and (settings.arize_space_id or "").strip())


def _default_embed(settings: Settings) -> Embed:
    def embed(texts: list[str]) -> Any:
        # The project's embedder, loaded on first need (only answers without a stored vector).
        from retrieval import get_embedder

        return get_embedder(settings).embed_documents(texts)

    return embed


def from_settings(settings: Settings, chatlog: ChatLog, embed: Embed | None = None) -> ArizeSink | None:
    """The Arize sink, or None unless ``ARIZE_API_KEY`` and ``ARIZE_SPACE_ID`` are both set.

    Raises:
        ArizeNotInstalledError: Arize is configured but the ``arize`` extra is missing.
    """
    if not configured(settings):
        return None
    return ArizeSink(
        make_client(settings),
        space_id=(settings.arize_space_id or "").strip(),
        project=settings.arize_project_name,
        chatlog=chatlog,
        embed=embed or _default_embed(settings),
        text=TextPolicy(content=settings.trace_content, redact=settings.redact),
        faithfulness_threshold=settings.faithfulness_threshold,
        timeout_s=settings.arize_timeout_s,
    )
