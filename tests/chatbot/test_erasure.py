"""The deletion message names every copy the app could not remove (it said "Nothing of it is left").

Known inputs, known sentences: a purge's counts and the settings that say where data went.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from chatbot._erasure import deletion_report
from ragloop.settings import Settings


def _settings(tmp_path: Path, **kw: Any) -> Settings:
    base: dict[str, Any] = {"data_dir": tmp_path, "collector": True, "otlp_endpoint": None}
    base.update(kw)
    return Settings(**base)


def test_phoenix_erasure_on_sqlite_keeps_nothing_else(tmp_path: Path) -> None:
    counts = {"turns": 2, "feedback": 1, "traces": 2, "erase:phoenix": 1, "sqlite_scrubbed": 1}
    report = deletion_report(counts, _settings(tmp_path, phoenix_url="http://127.0.0.1:6006"))
    text = report.message()
    assert text.startswith(
        "Conversation deleted: 2 questions and answers removed from the chat log, with 1 feedback"
    )
    assert "overwritten in the chat log's database and WAL files" in text
    assert "being deleted from Phoenix" in text and "Phoenix's own SQLite files (its WAL) keep" in text
    assert report.kept == [] and "No other copy is kept" in text
    assert "Nothing of it is left" not in text


def test_copies_the_app_cannot_remove_are_named(tmp_path: Path) -> None:
    counts = {"turns": 1, "traces": 1, "sent:langsmith": 2, "sent:argilla": 1, "sqlite_scrubbed": 0}
    settings = _settings(tmp_path, otlp_endpoint="http://signoz:4317")
    report = deletion_report(counts, settings)
    kept = " ".join(report.kept)
    assert "WAL file" in kept  # the checkpoint was blocked by a reader
    assert "sent to http://signoz:4317" in kept and "with the questions and answers" in kept
    assert (
        "2 item(s) already delivered to LangSmith" in kept
        and "1 item(s) already delivered to Argilla" in kept
    )
    assert "No other copy" not in report.message() and "Kept elsewhere:" in report.message()


def test_postgres_and_collector_without_a_trace_store(tmp_path: Path) -> None:
    counts = {"turns": 1, "traces": 1}  # no sqlite_scrubbed: a PostgreSQL chat log
    report = deletion_report(counts, _settings(tmp_path, trace_content=False))
    kept = " ".join(report.kept)
    assert "VACUUM" in kept and "PostgreSQL" in kept
    assert "local collector" in kept and "ids and timings, no text" in kept and "RAGLOOP_PHOENIX_URL" in kept


def test_no_traces_exported_nothing_said_about_them(tmp_path: Path) -> None:
    report = deletion_report(
        {"turns": 1, "traces": 1, "sqlite_scrubbed": 1}, _settings(tmp_path, collector=False)
    )
    assert report.pending == [] and report.kept == []
    assert report.message().endswith("No other copy is kept by the app's stores.")
