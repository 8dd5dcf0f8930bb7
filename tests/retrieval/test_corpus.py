"""The default corpus, fetched for real (apt-get download) into the shared cache, once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ragloop.settings import Settings
from retrieval import fetch_corpus, load_python_faq
from retrieval._corpus import parse_faq


def test_python_docs_fetched_once() -> None:
    settings = Settings(corpus="python-docs")
    root = fetch_corpus(settings, progress=False)
    assert root == settings.cache_dir / "corpora" / "python-docs"
    assert {p.name for p in root.iterdir() if p.is_dir()} == {
        "tutorial",
        "howto",
        "faq",
        "library",
        "reference",
    }
    assert (root / "glossary.rst.txt").is_file() and (root / "library" / "os.rst.txt").is_file()
    assert not list(root.glob("whatsnew*")) and not (root / "c-api").exists()
    marker = root / ".complete"
    stamp = marker.stat().st_mtime_ns
    start = time.perf_counter()
    assert fetch_corpus(settings, progress=False) == root
    assert time.perf_counter() - start < 1.0 and marker.stat().st_mtime_ns == stamp


def test_python_faq() -> None:
    items = load_python_faq(Settings())
    assert len(items) >= 170
    assert len({i.question for i in items}) >= 170
    assert all(i.question and i.answer and i.source.endswith(".rst.txt") for i in items)
    by_q = {i.question: i for i in items}
    copy = by_q["How do I copy a file?"]
    assert (
        "shutil" in copy.answer and ":mod:" not in copy.answer and Path(copy.source).name == "library.rst.txt"
    )


def test_parse_faq_known_values() -> None:
    page = "=====\nMy FAQ\n=====\n\nCategory\n========\n\nWhy?\n----\n\nBecause :func:`len` says so.\n\nHow?\n----\n\n"
    items = parse_faq(page, "x.rst")
    assert [(i.question, i.answer, i.source) for i in items] == [("Why?", "Because len says so.", "x.rst")]


def test_pydoc_topics(tmp_path: Path) -> None:
    settings = Settings(corpus="pydoc-topics", cache_dir=tmp_path)
    root = fetch_corpus(settings, progress=False)
    files = sorted(root.glob("*.txt"))
    assert root == tmp_path / "corpora" / "pydoc-topics" and len(files) >= 70
    assert "for" in (root / "for.txt").read_text()


def test_python_docs_fall_back_to_pydoc_topics_without_apt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools-here"))  # apt-get and dpkg cannot be found
    root = fetch_corpus(Settings(corpus="python-docs", cache_dir=tmp_path), progress=False)
    assert root.name == "pydoc-topics" and len(list(root.glob("*.txt"))) >= 70


def test_folder_corpus(tmp_path: Path) -> None:
    assert fetch_corpus(Settings(corpus=str(tmp_path))) == tmp_path
    with pytest.raises(FileNotFoundError, match="RAGLOOP_CORPUS"):
        fetch_corpus(Settings(corpus=str(tmp_path / "nope")))
