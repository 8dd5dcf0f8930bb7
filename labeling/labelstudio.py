"""Label Studio as a labeling backend and outbox sink: one pairwise project, pulled back as labels.

The project shows the question and the retrieved context, then a ``Pairwise`` comparison of
responses A and B (left = A, right = B), a "tie" choice, the failure type as ``Choices`` and an
optional corrected answer in a ``TextArea``. The judge's verdict is imported as a prediction
(model version = the judge's agent, score = its confidence), which annotators see pre-filled.

Label Studio has no upsert by an id of ours: every task carries ``pair_id`` in its data, and the
backend keeps a ``pair_id -> task id`` map read from the server (again after any failure, so a
push whose answer was lost is found and updated, never imported twice).

The SDK (extra ``labelstudio``: ``label-studio-sdk``, client only) is imported only here, lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

from labeling._backend import (
    BackendSink,
    PulledLabel,
    check_label,
    context_text,
    judge_suggestion,
    outgoing_pair,
    shown,
)
from labeling._store import FAILURE_TYPES

if TYPE_CHECKING:
    from ragloop.settings import Settings

log = logging.getLogger(__name__)

NAME = "labelstudio"
#: Tasks per import request and per page when listing.
PAGE = 1000
TAG_PREFERRED = "preferred"
TAG_TIE = "tie"
TAG_FAILURE = "failure_type"
TAG_CORRECTION = "correction"
FAILURE_HINTS = {
    "hallucination": "not supported by the context",
    "retrieval_miss": "the context lacks the answer",
    "off_topic": "does not answer the question",
    "refusal": "declines to answer",
    "wrong_language": "answers in another language",
    "other": "another failure",
    "none": "neither answer fails",
}


def _sdk() -> Any:
    try:
        import label_studio_sdk
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise ImportError(
            "the Label Studio backend needs the labelstudio extra: .venv/bin/pip install -c constraints.txt "
            "label-studio-sdk==2.0.19"
        ) from exc
    return label_studio_sdk


def label_config() -> str:
    """The project's labeling interface (XML)."""
    choices = "\n".join(
        f"    <Choice value={quoteattr(f)} hint={quoteattr(FAILURE_HINTS[f])}/>" for f in FAILURE_TYPES
    )
    return f"""<View>
  <Header value="Question"/>
  <Text name="question" value="$question"/>
  <Header value="Retrieved context"/>
  <Text name="context" value="$context"/>
  <Header value="Which response is better? Click it, or mark a tie below."/>
  <Pairwise name="{TAG_PREFERRED}" toName="response_a,response_b"/>
  <View style="display: flex; gap: 1em;">
    <View style="flex: 1;"><Header value="Response A"/><Text name="response_a" value="$response_a"/></View>
    <View style="flex: 1;"><Header value="Response B"/><Text name="response_b" value="$response_b"/></View>
  </View>
  <Choices name="{TAG_TIE}" toName="question" choice="single">
    <Choice value="tie" hint="equally good or equally bad"/>
  </Choices>
  <Header value="How does the worse response fail?"/>
  <Choices name="{TAG_FAILURE}" toName="question" choice="single" required="true">
{choices}
  </Choices>
  <Header value="Corrected answer (optional)"/>
  <TextArea name="{TAG_CORRECTION}" toName="question" rows="4" maxSubmissions="1" editable="true"/>
</View>"""


def task_data(pair: Mapping[str, Any]) -> dict[str, Any]:
    """The task's ``data`` for a pair.

    ``pair_id`` identifies the task on re-push; ``fingerprint`` (a hash of the data and the
    judge's prediction) lets a re-push of an unchanged pair skip the update.
    """
    judge = pair.get("judge") or {}
    data = {
        "pair_id": str(pair["pair_id"]),
        "question": shown(pair.get("question")),
        "context": context_text(pair.get("context")),
        "response_a": shown(pair.get("response_a")),
        "response_b": shown(pair.get("response_b")),
        "strategy": str(pair.get("strategy") or "unknown"),
        "judge_reasoning": str(judge.get("reasoning") or "")[:4000],
    }
    blob = json.dumps([data, prediction(pair)], sort_keys=True, default=str)
    data["fingerprint"] = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return data


def prediction(pair: Mapping[str, Any]) -> dict[str, Any] | None:
    """The judge's verdict as a Label Studio prediction, or None when the pair has none.

    Raises:
        ValueError: the judge's verdict is malformed.
    """
    suggestion = judge_suggestion(pair.get("judge"))
    if suggestion is None:
        return None
    choice, score, agent = suggestion
    if choice == "tie":
        result = [
            {"from_name": TAG_TIE, "to_name": "question", "type": "choices", "value": {"choices": ["tie"]}}
        ]
    else:
        selected = "left" if choice == "A" else "right"
        result = [
            {
                "from_name": TAG_PREFERRED,
                "to_name": TAG_PREFERRED,
                "type": "pairwise",
                "value": {"selected": selected},
            }
        ]
    out: dict[str, Any] = {"model_version": agent or "judge", "result": result}
    if score is not None:
        out["score"] = score
    return out


def label_from_result(result: Sequence[Mapping[str, Any]]) -> tuple[str, str, str | None]:
    """(choice, failure type, correction) from an annotation's ``result`` list.

    A "tie" choice wins over a pairwise selection; left is A, right is B.

    Raises:
        ValueError: neither a selection nor a tie, or a value outside the schema.
    """
    choice: str | None = None
    tie = False
    failure: str | None = None
    correction: str | None = None
    for region in result:
        name, value = region.get("from_name"), region.get("value") or {}
        if name == TAG_PREFERRED:
            selected = value.get("selected")
            choice = {"left": "A", "right": "B"}.get(str(selected), str(selected))
        elif name == TAG_TIE:
            tie = "tie" in (value.get("choices") or [])
        elif name == TAG_FAILURE:
            failure = next(iter(value.get("choices") or []), None)
        elif name == TAG_CORRECTION:
            text = "\n".join(str(t) for t in value.get("text") or []).strip()
            correction = text or None
    if tie:
        choice = "tie"
    checked_choice, checked_failure = check_label(choice, failure)
    return checked_choice, checked_failure, correction


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class LabelStudioBackend:
    """One pairwise project on a Label Studio server, reached with an API token."""

    name = NAME

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        project: str = "ragloop-preferences",
        timeout_s: float = 120,
        redaction: bool = True,
    ) -> None:
        """Remember the server; nothing is contacted until the first push or pull.

        ``redaction`` masks PII and secrets in every pushed text (``RAGLOOP_REDACT``).
        """
        self.redaction = redaction
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.project_title = project
        self.timeout_s = timeout_s
        self._client: Any = None
        self._project_id: int | None = None
        #: pair id -> why it failed, for the last :meth:`push` or :meth:`pull` (skipped annotations).
        self.failures: dict[str, str] = {}
        self._tasks: dict[str, tuple[int, str]] | None = (
            None  # pair_id -> (task id, fingerprint); None: reread
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> LabelStudioBackend | None:
        """The backend configured by ``LABEL_STUDIO_*``, or None when ``LABEL_STUDIO_URL`` is unset."""
        if not settings.label_studio_url:
            return None
        key = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else ""
        if not key:
            raise ValueError("LABEL_STUDIO_URL is set but LABEL_STUDIO_API_KEY is not: set an API token")
        return cls(
            settings.label_studio_url, key, project=settings.label_studio_project, redaction=settings.redact
        )

    # --- connection -----------------------------------------------------------------------------
    @property
    def client(self) -> Any:
        """The ``LabelStudio`` client (created on first use)."""
        if self._client is None:
            sdk = _sdk()
            self._client = sdk.LabelStudio(base_url=self.url, api_key=self.api_key, timeout=self.timeout_s)
        return self._client

    def project_id(self) -> int:
        """The pairwise project's id, created when missing."""
        if self._project_id is not None:
            return self._project_id
        for project in self.client.projects.list(title=self.project_title):
            if project.title == self.project_title:
                self._project_id = int(project.id)
                return self._project_id
        created = self.client.projects.create(
            title=self.project_title,
            description="ragloop: pairwise preference labeling of flagged chat turns",
            label_config=label_config(),
        )
        log.info("created Label Studio project %s (%s)", self.project_title, created.id)
        self._project_id = int(created.id)
        self._tasks = {}
        return self._project_id

    def project_url(self) -> str:
        """The project's page in the Label Studio UI."""
        return f"{self.url}/projects/{self.project_id()}/data"

    def task_ids(self) -> dict[str, tuple[int, str]]:
        """``pair_id -> (task id, fingerprint)`` of every task, read from the server (cached until a failure).

        Reading it again after any failure is what makes a lost answer harmless: a task imported
        just before the connection dropped is found by its pair id and updated, not imported twice.
        """
        if self._tasks is None:
            found: dict[str, tuple[int, str]] = {}
            pager = self.client.tasks.list(project=self.project_id(), fields="task_only", page_size=PAGE)
            for task in pager:
                data = task.data or {}
                if data.get("pair_id") is not None:
                    found.setdefault(str(data["pair_id"]), (int(task.id), str(data.get("fingerprint") or "")))
            self._tasks = found
        return self._tasks

    # --- push -------------------------------------------------------------------------------------
    def push(self, pairs: Sequence[Mapping[str, Any]]) -> list[bool]:
        """Import new pairs as tasks (with the judge's prediction) and update known ones; one bool per pair.

        Raises:
            Exception: the server cannot be reached (the next push reads the task map again).
        """
        self.failures = {}
        try:
            return self._push(pairs)
        except Exception:
            self._tasks = None  # whatever happened, learn the truth from the server next time
            self._project_id = None
            raise

    def _push(self, pairs: Sequence[Mapping[str, Any]]) -> list[bool]:
        pairs = [outgoing_pair(p, self.redaction) for p in pairs]
        project = self.project_id()
        known = self.task_ids()
        latest: dict[str, Mapping[str, Any]] = {}  # a pair twice in one batch: its last version
        for pair in pairs:
            try:
                task_data(pair)
            except (ValueError, TypeError, KeyError) as exc:
                log.warning("labelstudio: pair %s cannot be pushed: %s", pair.get("pair_id"), exc)
                self.failures[str(pair.get("pair_id"))] = f"{type(exc).__name__}: {exc}"
                continue
            latest[str(pair["pair_id"])] = pair
        new = [p for pid, p in latest.items() if pid not in known]
        new_ids = {str(p["pair_id"]) for p in new}
        for start in range(0, len(new), PAGE):
            chunk = new[start : start + PAGE]
            tasks = []
            for pair in chunk:
                task: dict[str, Any] = {"data": task_data(pair)}
                pred = prediction(pair)
                if pred is not None:
                    task["predictions"] = [pred]
                tasks.append(task)
            fingerprints = [t["data"]["fingerprint"] for t in tasks]
            response = self.client.projects.import_tasks(project, request=tasks, return_task_ids=True)
            ids = list(getattr(response, "task_ids", None) or [])
            if len(ids) != len(chunk):  # the server did not say which ids: read the map again
                self._tasks = None
                known = self.task_ids()
            else:
                for pair, task_id, fingerprint in zip(chunk, ids, fingerprints, strict=True):
                    known[str(pair["pair_id"])] = (int(task_id), fingerprint)
        for pair_id, pair in latest.items():
            if pair_id in known and pair_id not in new_ids:
                data = task_data(pair)
                task_id, fingerprint = known[pair_id]
                if fingerprint != data["fingerprint"]:
                    self._update(task_id, pair, data)
                    known[pair_id] = (task_id, data["fingerprint"])
        results = [str(p.get("pair_id")) in latest and str(p["pair_id"]) in known for p in pairs]
        for pair, ok in zip(pairs, results, strict=True):
            if not ok:
                self.failures.setdefault(str(pair.get("pair_id")), "the server did not store the task")
        return results

    def _update(self, task_id: int, pair: Mapping[str, Any], data: dict[str, Any]) -> None:
        """Overwrite a task's data and replace the judge's prediction (pushing a changed pair again)."""
        self.client.tasks.update(id=task_id, data=data)
        pred = prediction(pair)
        existing = list(self.client.predictions.list(task=task_id))
        for old in existing:
            self.client.predictions.delete(id=old.id)
        if pred is not None:
            self.client.predictions.create(task=task_id, **pred)

    # --- pull -------------------------------------------------------------------------------------
    def _users(self) -> dict[int, str]:
        return {int(u.id): str(u.username or u.email or u.id) for u in self.client.users.list()}

    def pull(self, since: datetime | None = None) -> list[PulledLabel]:
        """Submitted (not skipped) annotations as labels (updated at or after ``since`` when given)."""
        self.failures = {}
        users = self._users()
        out: list[PulledLabel] = []
        # The server ignores `only_annotated`; a Data Manager filter keeps unlabeled tasks off the wire.
        annotated = {
            "filter": "filter:tasks:total_annotations",
            "operator": "greater",
            "type": "Number",
            "value": 0,
        }
        query = json.dumps({"filters": {"conjunction": "and", "items": [annotated]}})
        pager = self.client.tasks.list(project=self.project_id(), fields="all", query=query, page_size=PAGE)
        for task in pager:
            pair_id = (task.data or {}).get("pair_id")
            if pair_id is None:
                continue
            for ann in task.annotations or []:
                ann = ann if isinstance(ann, Mapping) else ann.dict()
                if ann.get("was_cancelled"):
                    continue
                stamp = ann.get("updated_at") or ann.get("created_at")
                labeled_at = stamp if isinstance(stamp, datetime) else _parse_time(str(stamp))
                if since is not None and labeled_at < since:
                    continue
                try:
                    choice, failure, correction = label_from_result(ann.get("result") or [])
                except ValueError as exc:
                    log.warning("labelstudio: skipping an annotation on %s: %s", pair_id, exc)
                    self.failures[str(pair_id)] = f"an annotation outside the schema: {exc}"
                    continue
                by = ann.get("completed_by")
                by_id = by.get("id") if isinstance(by, Mapping) else by
                out.append(
                    PulledLabel(
                        pair_id=str(pair_id),
                        annotator=users.get(int(by_id), str(by_id)) if by_id is not None else "unknown",
                        choice=choice,
                        failure_type=failure,
                        correction=correction,
                        labeled_at=labeled_at,
                    )
                )
        return out

    def count(self) -> int:
        """Tasks in the project (all of them, read from the server)."""
        return int(self.client.projects.get(id=self.project_id()).task_number or 0)

    def close(self) -> None:
        """Forget the client and the cached task map."""
        self._client = None
        self._tasks = None
        self._project_id = None


def from_settings(settings: Settings, chatlog: Any) -> BackendSink | None:
    """The Label Studio outbox sink, or None when ``LABEL_STUDIO_URL`` is unset.

    Args:
        settings: the ``LABEL_STUDIO_*`` settings.
        chatlog: the ``ChatLog`` whose pairs the sink reads.
    """
    backend = LabelStudioBackend.from_settings(settings)
    if backend is None:
        return None
    from labeling._store import PairStore

    return BackendSink(backend, PairStore(chatlog))


__all__ = [
    "LabelStudioBackend",
    "from_settings",
    "label_config",
    "label_from_result",
    "prediction",
    "task_data",
]
