"""`ragloop ingest` and `ragloop corpus ...` through the real CLI app."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from ragloop.cli import app
from ragloop.errors import UserError, user_message
from retrieval import Embedder

runner = CliRunner()


@pytest.fixture()
def data_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder: Embedder) -> Path:
    """Point the CLI's Settings() at a private data dir (the embedder fixture preloads the model)."""
    monkeypatch.setenv("RAGLOOP_DATA_DIR", str(tmp_path / "data"))
    return tmp_path


def test_ingest_exit_codes(data_env: Path) -> None:
    docs = data_env / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nThe letter A is the first letter of the alphabet.\n")
    ok = runner.invoke(app, ["ingest", "--quiet", str(docs)])
    assert ok.exit_code == 0, ok.output
    assert "1 new or changed" in ok.output and "1 added" in ok.output

    again = runner.invoke(app, ["ingest", "-q", str(docs)])
    assert again.exit_code == 0 and "0 added" in again.output and "1 unchanged" in again.output

    (docs / "b.pdf").write_bytes(b"not a pdf")
    partial = runner.invoke(app, ["ingest", "-q", str(docs)])
    assert partial.exit_code == 1 and "b.pdf" in partial.output

    # Nothing that exists: a user error (``ragloop.cli.main`` prints it as one line, exit code 2).
    nothing = runner.invoke(app, ["ingest", "-q", str(data_env / "missing")])
    assert isinstance(nothing.exception, UserError) and "no such file or folder" in str(nothing.exception)
    assert user_message(nothing.exception) == str(nothing.exception)


def test_corpus_commands(data_env: Path) -> None:
    faq = runner.invoke(app, ["corpus", "faq", "--sample", "1"])
    assert faq.exit_code == 0 and "FAQ questions" in faq.output
    assert int(faq.output.split()[0]) >= 170
    fetched = runner.invoke(app, ["corpus", "fetch"])
    assert fetched.exit_code == 0 and fetched.output.strip().endswith("python-docs")
    assert runner.invoke(app, ["corpus", "--help"]).exit_code == 0


def test_corpus_index_is_incremental(data_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    corpus = data_env / "corpus"
    corpus.mkdir()
    (corpus / "sets.md").write_text("# Sets\n\nA set holds unique items; set.add(x) inserts one.\n")
    monkeypatch.setenv("RAGLOOP_CORPUS", str(corpus))
    first = runner.invoke(app, ["corpus", "index", "-q"])
    assert first.exit_code == 0 and "1 added" in first.output, first.output
    second = runner.invoke(app, ["corpus", "index", "-q"])
    assert second.exit_code == 0 and "0 added" in second.output and "1 unchanged" in second.output
