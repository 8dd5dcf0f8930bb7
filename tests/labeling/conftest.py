"""Fixtures for the labeling backends: the real argilla-server (noida-db standing in for Elasticsearch
and Redis) and the real Label Studio, each started once per session on free 127.0.0.1 ports."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from chatlog import ChatLog
from labeling._store import PairStore
from labeling._ui import LocalArgilla, LocalLabelStudio, start_labeling_ui
from ragloop.process import free_port
from ragloop.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def argilla_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalArgilla]:
    """The real argilla-server 2.8 (+ worker + noida-db) from .venv-tools/argilla (`make argilla`),
    started by ``start_labeling_ui`` exactly as ``ragloop run`` starts it."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("argilla-data"),
        labeling_ui="argilla",
        argilla_port=free_port(),
        argilla_api_key="owner.test.apikey",
        argilla_venv=ROOT / ".venv-tools" / "argilla",
    )
    server = start_labeling_ui(settings)
    assert isinstance(server, LocalArgilla)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def label_studio_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLabelStudio]:
    """The real Label Studio 1.23 from .venv-tools/label-studio (`make label-studio`), via ``start_labeling_ui``."""
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("label-studio-data"),
        labeling_ui="labelstudio",
        label_studio_port=free_port(),
        label_studio_api_key="ls-test-token-0123456789",
        label_studio_venv=ROOT / ".venv-tools" / "label-studio",
    )
    server = start_labeling_ui(settings)
    assert isinstance(server, LocalLabelStudio)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture()
def unique() -> str:
    """A fresh dataset / project name, so tests sharing a server never see each other's records."""
    return f"t-{uuid.uuid4().hex[:10]}"


@pytest.fixture()
def chatlog(tmp_path: Path) -> Iterator[ChatLog]:
    """A fresh SQLite chat log at the head revision."""
    log = ChatLog(f"sqlite:///{tmp_path / 'chatlog.db'}")
    try:
        yield log
    finally:
        log.close()


@pytest.fixture()
def store(chatlog: ChatLog) -> PairStore:
    return PairStore(chatlog)


def make_pair(i: int, **overrides: Any) -> dict[str, Any]:
    """A pair as the labeling core stores it; the judge prefers A, B, tie in turn."""
    pair: dict[str, Any] = {
        "pair_id": f"turn-{i:05d}",
        "question": f"How do I reverse a list in Python? (#{i})",
        "context": [
            "list.reverse() reverses the items of the list in place.",
            {"text": "reversed(seq) returns a reverse iterator.", "source": "library/functions.rst"},
        ],
        "response_a": f"Use list.reverse() or reversed(). (#{i})",
        "response_b": f"Use sorted(reverse=True). (#{i})",
        "a_is_original": True,
        "strategy": "strict_grounded",
        "judge": {
            "preferred": ("A", "B", "tie")[i % 3],
            "score": (0.9, 0.2, 0.5)[i % 3],
            "reasoning": "A cites the context; B sorts instead of reversing.",
            "agent": "judge:qwen2.5-0.5b:prompt-v1",
            "order_consistent": True,
        },
    }
    pair.update(overrides)
    return pair


@pytest.fixture()
def pairs_factory() -> Callable[..., list[dict[str, Any]]]:
    def make(n: int, start: int = 0) -> list[dict[str, Any]]:
        return [make_pair(i) for i in range(start, start + n)]

    return make


class ArgillaAnnotator:
    """An annotator answering through the REST flow the Argilla UI uses (the SDK gives annotators 403)."""

    def __init__(self, server: LocalArgilla, username: str, workspace_id: str) -> None:
        owner = httpx.Client(base_url=server.url, headers={"X-Argilla-Api-Key": server.api_key}, timeout=30)
        password = f"{username}-pass-123"
        created = owner.post(
            "/api/v1/users",
            json={"first_name": username, "username": username, "password": password, "role": "annotator"},
        )
        assert created.status_code == 201, created.text
        self.user_id = created.json()["id"]
        added = owner.post(f"/api/v1/workspaces/{workspace_id}/users", json={"user_id": self.user_id})
        assert added.status_code in (200, 201), added.text
        owner.close()
        token = httpx.post(f"{server.url}/api/v1/token", data={"username": username, "password": password})
        assert token.status_code == 201, token.text
        self.http = httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {token.json()['access_token']}"},
            timeout=30,
        )
        self.username = username

    def records(self, dataset_id: str) -> dict[str, dict[str, Any]]:
        """external id -> record, as the annotator's UI lists them (with suggestions)."""
        resp = self.http.post(
            f"/api/v1/me/datasets/{dataset_id}/records/search",
            params={"include": "suggestions", "limit": 1000},
            json={},
        )
        resp.raise_for_status()
        return {item["record"]["external_id"]: item["record"] for item in resp.json()["items"]}

    def answer(
        self,
        record_id: str,
        choice: str,
        failure: str,
        correction: str | None = None,
        status: str = "submitted",
    ) -> None:
        values: dict[str, Any] = {"preferred": {"value": choice}, "failure_type": {"value": failure}}
        if correction is not None:
            values["correction"] = {"value": correction}
        resp = self.http.post(
            f"/api/v1/records/{record_id}/responses", json={"values": values, "status": status}
        )
        assert resp.status_code == 201, resp.text
