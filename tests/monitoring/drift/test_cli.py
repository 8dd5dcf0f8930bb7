"""`ragloop drift ...` commands, run through the real Typer app against a real chat log."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from ragloop.cli import app

from .conftest import day


def _env(settings):
    return {"RAGLOOP_DATA_DIR": str(settings.data_dir), "RAGLOOP_DRIFT_MIN_ROWS": "20", "HF_HUB_OFFLINE": "1"}


def test_run_prints_decisions_and_fails_on_alarm(drift_settings):
    runner = CliRunner()
    args = ["drift", "run", "-w", day(2), "-r", day(0), "--no-evidently", "--fail-on-alarm"]
    result = runner.invoke(app, args, env=_env(drift_settings))
    assert result.exit_code == 2, result.output
    assert "query_embedding" in result.output and "ALARM" in result.output
    assert "cluster 1:" in result.output

    shown = runner.invoke(app, ["drift", "show", "--limit", "1"], env=_env(drift_settings))
    assert shown.exit_code == 0, shown.output
    rows = [json.loads(line) for line in shown.output.splitlines() if line.startswith("{")]
    assert rows[0]["alarm"] is True and rows[1]["rank"] == 1


def test_saved_reference_from_a_file(drift_settings, drift_corpus, tmp_path):
    questions = tmp_path / "questions.txt"
    questions.write_text("\n".join(drift_corpus.questions[:60]))
    runner = CliRunner()
    built = runner.invoke(
        app, ["drift", "reference", "early", "--from", f"file:{questions}"], env=_env(drift_settings)
    )
    assert built.exit_code == 0, built.output
    assert "saved 60 questions" in built.output
    result = runner.invoke(
        app, ["drift", "run", "-w", day(1), "-r", "saved:early", "--no-evidently"], env=_env(drift_settings)
    )
    assert result.exit_code == 0, result.output
    tested = [line.split()[0] for line in result.output.splitlines() if line.endswith(("ok", "ALARM"))]
    assert tested == ["query_embedding"]  # a question-only reference has no answers or features


def test_reference_from_the_indexed_corpus(drift_settings, drift_corpus):
    """A reference built from the real (embedded) Chroma index before any traffic."""
    from retrieval import open_collection

    settings = drift_settings
    collection = open_collection(settings)
    collection.add(
        ids=[f"c{i}" for i in range(40)],
        embeddings=drift_corpus.query[:40].tolist(),
        documents=drift_corpus.questions[:40],
    )
    result = CliRunner().invoke(app, ["drift", "reference", "corpus", "--from", "index"], env=_env(settings))
    assert result.exit_code == 0, result.output
    assert "saved 40 indexed chunks" in result.output
    from monitoring.drift import load_reference

    ref = load_reference("corpus", settings)
    assert ref.query.shape == (40, 384) and ref.questions[0] in drift_corpus.questions[:40]
