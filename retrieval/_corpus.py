"""The default corpus: the Python documentation, and the Python FAQ as question/answer pairs.

``python-docs`` is the reStructuredText source of the Debian package ``python3.11-doc``
(``apt-get download`` + ``dpkg -x``: no root, no install). Where apt cannot download it, the
reference topics of ``pydoc_data.topics`` (shipped with every CPython) are written out as text
files instead.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from ragloop.settings import Settings
from retrieval._rst import clean_rst, split_rst_sections

log = logging.getLogger(__name__)

DEBIAN_PACKAGE = "python3.11-doc"
#: Parts of the documentation that answer user questions (not whatsnew, C API, distutils...).
DOC_PARTS = ("tutorial", "howto", "faq", "library", "reference", "glossary.rst.txt")
_SOURCES = Path("usr/share/doc/python3.11/html/_sources")
_DONE = ".complete"
# The FAQ's index page lists the other pages; it holds no questions.
_FAQ_SKIP = {"index.rst.txt"}


@dataclass(frozen=True)
class FaqItem:
    """One question of the Python FAQ, its answer (plain text) and the FAQ page it comes from."""

    question: str
    answer: str
    source: str


def corpora_dir(settings: Settings) -> Path:
    """Where corpora are cached (shared by every checkout)."""
    return settings.cache_dir / "corpora"


def fetch_python_docs(settings: Settings, progress: bool = True) -> Path | None:
    """The python3.11-doc rst sources in the cache, downloading them once; None if apt cannot."""
    target = corpora_dir(settings) / "python-docs"
    if (target / _DONE).exists():
        return target
    with tempfile.TemporaryDirectory(prefix="ragloop-pydoc-") as tmp:
        work = Path(tmp)
        log.info("downloading Debian package %s", DEBIAN_PACKAGE)
        try:
            argv = ["apt-get", "download", DEBIAN_PACKAGE]
            subprocess.run(argv, cwd=work, check=True, capture_output=True, timeout=300)
            debs = sorted(work.glob(f"{DEBIAN_PACKAGE}_*.deb"))
            if not debs:
                raise FileNotFoundError("apt-get download produced no .deb")
            subprocess.run(["dpkg", "-x", str(debs[0]), str(work / "x")], check=True, capture_output=True)
        except (OSError, subprocess.SubprocessError) as exc:
            detail = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")[-300:]
            log.warning("cannot download %s (%s %s)", DEBIAN_PACKAGE, exc, detail)
            return None
        _copy_parts(work / "x" / _SOURCES, target, progress)
        (target / _DONE).write_text(debs[0].name + "\n")
    return target


def _copy_parts(sources: Path, target: Path, progress: bool) -> None:
    """Copy the chosen documentation parts' ``.rst.txt`` files, replacing a partial copy."""
    if target.exists():
        shutil.rmtree(target)
    files = [
        f
        for part in DOC_PARTS
        for f in ([sources / part] if part.endswith(".txt") else sorted((sources / part).rglob("*.rst.txt")))
    ]
    for f in tqdm(files, desc="copying docs", unit="file", disable=not progress):
        dest = target / f.relative_to(sources)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, dest)
    log.info("python docs: %d files in %s", len(files), target)


def write_pydoc_topics(settings: Settings) -> Path:
    """Write ``pydoc_data.topics`` (reference topics shipped with CPython) as text files, once."""
    from pydoc_data.topics import topics

    target = corpora_dir(settings) / "pydoc-topics"
    if (target / _DONE).exists():
        return target
    target.mkdir(parents=True, exist_ok=True)
    for name, text in topics.items():
        # Plain text: the file name (the topic) becomes every chunk's title at ingest.
        (target / f"{name}.txt").write_text(text, encoding="utf-8")
    (target / _DONE).write_text(f"{len(topics)} topics\n")
    log.info("pydoc topics: %d files in %s", len(topics), target)
    return target


def fetch_corpus(settings: Settings, progress: bool = True) -> Path:
    """The folder of the corpus ``settings.corpus`` names, fetched into the cache if needed.

    'python-docs' falls back to 'pydoc-topics' when the Debian package cannot be downloaded; any
    other value is a folder path, returned as it is (it must exist).
    """
    corpus = settings.corpus
    if corpus == "python-docs":
        found = fetch_python_docs(settings, progress)
        if found is not None:
            return found
        log.warning("falling back to the pydoc topics corpus")
        return write_pydoc_topics(settings)
    if corpus == "pydoc-topics":
        return write_pydoc_topics(settings)
    folder = Path(corpus).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"RAGLOOP_CORPUS={corpus!r} is neither a known corpus nor a folder")
    return folder


def parse_faq(text: str, source: str) -> list[FaqItem]:
    """The questions of one FAQ page: every section below the page title that has an answer."""
    items = []
    for level, title, body in split_rst_sections(text):
        answer = clean_rst(body)
        # Level 1 is the page title; category headings have no answer text of their own.
        if level >= 2 and answer:
            items.append(FaqItem(question=clean_rst(title), answer=answer, source=source))
    return items


def load_python_faq(settings: Settings) -> list[FaqItem]:
    """All question/answer pairs of the Python FAQ (python3.11-doc), fetching the docs if needed.

    Raises:
        RuntimeError: When the Debian documentation package cannot be downloaded.
    """
    docs = fetch_python_docs(settings, progress=False)
    if docs is None:
        raise RuntimeError(f"cannot download {DEBIAN_PACKAGE} (apt-get download), which holds the Python FAQ")
    items: list[FaqItem] = []
    for path in sorted((docs / "faq").glob("*.rst.txt")):
        if path.name not in _FAQ_SKIP:
            items.extend(parse_faq(path.read_text(encoding="utf-8"), str(path)))
    return items
