"""Argilla backend: pure mapping with known values, then push / re-push / annotate / pull against the
real argilla-server 2.8 (noida-db standing in for Elasticsearch and Redis)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from chatlog.outbox import OutboxWorker
from labeling._backend import EMPTY_ANSWER, NO_CONTEXT, BackendSink, pull_labels
from labeling.argilla import ArgillaBackend, label_from_values, record_payload
from labeling.argilla import from_settings as argilla_sink
from ragloop.settings import Settings
from tests.pii import ORDER_NUMBER, PII_TEXT, leaked

from .conftest import ArgillaAnnotator, make_pair

pytestmark = pytest.mark.slow


# --- pure ---------------------------------------------------------------------------------------------
def test_record_payload_known_values() -> None:
    pair = make_pair(1, response_b="  ", context=[])  # judge prefers B with P(A better) = 0.2
    payload = record_payload(pair)
    assert payload["id"] == "turn-00001"
    assert payload["fields"]["response_b"] == EMPTY_ANSWER
    assert payload["fields"]["context"] == NO_CONTEXT
    assert payload["suggestion"] == ("B", 0.8, "judge:qwen2.5-0.5b:prompt-v1")
    assert payload["metadata"]["judge_score"] == 0.2
    tie = record_payload(make_pair(2))  # tie at 0.5: full confidence in "tie"
    assert tie["suggestion"] == ("tie", 1.0, "judge:qwen2.5-0.5b:prompt-v1")
    ctx = record_payload(make_pair(0))["fields"]["context"]
    assert ctx.startswith("[1] list.reverse()") and "[2] (library/functions.rst) reversed" in ctx
    assert record_payload(make_pair(3, judge=None))["suggestion"] is None


def test_a_judge_without_order_is_not_marked_inconsistent() -> None:
    """Local-only verdicts have order_consistent None: nothing about order may be claimed."""
    local_only = make_pair(0)
    local_only["judge"] = {**local_only["judge"], "order_consistent": None}
    assert "judge_order_consistent" not in record_payload(local_only)["metadata"]
    assert record_payload(make_pair(0))["metadata"]["judge_order_consistent"] is True
    inconsistent = make_pair(0)
    inconsistent["judge"] = {**inconsistent["judge"], "order_consistent": False}
    assert record_payload(inconsistent)["metadata"]["judge_order_consistent"] is False


def test_record_payload_rejects_a_malformed_verdict() -> None:
    with pytest.raises(ValueError, match="P\\(A better\\)"):
        record_payload(make_pair(0, judge={"preferred": "A", "score": 1.5}))
    with pytest.raises(ValueError, match="preferred"):
        record_payload(make_pair(0, judge={"preferred": "left", "score": 0.5}))


#: The agent of the default judge (LLM + local faithfulness), as labeling._judge writes it.
DEFAULT_AGENT = "qwen2.5-coder-0.5b-instruct/pairwise-judge-1+local-faithfulness-5/w0.8"


def test_argilla_agent_known_values() -> None:
    from labeling.argilla import AGENT_PATTERN, argilla_agent

    cases = {
        DEFAULT_AGENT: "qwen2.5-coder-0.5b-instruct/pairwise-judge-1_local-faithfulness-5/w0.8",
        "judge:qwen2.5-0.5b:prompt-v1": "judge:qwen2.5-0.5b:prompt-v1",
        "": "unknown-judge",
        "+++": "unknown-judge",
        "modèle-é/v1": "modele-e/v1",
        "裁判/模型": "unknown-judge",
        "a\n\tb  c": "a b c",
        "x" * 300: "x" * 200,
    }
    for raw, want in cases.items():
        got = argilla_agent(raw)
        assert got == want, raw
        assert AGENT_PATTERN.match(got) and 1 <= len(got) <= 200
    assert argilla_agent(None) == "unknown-judge"


def test_label_from_values() -> None:
    values = {
        "preferred": {"value": "B"},
        "failure_type": {"value": "retrieval_miss"},
        "correction": {"value": " x "},
    }
    assert label_from_values(values) == ("B", "retrieval_miss", "x")
    assert label_from_values({"preferred": {"value": "tie"}}) == ("tie", "none", None)
    with pytest.raises(ValueError):
        label_from_values({"failure_type": {"value": "other"}})
    with pytest.raises(ValueError):
        label_from_values({"preferred": {"value": "A"}, "failure_type": {"value": "bogus"}})


def test_not_configured_means_no_sink(tmp_path) -> None:
    assert argilla_sink(Settings(data_dir=tmp_path), chatlog=None) is None
    with pytest.raises(ValueError, match="ARGILLA_API_KEY"):
        argilla_sink(Settings(data_dir=tmp_path, argilla_api_url="http://127.0.0.1:1"), chatlog=None)


# --- against the real server ----------------------------------------------------------------------------
def _backend(server, unique: str) -> ArgillaBackend:
    return ArgillaBackend(server.url, server.api_key, workspace=unique, dataset=unique)


def _records(server, backend: ArgillaBackend) -> dict[str, dict]:
    """external id -> record with suggestions, read over REST as the owner."""
    with httpx.Client(base_url=server.url, headers={"X-Argilla-Api-Key": server.api_key}) as http:
        resp = http.get(
            f"/api/v1/datasets/{backend.dataset().id}/records",
            params={"include": "suggestions", "limit": 1000},
        )
        resp.raise_for_status()
        return {r["external_id"]: r for r in resp.json()["items"]}


def test_push_then_repush_updates_in_place(argilla_server, unique, pairs_factory) -> None:
    backend = _backend(argilla_server, unique)
    pairs = pairs_factory(5)
    assert backend.push(pairs) == [True] * 5
    pairs[1]["response_b"] = "An edited alternative."
    pairs[1]["judge"] = {**pairs[1]["judge"], "preferred": "A", "score": 0.7}
    fresh = _backend(argilla_server, unique)  # a new process: no state but the server's
    assert fresh.push(pairs) == [True] * 5
    assert fresh.count() == 5
    records = _records(argilla_server, fresh)
    assert sorted(records) == [p["pair_id"] for p in pairs]
    assert records["turn-00001"]["fields"]["response_b"] == "An edited alternative."
    (suggestion,) = records["turn-00001"]["suggestions"]
    assert (suggestion["value"], suggestion["score"], suggestion["agent"]) == (
        "A",
        pytest.approx(0.7),
        "judge:qwen2.5-0.5b:prompt-v1",
    )
    backend.close()
    fresh.close()


def test_a_malformed_pair_fails_alone(argilla_server, unique, pairs_factory) -> None:
    backend = _backend(argilla_server, unique)
    pairs = pairs_factory(3)
    pairs[1]["judge"] = {"preferred": "A", "score": 7.0}
    assert backend.push(pairs) == [True, False, True]
    assert backend.count() == 2


def test_the_default_judge_agent_is_accepted(argilla_server, unique, pairs_factory) -> None:
    backend = _backend(argilla_server, unique)
    pairs = pairs_factory(2)
    for pair in pairs:
        pair["judge"] = {**pair["judge"], "agent": DEFAULT_AGENT}
    assert backend.push(pairs) == [True, True]
    records = _records(argilla_server, backend)
    (suggestion,) = records["turn-00000"]["suggestions"]
    assert suggestion["agent"] == "qwen2.5-coder-0.5b-instruct/pairwise-judge-1_local-faithfulness-5/w0.8"
    backend.close()


def test_a_record_the_server_rejects_fails_alone(argilla_server, unique, pairs_factory, monkeypatch) -> None:
    """The server (not our checks) rejects one record of a bulk with a 422: only that record fails."""
    import labeling.argilla as mod

    # let one raw, server-invalid agent through to the real server
    monkeypatch.setattr(mod, "argilla_agent", lambda agent: agent, raising=False)
    backend = _backend(argilla_server, unique)
    pairs = pairs_factory(3)
    pairs[1]["judge"] = {**pairs[1]["judge"], "agent": DEFAULT_AGENT}
    assert backend.push(pairs) == [True, False, True]
    assert backend.count() == 2
    backend.close()


def test_annotators_label_pull_and_agree(argilla_server, unique, store, pairs_factory) -> None:
    pairs = pairs_factory(4)
    for pair in pairs:
        store.save_pair(pair)
    backend = _backend(argilla_server, unique)
    assert backend.push([store.get(p["pair_id"]) for p in pairs]) == [True] * 4
    dataset = backend.dataset()
    ann = ArgillaAnnotator(argilla_server, f"ann-{unique}", str(dataset.workspace.id))
    bob = ArgillaAnnotator(argilla_server, f"bob-{unique}", str(dataset.workspace.id))
    seen = ann.records(str(dataset.id))
    assert sorted(seen) == [p["pair_id"] for p in pairs]
    assert seen["turn-00000"]["suggestions"][0]["value"] == "A"  # the judge's verdict is pre-filled
    rid = {k: r["id"] for k, r in seen.items()}
    before = datetime.now(UTC) - timedelta(seconds=5)
    ann.answer(rid["turn-00000"], "A", "hallucination", "Use reversed(xs) or xs[::-1].")
    ann.answer(rid["turn-00001"], "B", "retrieval_miss")
    ann.answer(rid["turn-00002"], "tie", "none")
    ann.answer(rid["turn-00003"], "A", "other", status="draft")  # a draft is not a label
    bob.answer(rid["turn-00000"], "A", "hallucination")
    bob.answer(rid["turn-00001"], "A", "off_topic")
    bob.answer(rid["turn-00002"], "tie", "none")

    report = pull_labels(store, backend)
    assert (report.pulled, report.recorded, report.unknown_pairs, report.invalid) == (6, 6, [], [])
    rows = {(r["annotator"], r["pair_id"]): r for p in pairs for r in store.labels_for(p["pair_id"])}
    first = rows[(ann.username, "turn-00000")]
    assert (first["backend"], first["choice"], first["failure_type"], first["correction"]) == (
        "argilla",
        "A",
        "hallucination",
        "Use reversed(xs) or xs[::-1].",
    )
    labeled_at = first["labeled_at"]
    labeled_at = labeled_at if labeled_at.tzinfo else labeled_at.replace(tzinfo=UTC)
    assert before <= labeled_at <= datetime.now(UTC) + timedelta(seconds=5)
    assert (ann.username, "turn-00003") not in rows
    # Pulling again upserts: still one row per (pair, backend, annotator).
    pull_labels(store, backend)
    assert sum(len(store.labels_for(p["pair_id"])) for p in pairs) == 6
    # Two annotators on three records, same choice on two of them.
    agreement = store.agreement()
    assert agreement["records"] == 3
    assert agreement["percent_agreement"] == pytest.approx(2 / 3)


def test_sink_delivers_outbox_items(argilla_server, unique, chatlog, store, pairs_factory, tmp_path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        argilla_api_url=argilla_server.url,
        argilla_api_key=argilla_server.api_key,
        argilla_workspace=unique,
        argilla_dataset=unique,
    )
    sink = argilla_sink(settings, chatlog)
    assert isinstance(sink, BackendSink) and sink.name == "argilla"
    chatlog.set_routes({"pair": ["argilla"]})
    for pair in pairs_factory(12):
        store.save_pair(pair)
    worker = OutboxWorker(chatlog.engine, [sink], batch_size=5)
    assert worker.drain(timeout_s=120)
    assert sink.backend.count() == 12
    # An edit goes out again as an update; PII in any text field is redacted on the way (RAGLOOP_REDACT).
    judge = {**make_pair(3)["judge"], "reasoning": f"B quotes {PII_TEXT}"}
    edit = make_pair(3, question=PII_TEXT, response_b=f"edited {PII_TEXT}", context=[PII_TEXT], judge=judge)
    store.save_pair(edit)
    assert worker.drain(timeout_s=60)
    assert sink.backend.count() == 12
    assert isinstance(sink.backend, ArgillaBackend)
    record = _records(argilla_server, sink.backend)["turn-00003"]
    assert record["fields"]["response_b"].startswith("edited Reply to [EMAIL]")
    assert leaked(json.dumps(record)) == [] and ORDER_NUMBER in record["fields"]["question"]
    assert store.get("turn-00003")["question"] == PII_TEXT  # the chat log keeps the original
    worker.stop()


def test_labeling_ui_choice(tmp_path) -> None:
    from labeling._ui import start_labeling_ui

    assert start_labeling_ui(Settings(data_dir=tmp_path, labeling_ui="none")) is None
    remote = Settings(data_dir=tmp_path, argilla_api_url="http://argilla.example:6900", argilla_api_key="k")
    assert start_labeling_ui(remote) is None  # a configured server: nothing local to start
    with pytest.raises(ValueError, match="RAGLOOP_LABELING_UI"):
        start_labeling_ui(Settings(data_dir=tmp_path, labeling_ui="prodigy"))
    with pytest.raises(RuntimeError, match="make argilla"):
        start_labeling_ui(Settings(data_dir=tmp_path, argilla_venv=tmp_path / "nope"))


def test_the_server_fixture_is_the_local_ui(argilla_server) -> None:
    assert argilla_server.name == "argilla" and argilla_server.url.startswith("http://127.0.0.1:")
    assert argilla_server.ready()
    update = argilla_server.settings_update()
    assert update["argilla_api_url"] == argilla_server.url
    assert update["argilla_api_key"].get_secret_value() == argilla_server.api_key


def test_cli_push_pull_agreement(argilla_server, unique, tmp_path, monkeypatch, pairs_factory) -> None:
    import json

    from typer.testing import CliRunner

    from chatlog import ChatLog
    from labeling._backends_cli import app
    from labeling._store import PairStore

    monkeypatch.setenv("RAGLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    monkeypatch.setenv("ARGILLA_WORKSPACE", unique)
    monkeypatch.setenv("RAGLOOP_ARGILLA_DATASET", unique)
    (tmp_path / "data").mkdir()
    store = PairStore(ChatLog(Settings().chatlog_url))
    for pair in pairs_factory(3):
        store.save_pair(pair)
    runner = CliRunner()
    out = runner.invoke(app, ["push"])
    assert out.exit_code == 0, out.output
    assert "argilla: 3 pairs pushed, 0 failed" in out.output
    backend = ArgillaBackend(argilla_server.url, argilla_server.api_key, workspace=unique, dataset=unique)
    dataset = backend.dataset()
    records = {}
    for name in ("ann", "bob"):
        annotator = ArgillaAnnotator(argilla_server, f"{name}-{unique}", str(dataset.workspace.id))
        records = records or annotator.records(str(dataset.id))
        annotator.answer(records["turn-00000"]["id"], "A", "none")
        annotator.answer(records["turn-00001"]["id"], "B" if name == "ann" else "tie", "other")
    out = runner.invoke(app, ["pull", "--backend", "argilla"])
    assert out.exit_code == 0, out.output
    assert "argilla: 4 answers pulled, 4 stored" in out.output
    out = runner.invoke(app, ["agreement", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)
    assert result["records"] == 2 and result["percent_agreement"] == pytest.approx(0.5)
    monkeypatch.setenv("ARGILLA_API_URL", "http://127.0.0.1:9")  # nothing listens there
    out = runner.invoke(app, ["push"])
    assert (
        out.exit_code == 2 and out.output.startswith("Error: argilla:") and len(out.output.splitlines()) == 1
    )


def test_cli_push_exits_1_naming_the_failed_pairs(
    argilla_server, unique, tmp_path, monkeypatch, pairs_factory
) -> None:
    from typer.testing import CliRunner

    from chatlog import ChatLog
    from labeling._backends_cli import app
    from labeling._store import PairStore

    monkeypatch.setenv("RAGLOOP_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("ARGILLA_API_URL", argilla_server.url)
    monkeypatch.setenv("ARGILLA_API_KEY", argilla_server.api_key)
    monkeypatch.setenv("ARGILLA_WORKSPACE", unique)
    monkeypatch.setenv("RAGLOOP_ARGILLA_DATASET", unique)
    (tmp_path / "data").mkdir()
    store = PairStore(ChatLog(Settings().chatlog_url))
    pairs = pairs_factory(3)
    pairs[2]["judge"] = {**pairs[2]["judge"], "score": 7.0}  # stored, but no backend can show it
    for pair in pairs:
        store.save_pair(pair)
    out = CliRunner().invoke(app, ["push"])
    assert out.exit_code == 1, out.output
    assert "argilla: 2 pairs pushed, 1 failed" in out.output
    errors = [line for line in out.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1
    assert "1 pairs failed" in errors[0] and "turn-00002" in errors[0] and "P(A better)" in errors[0]


def test_pull_skips_labels_of_pairs_the_chat_log_lacks(argilla_server, unique, store, pairs_factory) -> None:
    pairs = pairs_factory(2)
    store.save_pair(pairs[0])  # pairs[1] reached the backend but is not in this chat log
    backend = _backend(argilla_server, unique)
    assert backend.push(pairs) == [True, True]
    dataset = backend.dataset()
    ann = ArgillaAnnotator(argilla_server, f"ann-{unique}", str(dataset.workspace.id))
    records = ann.records(str(dataset.id))
    for pair in pairs:
        ann.answer(records[pair["pair_id"]]["id"], "B", "refusal")
    report = pull_labels(store, backend)
    assert (report.pulled, report.recorded, report.unknown_pairs) == (2, 1, ["turn-00001"])
    assert [r["choice"] for r in store.labels_for("turn-00000")] == ["B"]
