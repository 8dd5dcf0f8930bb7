"""How a document is named to users: its title and its path relative to the corpus root.

A chunk's ``source`` metadata stays the file's absolute path: it is the document's identity in the
index (chunk ids, incremental ingestion, removal). Users never see it. Ingestion also stores:

- ``root``: the name of the folder the document was ingested from (``python-docs``, ``uploads``);
- ``path``: the document's path relative to that folder (``faq/programming.rst.txt``);
- ``doc_title``: the document's title (its first heading, the HTML ``<title>``, the file name).

``root/path`` is the document's public id (``doc_id``): the documents route serves
``/documents/<doc_id>``. Indexes built before these fields existed are mapped on the fly by
:func:`describe` from the known roots (the default corpus, the uploads folder), so a cache path is
never shown; the next ``ragloop run`` stores them (a metadata update, no re-embedding).

Pure functions apart from :func:`known_roots`, which reads the settings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ragloop.settings import Settings

#: Name of the folder (under the data dir) holding documents uploaded from the UI.
UPLOADS = "uploads"
#: The prefix of the route that serves indexed documents.
DOCUMENTS_ROUTE = "/documents"


@dataclass(frozen=True)
class SourceRef:
    """A document as users see it: its title, its id ``root/path`` and the URL that serves it."""

    title: str
    root: str
    path: str

    @property
    def doc_id(self) -> str:
        """``root/path``: unique among the indexed documents, safe in a URL path."""
        return f"{self.root}/{self.path}" if self.root else self.path

    @property
    def url(self) -> str:
        """The app route serving the document read-only."""
        from urllib.parse import quote

        return f"{DOCUMENTS_ROUTE}/{quote(self.doc_id)}"

    @property
    def label(self) -> str:
        """``Title (root/path)``, or the id alone when the title is unknown."""
        return f"{self.title} ({self.doc_id})" if self.title else self.doc_id


def uploads_dir(settings: Settings) -> Path:
    """Where uploaded documents are kept (and ingested from): ``DATA_DIR/uploads``."""
    return (settings.data_dir / UPLOADS).resolve()


def known_roots(settings: Settings) -> dict[str, Path]:
    """Root name -> folder, for mapping sources of indexes that predate the ``root`` metadata."""
    from retrieval._corpus import corpora_dir

    corpora = corpora_dir(settings)
    roots = {name: (corpora / name).resolve() for name in ("python-docs", "pydoc-topics")}
    if corpora.is_dir():
        roots.update({p.name: p.resolve() for p in corpora.iterdir() if p.is_dir()})
    roots[UPLOADS] = uploads_dir(settings)
    if settings.corpus not in ("python-docs", "pydoc-topics"):
        folder = Path(settings.corpus).expanduser().resolve()
        roots[folder.name] = folder
    return roots


def locate(file: Path, roots: list[Path]) -> tuple[str, str]:
    """``(root name, relative posix path)`` of ``file`` under the deepest of ``roots`` holding it.

    A file under none of them (an explicitly named file) has its parent folder as root.
    """
    file = Path(os.path.abspath(file))
    best: Path | None = None
    for root in roots:
        root = Path(os.path.abspath(root))
        if root != file and file.is_relative_to(root) and (best is None or len(root.parts) > len(best.parts)):
            best = root
    base = best or file.parent
    return base.name, file.relative_to(base).as_posix()


def doc_title(chunk_title: str, doc_title_hint: str, file_name: str) -> str:
    """The document's title: the loader's, else the chunk title's first heading, else the file name."""
    from retrieval._chunking import TITLE_SEP

    if doc_title_hint:
        return doc_title_hint
    if chunk_title:
        return chunk_title.split(TITLE_SEP, 1)[0]
    return file_name.split(".")[0]


def describe(meta: dict[str, Any], roots: dict[str, Path] | None = None) -> SourceRef:
    """The :class:`SourceRef` of a chunk's metadata, mapping old (absolute-only) sources via ``roots``.

    Args:
        meta: chunk metadata (``source``, ``title``; ``root``, ``path``, ``doc_title`` when stored).
        roots: :func:`known_roots`, for metadata without ``root``/``path``.
    """
    title = str(meta.get("doc_title") or "") or doc_title(str(meta.get("title") or ""), "", "")
    if meta.get("root") and meta.get("path"):
        return SourceRef(title, str(meta["root"]), str(meta["path"]))
    source = str(meta.get("source") or "")
    for name, folder in (roots or {}).items():
        if source.startswith(str(folder) + os.sep):
            return SourceRef(title, name, PurePosixPath(Path(source).relative_to(folder)).as_posix())
    return SourceRef(title, "", Path(source).name)


def split_doc_id(doc_id: str) -> tuple[str, str] | None:
    """``(root, path)`` of a requested document id, or None when it is not a clean relative path.

    Refused: empty parts, ``.`` and ``..``, absolute paths, backslashes and NUL bytes.
    """
    if not doc_id or "\x00" in doc_id or "\\" in doc_id or doc_id.startswith("/"):
        return None
    parts = doc_id.split("/")
    if len(parts) < 2 or any(p in ("", ".", "..") for p in parts):
        return None
    return parts[0], "/".join(parts[1:])


def describe_source(meta: dict[str, Any], settings: Settings | None = None) -> SourceRef:
    """How users see a hit's document: :func:`describe` with the settings' :func:`known_roots`.

    Args:
        meta: a hit's metadata (``RetrievedChunk.metadata``, a ``Source``'s fields as a dict).
        settings: the app's settings; without them old absolute sources show their file name only.

    Returns:
        The :class:`SourceRef` (``label`` "Title (root/path)", ``url`` "/documents/root/path").
    """
    return describe(meta, known_roots(settings) if settings is not None else None)
