"""Label Studio backend: pure mapping with known values, then push / re-push / annotate / pull against the
real Label Studio 1.23 server."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import httpx
import pytest

from labeling._backend import pull_labels
from labeling._store import FAILURE_TYPES
from labeling.labelstudio import LabelStudioBackend, label_config, label_from_result, prediction, task_data
from labeling.labelstudio import from_settings as labelstudio_sink
from ragloop.settings import Settings
from tests.pii import ORDER_NUMBER, PII_TEXT, leaked

from .conftest import make_pair

pytestmark = pytest.mark.slow


# --- pure ---------------------------------------------------------------------------------------------
def test_label_config_is_a_pairwise_task() -> None:
    root = ET.fromstring(label_config())
    pairwise = root.find(".//Pairwise")
    assert pairwise is not None and pairwise.get("toName") == "response_a,response_b"
    failure = root.find(".//Choices[@name='failure_type']")
    assert failure is not None
    assert [c.get("value") for c in failure.findall("Choice")] == list(FAILURE_TYPES)
    assert root.find(".//TextArea[@name='correction']") is not None
    tie = root.find(".//Choices[@name='tie']/Choice")
    assert tie is not None and tie.get("value") == "tie"


def test_prediction_known_values() -> None:
    assert prediction(make_pair(0)) == {
        "model_version": "judge:qwen2.5-0.5b:prompt-v1",
        "score": 0.9,
        "result": [
            {
                "from_name": "preferred",
                "to_name": "preferred",
                "type": "pairwise",
                "value": {"selected": "left"},
            }
        ],
    }
    b = prediction(make_pair(1))
    assert b is not None
    assert b["result"][0]["value"] == {"selected": "right"} and b["score"] == pytest.approx(0.8)
    tie = prediction(make_pair(2))
    assert tie is not None
    assert tie["result"][0]["from_name"] == "tie" and tie["score"] == 1.0
    assert prediction(make_pair(0, judge=None)) is None


def test_task_data_fingerprint_changes_with_the_pair() -> None:
    base = task_data(make_pair(0))
    assert base["pair_id"] == "turn-00000"
    assert task_data(make_pair(0))["fingerprint"] == base["fingerprint"]
    assert task_data(make_pair(0, response_b="other"))["fingerprint"] != base["fingerprint"]
    judged = make_pair(0, judge={**make_pair(0)["judge"], "score": 0.6})
    assert task_data(judged)["fingerprint"] != base["fingerprint"]


def test_label_from_result() -> None:
    left = [
        {"from_name": "preferred", "type": "pairwise", "value": {"selected": "left"}},
        {"from_name": "failure_type", "type": "choices", "value": {"choices": ["refusal"]}},
        {"from_name": "correction", "type": "textarea", "value": {"text": ["Fixed ", "answer"]}},
    ]
    assert label_from_result(left) == ("A", "refusal", "Fixed \nanswer")
    tie = [*left[:2], {"from_name": "tie", "type": "choices", "value": {"choices": ["tie"]}}]
    assert label_from_result(tie) == ("tie", "refusal", None)
    with pytest.raises(ValueError):
        label_from_result([left[1]])  # no preference at all
    with pytest.raises(ValueError):
        label_from_result([left[0], {"from_name": "failure_type", "value": {"choices": ["bogus"]}}])


def test_not_configured_means_no_sink(tmp_path) -> None:
    assert labelstudio_sink(Settings(data_dir=tmp_path), chatlog=None) is None


# --- against the real server ----------------------------------------------------------------------------
def _backend(server, unique: str) -> LabelStudioBackend:
    return LabelStudioBackend(server.url, server.api_key, project=unique)


def _tasks(server, project_id: int) -> list[dict]:
    with httpx.Client(
        base_url=server.url, headers={"Authorization": f"Token {server.api_key}"}, timeout=60
    ) as h:
        resp = h.get("/api/tasks", params={"project": project_id, "fields": "all", "page_size": 1000})
        resp.raise_for_status()
        body = resp.json()
        return body["tasks"] if isinstance(body, dict) else body


def test_push_repush_no_duplicates(label_studio_server, unique, pairs_factory) -> None:
    backend = _backend(label_studio_server, unique)
    pairs = pairs_factory(6)
    assert backend.push(pairs) == [True] * 6
    assert backend.push(pairs) == [True] * 6  # same process
    pairs[2]["response_b"] = "An edited alternative."
    pairs[2]["judge"] = {**pairs[2]["judge"], "preferred": "B", "score": 0.1, "reasoning": PII_TEXT}
    pairs[2]["question"] = PII_TEXT  # redacted on the way out (RAGLOOP_REDACT, on by default)
    pairs[2]["context"] = [PII_TEXT]
    fresh = _backend(label_studio_server, unique)  # a new process: only the server knows the tasks
    assert fresh.push(pairs) == [True] * 6
    tasks = _tasks(label_studio_server, fresh.project_id())
    assert sorted(t["data"]["pair_id"] for t in tasks) == [p["pair_id"] for p in pairs]
    edited = next(t for t in tasks if t["data"]["pair_id"] == "turn-00002")
    assert edited["data"]["response_b"] == "An edited alternative."
    assert leaked(json.dumps(tasks)) == [] and ORDER_NUMBER in edited["data"]["question"]
    (pred,) = edited["predictions"]  # the old verdict was replaced, not stacked
    assert pred["result"][0]["value"] == {"selected": "right"} and pred["score"] == pytest.approx(0.9)
    assert fresh.count() == 6


def test_a_malformed_pair_fails_alone(label_studio_server, unique, pairs_factory) -> None:
    backend = _backend(label_studio_server, unique)
    pairs = pairs_factory(3)
    pairs[0]["judge"] = {"preferred": "B", "score": -1}
    assert backend.push(pairs) == [False, True, True]
    assert backend.count() == 2
    # the reason is kept per pair, for `ragloop labeling push` to name (it exits 1 then)
    assert list(backend.failures) == ["turn-00000"] and "P(A better)" in backend.failures["turn-00000"]
    assert backend.push(pairs[1:]) == [True, True] and backend.failures == {}


def test_annotation_pulled_as_label(label_studio_server, unique, store, pairs_factory) -> None:
    pairs = pairs_factory(3)
    for pair in pairs:
        store.save_pair(pair)
    backend = _backend(label_studio_server, unique)
    assert backend.push([store.get(p["pair_id"]) for p in pairs]) == [True] * 3
    ids = {pid: tid for pid, (tid, _) in backend.task_ids().items()}
    with httpx.Client(
        base_url=label_studio_server.url, headers={"Authorization": f"Token {label_studio_server.api_key}"}
    ) as h:
        result = [
            {
                "from_name": "preferred",
                "to_name": "preferred",
                "type": "pairwise",
                "value": {"selected": "right"},
            },
            {
                "from_name": "failure_type",
                "to_name": "question",
                "type": "choices",
                "value": {"choices": ["off_topic"]},
            },
            {
                "from_name": "correction",
                "to_name": "question",
                "type": "textarea",
                "value": {"text": ["Use xs[::-1]."]},
            },
        ]
        assert (
            h.post(f"/api/tasks/{ids['turn-00000']}/annotations", json={"result": result}).status_code == 201
        )
        skipped = {"result": [], "was_cancelled": True}
        assert h.post(f"/api/tasks/{ids['turn-00001']}/annotations", json=skipped).status_code == 201
    report = pull_labels(store, backend)
    assert (report.pulled, report.recorded) == (1, 1)
    (label,) = store.labels_for("turn-00000")
    assert (
        label["backend"],
        label["annotator"],
        label["choice"],
        label["failure_type"],
        label["correction"],
    ) == (
        "labelstudio",
        label_studio_server.username,
        "B",
        "off_topic",
        "Use xs[::-1].",
    )
    assert store.labels_for("turn-00001") == []
