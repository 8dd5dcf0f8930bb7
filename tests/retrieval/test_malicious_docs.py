"""Malicious documents at ingestion: each is refused or contained with a clear reason (issue 12).

Fixtures: ``tests/retrieval/malicious/`` (small, written by its ``make_fixtures.py``); the large
ones are made in a temp folder by the same script.
"""

from __future__ import annotations

import importlib.util
import shutil
import time
from pathlib import Path
from types import ModuleType

import pytest

import retrieval
from ragloop.settings import Settings
from retrieval import Embedder, LoadError, load_document
from retrieval._guard import Limits
from retrieval._loaders import decode_text

HERE = Path(__file__).resolve().parent / "malicious"


def _fixtures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_fixtures", HERE / "make_fixtures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_fixtures_are_what_the_script_writes() -> None:
    for name, data in _fixtures().small().items():
        assert (HERE / name).read_bytes() == data, f"{name}: run make_fixtures.py"


def test_windows_1252_text_keeps_its_euro_sign() -> None:
    text = decode_text((HERE / "cp1252.md").read_bytes())
    assert "2 €" in text and "120 €" in text and "café" in text and "coûte" in text
    assert "\x80" not in text


def test_cyrillic_windows_1251_is_detected_too() -> None:
    text = "# Файлы\n\nЧтобы скопировать файл, вызовите shutil.copy: он копирует данные и права.\n"
    assert decode_text(text.encode("cp1251")) == text


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("junk.md", "binary data, not text"),
        ("archive.md", "ZIP archive"),
        ("archive.zip", "ZIP archive"),
        ("nested.pdf", "nested too deeply"),
        ("pages-40.pdf", "40 pages, over the limit of 10"),
    ],
)
def test_each_bad_file_is_refused_with_its_reason(name: str, reason: str) -> None:
    started = time.monotonic()
    with pytest.raises(LoadError, match=reason):
        load_document(HERE / name, Limits(max_pdf_pages=10))
    assert time.monotonic() - started < 10


def test_a_pdf_bomb_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    import resource

    paths = _fixtures().write_large(tmp_path, max_file_mb=0.01)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(LoadError, match="decompression limit"):
        load_document(paths["pdf_bomb_inflate"])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 400, grown_mb  # the stream inflates to 260 MB: pypdf stops it at its limit


def test_a_file_over_the_size_cap_is_refused_unread(tmp_path: Path) -> None:
    paths = _fixtures().write_large(tmp_path, max_file_mb=0.01)
    with pytest.raises(LoadError, match="over the 10,485-byte limit"):
        load_document(paths["huge"], Limits(max_bytes=int(0.01 * 2**20)))


@pytest.mark.timeout(300)
def test_ingest_refuses_every_kind_and_indexes_the_rest(tmp_path: Path, embedder: Embedder) -> None:
    folder, outside = tmp_path / "docs", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe outside password is hunter2.\n")
    (folder / "good.md").write_text("# Copying\n\nUse shutil.copy to copy a file.\n")
    for name in ("cp1252.md", "junk.md", "archive.md", "archive.zip", "nested.pdf", "pages-40.pdf"):
        shutil.copy(HERE / name, folder / name)
    (folder / "link.md").symlink_to(outside / "secret.md")
    (folder / "linkdir").symlink_to(outside, target_is_directory=True)
    (folder / "inside-link.md").symlink_to(folder / "good.md")
    large = _fixtures().write_large(tmp_path / "large", max_file_mb=1.0)
    for path in large.values():
        shutil.move(path, folder / path.name)
    settings = Settings(
        data_dir=tmp_path / "data",
        collection="malicious",
        ingest_max_file_mb=1.0,
        ingest_max_pdf_pages=10,
    )
    started = time.monotonic()
    report = retrieval.ingest([folder], settings, progress=False, embedder=embedder)
    assert time.monotonic() - started < 120
    failed = {Path(p).name: reason for p, reason in report.files_failed}
    assert "binary data" in failed["junk.md"]
    assert "ZIP archive" in failed["archive.md"]
    assert "archive" in failed["archive.zip"]
    assert "nested too deeply" in failed["nested.pdf"]
    assert "40 pages" in failed["pages-40.pdf"]
    assert "decompression limit" in failed["bomb.pdf"]
    assert "byte limit" in failed["huge.md"]
    assert "outside the folder" in failed["link.md"] and "outside the folder" in failed["linkdir"]
    assert set(failed) == {
        "junk.md", "archive.md", "archive.zip", "nested.pdf", "pages-40.pdf", "bomb.pdf", "huge.md",
        "link.md", "linkdir",
    }  # fmt: skip
    docs = retrieval.open_collection(settings).get(include=["documents"])["documents"]
    text = "\n".join(docs)
    assert "120 €" in text and "\x80" not in text
    assert "shutil.copy" in text and "hunter2" not in text
