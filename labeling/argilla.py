"""Argilla (v2) as a labeling backend and outbox sink: pairwise preference records, pulled back as labels.

The dataset has four fields (question, retrieved context, response A, response B) and three
questions: the preferred response as a ``LabelQuestion`` (A / B / tie; not a ``RankingQuestion``,
whose ranks the 2.8 SDK loses when reading answers back, argilla issue #5712), the failure type
(a ``LabelQuestion`` over :data:`labeling._store.FAILURE_TYPES`) and an optional corrected answer.
The judge's verdict is pre-filled as a suggestion with its score and agent. Record ids are pair
ids (= turn ids), so pushing again updates the record in place.

Pull goes through the REST search the UI uses (``POST /api/v1/datasets/{id}/records/search``): the
SDK's ``Response`` objects carry no timestamps, and a label row needs the time it was submitted.

The SDK (extra ``argilla``) is imported only here, lazily.
"""

from __future__ import annotations

import logging
import re
import unicodedata
import warnings
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from labeling._backend import (
    BackendSink,
    PulledLabel,
    check_label,
    context_text,
    judge_suggestion,
    outgoing_pair,
    shown,
)
from labeling._store import CHOICES, FAILURE_TYPES

if TYPE_CHECKING:
    from ragloop.settings import Settings

log = logging.getLogger(__name__)

NAME = "argilla"
#: The server rejects bulks above 500 records.
MAX_BULK = 500
#: Records per page when pulling (the server allows up to 1,000).
PAGE = 1000
QUESTION_PREFERRED = "preferred"
QUESTION_FAILURE = "failure_type"
QUESTION_CORRECTION = "correction"
FAILURE_TITLES = {
    "hallucination": "Hallucination (not supported by the context)",
    "retrieval_miss": "Retrieval miss (the context lacks the answer)",
    "off_topic": "Off topic",
    "refusal": "Refusal",
    "wrong_language": "Wrong language",
    "other": "Other",
    "none": "None (neither answer fails)",
}
PREFERRED_TITLES = {"A": "Response A", "B": "Response B", "tie": "Tie (equally good or bad)"}
#: The server's rule for a suggestion's agent (argilla_server ``AGENT_REGEX``, 1-200 characters).
AGENT_PATTERN = re.compile(r"^[a-zA-Z0-9-_:\.\/\s]*[a-zA-Z0-9][a-zA-Z0-9-_:\.\/\s]*$")
AGENT_MAX_LENGTH = 200
#: The agent shown when nothing of the judge's identity survives (an empty or all-symbol agent).
UNKNOWN_AGENT = "unknown-judge"
_AGENT_UNSAFE = re.compile(r"[^a-zA-Z0-9_:./ -]+")


def argilla_agent(agent: str | None) -> str:
    """The judge's identity as Argilla accepts it (matches :data:`AGENT_PATTERN`, 1-200 characters).

    Accented letters lose their accents (``é`` -> ``e``); whitespace becomes one space; every other
    run of characters outside letters, digits and ``_ : . / -`` becomes ``_`` (so the default
    judge's ``model/prompt+local/w0.8`` shows as ``model/prompt_local/w0.8``). An agent with no
    letter or digit left is :data:`UNKNOWN_AGENT`. Only what Argilla shows changes: the stored
    verdict keeps its agent.
    """
    text = unicodedata.normalize("NFKD", agent or "").encode("ascii", "ignore").decode("ascii")
    text = " ".join(text.split())
    text = _AGENT_UNSAFE.sub("_", text).strip()[:AGENT_MAX_LENGTH].strip()
    if not any(ch.isascii() and ch.isalnum() for ch in text):
        return UNKNOWN_AGENT
    return text


def _sdk() -> Any:
    try:
        import argilla as rg
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "the Argilla backend needs the argilla extra: .venv/bin/pip install -c constraints.txt "
            "'argilla==2.8.0' requests"
        ) from exc
    return rg


def dataset_settings() -> Any:
    """The ``rg.Settings`` of the preference dataset (fields, questions, metadata)."""
    rg = _sdk()
    return rg.Settings(
        guidelines=(
            "Compare two answers to the user's question, given the retrieved context. Pick the better "
            "one (or tie), say how the worse one fails, and optionally write a corrected answer. "
            "The pre-filled choice is an AI judge's suggestion, not the truth."
        ),
        fields=[
            rg.TextField("question", title="Question"),
            rg.TextField("context", title="Retrieved context"),
            rg.TextField("response_a", title="Response A"),
            rg.TextField("response_b", title="Response B"),
        ],
        questions=[
            rg.LabelQuestion(
                QUESTION_PREFERRED, labels=dict(PREFERRED_TITLES), title="Which response is better?"
            ),
            rg.LabelQuestion(
                QUESTION_FAILURE, labels=dict(FAILURE_TITLES), title="How does the worse response fail?"
            ),
            rg.TextQuestion(QUESTION_CORRECTION, title="Corrected answer (optional)", required=False),
        ],
        metadata=[
            rg.TermsMetadataProperty("strategy", title="How response B was made"),
            rg.FloatMetadataProperty("judge_score", title="Judge: P(A better)"),
        ],
        allow_extra_metadata=True,
    )


def record_payload(pair: Mapping[str, Any]) -> dict[str, Any]:
    """The pure mapping of a pair onto an Argilla record: id, fields, metadata, suggestion.

    Returns:
        ``{"id", "fields", "metadata", "suggestion"}``; ``suggestion`` is ``(value, score, agent)``
        or None when the pair has no judge verdict.

    Raises:
        ValueError: the judge's verdict is malformed.
    """
    judge = pair.get("judge") or None
    suggestion = judge_suggestion(judge)
    metadata: dict[str, Any] = {"strategy": str(pair.get("strategy") or "unknown")}
    if judge and judge.get("score") is not None:
        metadata["judge_score"] = float(judge["score"])
    if judge:
        metadata["judge_reasoning"] = str(judge.get("reasoning") or "")[:4000]
        # None (a judge with no order, e.g. local-only) claims nothing: the key is left out
        if judge.get("order_consistent") is not None:
            metadata["judge_order_consistent"] = bool(judge["order_consistent"])
    return {
        "id": str(pair["pair_id"]),
        "fields": {
            "question": shown(pair.get("question")),
            "context": context_text(pair.get("context")),
            "response_a": shown(pair.get("response_a")),
            "response_b": shown(pair.get("response_b")),
        },
        "metadata": metadata,
        "suggestion": suggestion,
    }


def label_from_values(values: Mapping[str, Any]) -> tuple[str, str, str | None]:
    """(choice, failure type, correction) from a response's ``values`` as the REST API returns them.

    ``values`` maps question names to ``{"value": ...}``.

    Raises:
        ValueError: no preferred response, or a value outside the schema.
    """

    def value(name: str) -> Any:
        entry = values.get(name)
        return entry.get("value") if isinstance(entry, Mapping) else None

    choice, failure = check_label(value(QUESTION_PREFERRED), value(QUESTION_FAILURE))
    correction = value(QUESTION_CORRECTION)
    return choice, failure, (str(correction).strip() or None) if correction else None


def _is_invalid(exc: BaseException) -> bool:
    """Whether the server rejected the records themselves (HTTP 422), not the connection."""
    seen: BaseException | None = exc
    while seen is not None:
        status = getattr(getattr(seen, "response", None), "status_code", None) or getattr(
            seen, "status_code", None
        )
        if status == 422 or type(seen).__name__ == "UnprocessableEntityError":
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _reason(exc: BaseException) -> str:
    """One line naming why a push failed."""
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:500]


def _parse_time(text: str) -> datetime:
    stamp = datetime.fromisoformat(text)
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)  # the server writes naive UTC


class ArgillaBackend:
    """One preference dataset on an Argilla 2.x server, reached with an owner's or admin's API key."""

    name = NAME

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        workspace: str = "ragloop",
        dataset: str = "ragloop-preferences",
        timeout_s: int = 60,
        redaction: bool = True,
    ) -> None:
        """Remember the server; nothing is contacted until the first push or pull.

        ``redaction`` masks PII and secrets in every pushed text (``RAGLOOP_REDACT``).
        """
        self.redaction = redaction
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.workspace_name = workspace
        self.dataset_name = dataset
        self.timeout_s = timeout_s
        self._client: Any = None
        self._dataset: Any = None
        #: pair id -> why it failed, for the last :meth:`push` or :meth:`pull` (skipped answers).
        self.failures: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ArgillaBackend | None:
        """The backend configured by ``ARGILLA_*``, or None when ``ARGILLA_API_URL`` is unset."""
        if not settings.argilla_api_url:
            return None
        key = settings.argilla_api_key.get_secret_value() if settings.argilla_api_key else ""
        if not key:
            raise ValueError("ARGILLA_API_URL is set but ARGILLA_API_KEY is not: set an owner's API key")
        return cls(
            settings.argilla_api_url,
            key,
            workspace=settings.argilla_workspace,
            dataset=settings.argilla_dataset,
            redaction=settings.redact,
        )

    # --- connection -----------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The ``rg.Argilla`` client (created on first use)."""
        if self._client is None:
            rg = _sdk()
            self._client = rg.Argilla(api_url=self.api_url, api_key=self.api_key, timeout=self.timeout_s)
        return self._client

    def dataset(self) -> Any:
        """The preference dataset, created (with its workspace) when missing."""
        if self._dataset is not None:
            return self._dataset
        rg = _sdk()
        client = self.client
        with warnings.catch_warnings():  # the SDK warns when a name is not found: we create it then
            warnings.simplefilter("ignore", UserWarning)
            workspace = client.workspaces(self.workspace_name)
            if workspace is None:
                workspace = rg.Workspace(name=self.workspace_name, client=client).create()
            dataset = client.datasets(self.dataset_name, workspace=workspace)
        if dataset is None:
            dataset = rg.Dataset(
                name=self.dataset_name, workspace=workspace, settings=dataset_settings(), client=client
            ).create()
            log.info("created Argilla dataset %s/%s", self.workspace_name, self.dataset_name)
        self._dataset = dataset
        return dataset

    @property
    def http(self) -> Any:
        """The SDK's authenticated ``httpx.Client``."""
        return self.client.api.http_client

    def dataset_url(self) -> str:
        """The dataset's page in the Argilla UI."""
        return f"{self.api_url}/dataset/{self.dataset().id}/annotation-mode"

    # --- push -------------------------------------------------------------------------------------
    def _record(self, pair: Mapping[str, Any]) -> Any:
        rg = _sdk()
        payload = record_payload(outgoing_pair(pair, self.redaction))
        suggestions = []
        if payload["suggestion"] is not None:
            value, score, agent = payload["suggestion"]
            suggestions.append(
                rg.Suggestion(QUESTION_PREFERRED, value, score=score, agent=argilla_agent(agent))
            )
        return rg.Record(
            id=payload["id"], fields=payload["fields"], metadata=payload["metadata"], suggestions=suggestions
        )

    def push(self, pairs: Sequence[Mapping[str, Any]]) -> list[bool]:
        """Upsert one record per pair (by pair id), in bulks of at most 500; one bool per pair.

        A malformed pair (say, a judge score outside [0, 1]) is False and named in the log. A bulk
        the server rejects as invalid (HTTP 422) is sent again record by record, so a bad record
        fails alone; any other failure of a bulk (the server went away) is False for its pairs.
        Re-sending is safe: the server upserts by record id.

        Raises:
            Exception: the dataset cannot be reached or created (the server is down).
        """
        try:
            dataset = self.dataset()
        except Exception:
            self._dataset = None
            raise
        self.failures = {}
        results = [False] * len(pairs)
        good: list[tuple[int, Any]] = []
        for i, pair in enumerate(pairs):
            try:
                good.append((i, self._record(pair)))
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("argilla: pair %s cannot be pushed: %s", pair.get("pair_id"), exc)
                self.failures[str(pair.get("pair_id"))] = f"{type(exc).__name__}: {exc}"
        for start in range(0, len(good), MAX_BULK):
            chunk = good[start : start + MAX_BULK]
            try:
                dataset.records.log([record for _, record in chunk], batch_size=len(chunk))
            except Exception as exc:  # noqa: BLE001 - this bulk is retried later; report and go on
                if not _is_invalid(exc) or len(chunk) == 1:
                    log.warning("argilla: a bulk of %d records failed: %s", len(chunk), exc)
                    for _, record in chunk:
                        self.failures[str(record.id)] = _reason(exc)
                    if not _is_invalid(exc):
                        self._dataset = None  # re-resolve (the dataset may have been deleted)
                    continue
                log.warning("argilla: a bulk of %d records was rejected; sending them one by one", len(chunk))
                for i, record in chunk:
                    try:
                        dataset.records.log([record], batch_size=1)
                    except Exception as one_exc:  # noqa: BLE001 - this record fails alone
                        log.warning("argilla: pair %s was rejected: %s", record.id, one_exc)
                        self.failures[str(record.id)] = _reason(one_exc)
                        if not _is_invalid(one_exc):
                            self._dataset = None
                        continue
                    results[i] = True
                continue
            for i, _ in chunk:
                results[i] = True
        return results

    # --- pull -------------------------------------------------------------------------------------
    def _usernames(self) -> dict[str, str]:
        resp = self.http.get("/api/v1/users")
        resp.raise_for_status()
        return {u["id"]: u["username"] for u in resp.json()["items"]}

    def _submitted(self) -> Iterator[dict[str, Any]]:
        """Every record with at least one submitted response, oldest first, with its responses."""
        dataset_id = self.dataset().id
        query = {
            "filters": {
                "and": [
                    {
                        "type": "terms",
                        "scope": {"entity": "response", "property": "status"},
                        "values": ["submitted"],
                    }
                ]
            },
            "sort": [{"scope": {"entity": "record", "property": "inserted_at"}, "order": "asc"}],
        }
        offset = 0
        while True:
            resp = self.http.post(
                f"/api/v1/datasets/{dataset_id}/records/search",
                params={"include": "responses", "offset": offset, "limit": PAGE},
                json=query,
            )
            resp.raise_for_status()
            items = resp.json()["items"]
            for item in items:
                yield item["record"]
            if len(items) < PAGE:
                return
            offset += len(items)

    def pull(self, since: datetime | None = None) -> list[PulledLabel]:
        """Submitted responses as labels (responses updated at or after ``since`` when given).

        A response whose values are outside the schema is logged and skipped.
        """
        self.failures = {}
        users = self._usernames()
        out: list[PulledLabel] = []
        for record in self._submitted():
            pair_id = record.get("external_id") or record["id"]
            for response in record.get("responses") or []:
                if response.get("status") != "submitted":
                    continue
                labeled_at = _parse_time(response["updated_at"])
                if since is not None and labeled_at < since:
                    continue
                try:
                    choice, failure, correction = label_from_values(response.get("values") or {})
                except ValueError as exc:
                    log.warning("argilla: skipping a response on %s: %s", pair_id, exc)
                    self.failures[str(pair_id)] = f"an answer outside the schema: {exc}"
                    continue
                out.append(
                    PulledLabel(
                        pair_id=str(pair_id),
                        annotator=users.get(response["user_id"], response["user_id"]),
                        choice=choice,
                        failure_type=failure,
                        correction=correction,
                        labeled_at=labeled_at,
                    )
                )
        return out

    def count(self) -> int:
        """Records in the dataset."""
        resp = self.http.get(f"/api/v1/datasets/{self.dataset().id}/records", params={"limit": 1})
        resp.raise_for_status()
        total = resp.json().get("total")
        if total is None:  # pragma: no cover - older servers: count the pages
            return sum(1 for _ in self.dataset().records)
        return int(total)

    def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            try:
                self.http.close()
            finally:
                self._client = None
                self._dataset = None


def from_settings(settings: Settings, chatlog: Any) -> BackendSink | None:
    """The Argilla outbox sink, or None when ``ARGILLA_API_URL`` is unset.

    Args:
        settings: the ``ARGILLA_*`` settings.
        chatlog: the ``ChatLog`` whose pairs the sink reads.
    """
    backend = ArgillaBackend.from_settings(settings)
    if backend is None:
        return None
    from labeling._store import PairStore

    return BackendSink(backend, PairStore(chatlog))


__all__ = [
    "CHOICES",
    "FAILURE_TYPES",
    "ArgillaBackend",
    "argilla_agent",
    "dataset_settings",
    "from_settings",
    "label_from_values",
    "record_payload",
]
