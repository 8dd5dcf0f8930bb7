"""The loop end to end: `ragloop loop` commands, the thumbs-down sink and the Dagster asset."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from chatlog import ChatLog
from chatlog.outbox import OutboxItem
from labeling import PairStore

runner = CliRunner()


def cli(*args: str):  # type: ignore[no-untyped-def]
    from ragloop.cli import app

    return runner.invoke(app, ["loop", *args])


@pytest.fixture()
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "data"
    monkeypatch.setenv("RAGLOOP_DATA_DIR", str(d))
    monkeypatch.delenv("RAGLOOP_DATABASE_URL", raising=False)
    return d


def flagged_log(data_dir: Path) -> tuple[ChatLog, str]:
    log = ChatLog(f"sqlite:///{(data_dir / 'chatlog.db').resolve()}")
    cid = log.create_conversation()
    tid = log.start_turn(
        conversation_id=cid,
        status="ok",
        user_message="Where was Arthur's Magazine published?",
        answer="[1] [2]",
        retrieved=[
            {
                "text": "Arthur's Magazine (1844-1846) was an American literary periodical published in Philadelphia."
            }
        ],
    )
    log.add_feedback(tid, -1, rater="u")
    return log, tid


@pytest.mark.parametrize("group", [[], ["run"], ["select"], ["export"], ["status"]])
def test_help_everywhere(group: list[str]) -> None:
    res = cli(*group, "--help")
    assert res.exit_code == 0 and "Usage" in res.output


def test_user_errors_are_one_line(data_dir: Path) -> None:
    import os
    import subprocess
    import sys

    def ragloop(*args: str) -> subprocess.CompletedProcess[str]:
        # The real entry point: it turns a user error into one line and exit code 2.
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAGLOOP_DATA_DIR": str(data_dir)}
        cmd = [sys.executable, "-m", "ragloop.cli", "loop", *args]
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)

    for args, says in (
        (("export", "--format", "orpo"), "unknown format 'orpo'"),
        (("select", "--since-days", "-1"), "--since-days must be >= 0"),
    ):
        res = ragloop(*args)
        lines = res.stderr.strip().splitlines()
        assert res.returncode == 2, res.stderr
        assert len(lines) == 1 and lines[0].startswith("Error: ") and says in lines[0], res.stderr


def test_select_and_status_on_a_log(data_dir: Path) -> None:
    log, tid = flagged_log(data_dir)
    log.close()
    res = cli("select", "--since-days", "0")
    assert res.exit_code == 0, res.output
    assert tid in res.output and "thumbs_down, empty_answer" in res.output
    res = cli("status")
    assert res.exit_code == 0 and "pairs: 0" in res.output
    res = cli("export", "--format", "dpo", "--out", str(data_dir / "out"))
    assert res.exit_code == 0 and "dpo: 0 train" in res.output
    assert (data_dir / "out" / "README.md").exists()


def test_the_dagster_asset_loads() -> None:
    from labeling import pipeline

    defs = pipeline.defs
    assert defs.resolve_job_def("labeling_job") is not None
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert "labeling_pairs" in keys


@pytest.mark.llm
def test_run_and_the_thumbs_down_sink_with_the_real_llm(
    llm_server: str, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server)
    monkeypatch.setenv("RAGLOOP_MAX_TOKENS", "48")
    log, tid = flagged_log(data_dir)
    log.set_routes({"pair": ["argilla"]})
    # `ragloop loop run`: select -> candidate (real LLM) -> judge (local scorer only: one LLM call) -> save.
    res = cli("run", "--since-days", "0", "--no-llm-judge", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "1 selected" in res.output and "1 pairs saved, 0 errors" in res.output
    store = PairStore(log)
    pair = store.get(tid)
    assert pair is not None and pair["strategy"] == "strict"
    original = pair["response_a"] if pair["a_is_original"] else pair["response_b"]
    assert original == "[1] [2]"
    assert pair["judge"]["preferred"] in ("A", "B", "tie") and pair["judge"]["local_score_a"] is not None
    assert store.selection(tid)["reasons"] == ["thumbs_down", "empty_answer"]

    # The event-driven path: a thumbs-down item for a new turn makes its pair; a second send is a no-op.
    from labeling._loop import LabelingLoop
    from labeling._sink import LoopSink
    from ragloop.settings import get_settings

    second = log.start_turn(
        status="ok",
        user_message="When did Arthur's Magazine run?",
        answer="It ran in 1990.",
        retrieved=pair_ctx(pair),
    )
    log.add_feedback(second, -1, rater="u")
    sink = LoopSink(LabelingLoop.from_settings(get_settings(), log, llm_judge=False))
    item = OutboxItem(
        id=1, sink="loop", kind="feedback", key=f"{second}:u", payload={"turn_id": second, "value": -1}
    )
    up = OutboxItem(id=2, sink="loop", kind="feedback", key=f"{tid}:v", payload={"turn_id": tid, "value": 1})
    assert list(sink.send([item, up])) == [True, True]
    assert store.get(second) is not None
    assert list(sink.send([item])) == [True] and store.count_pairs() == 2
    bad = OutboxItem(
        id=3, sink="loop", kind="feedback", key="x:u", payload={"turn_id": "missing", "value": -1}
    )
    assert list(sink.send([bad])) == [False]  # never raises; the outbox retries
    log.close()


def pair_ctx(pair: dict) -> list[dict]:
    return [{"text": t} for t in pair["context"]]
