"""The BM25 adapter (``bm25s``): tokenisation that keeps identifiers, a persisted index, catch-up.

Tokenisation (:func:`tokenize`, pure apart from the PyStemmer call): a "word" is a run of word
characters joined by ``.``, ``-``, ``:`` or ``/`` (``http.postBuffer``, ``os.path.join``,
``utf-8``, ``std::vector``). A compound word is kept whole, lower-cased and unstemmed, as an
exact token, beside its parts: the separated pieces, snake_case pieces and camelCase pieces, each
lower-cased and Snowball-stemmed (English stop words dropped). So ``http.postBuffer`` gives
``http.postbuffer``, ``postbuffer``, ``http``, ``post``, ``buffer``: a question naming the key
matches the page that defines it on a rare token, and one about "post buffers" still matches.

A chunk is indexed with its title path (:func:`indexed_text`), as the embedder sees it: a
Markdown section's heading (``## http.postBuffer``) is its title, not part of its text.

The index (:class:`Bm25Index`) is one ``.npz`` file (written atomically) holding the chunk ids,
each chunk's token ids, the vocabulary and the collection's index version and chunk count it
reflects. The bm25s score matrix is rebuilt from the token ids on load and after each change
(~1 s per 15k chunks); tokenising, the slow part, is done once per chunk. Chroma stays the
source of truth: :func:`catch_up` brings the index to the collection's chunk set (only new
chunks are fetched and tokenised) whenever the version or the count differ.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: Bump when :func:`tokenize` or :func:`indexed_text` change: an index of another version is rebuilt.
TOKENIZER_VERSION = "2"
#: BM25 parameters (Lucene's defaults, as bm25s uses them).
K1, B = 1.5, 0.75
_FILE = "bm25.npz"
_PAGE = 5000

_WORD = re.compile(r"\w+(?:[.\-:/]+\w+)*")
_SEP = re.compile(r"[.\-:/]+")
_PIECE = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+|[^\W\d_]+")


def _stemmer() -> Callable[[str], str]:
    try:
        import Stemmer
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise RuntimeError("BM25 needs PyStemmer: pip install PyStemmer") from exc
    stem = Stemmer.Stemmer("english")
    return lru_cache(maxsize=200_000)(stem.stemWord)


_stem: Callable[[str], str] | None = None


def _stop_words() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


_STOP: frozenset[str] | None = None


def _pieces(word: str) -> list[str]:
    """Lower-cased plain pieces of a word: split on separators, underscores and camelCase."""
    return [p.lower() for part in _SEP.split(word) for sub in part.split("_") for p in _PIECE.findall(sub)]


def _tokens(text: str) -> tuple[list[str], list[str]]:
    """All tokens of ``text``, and the exact (compound, whole) ones among them."""
    global _stem, _STOP
    if _stem is None or _STOP is None:
        _stem, _STOP = _stemmer(), _stop_words()
    out: list[str] = []
    exact: list[str] = []
    for match in _WORD.finditer(text):
        word = match.group()
        pieces = _pieces(word)
        lower = word.lower()
        if pieces != [lower]:  # compound: keep it whole, and its snake/camel parts whole too
            whole = [lower] + [
                p.lower() for p in _SEP.split(word) if p.lower() != lower and _pieces(p) != [p]
            ]
            out.extend(whole)
            exact.extend(whole)
        out.extend(_stem(p) for p in pieces if p not in _STOP and (len(p) > 1 or p.isdigit()))
    return out, exact


def tokenize(text: str) -> list[str]:
    """BM25 tokens of ``text``: exact compound identifiers plus their stemmed pieces.

    Example: ``"Set http.postBuffer"`` -> ``["set", "http.postbuffer", "postbuffer", "http",
    "post", "buffer"]``; ``"E0425"`` -> ``["e0425", "0425"]``.
    """
    return _tokens(text)[0]


def exact_tokens(text: str) -> list[str]:
    """The compound identifiers of ``text``, whole and lower-cased (``["http.postbuffer", "postbuffer"]``)."""
    return _tokens(text)[1]


def indexed_text(title: str, text: str) -> str:
    """What BM25 indexes for a chunk: its title path and its text (as the embedder sees it)."""
    return f"{title}\n\n{text}" if title else text


class Bm25Index:
    """A BM25 index over chunk ids, kept as token ids so it can change one chunk at a time.

    Not thread-safe by itself: :class:`retrieval.Retriever` serialises updates with its lock.
    """

    def __init__(self, path: Path) -> None:
        """An empty index that saves to ``path`` (a ``bm25.npz`` file)."""
        self.path = path
        self.ids: list[str] = []
        self.tokens: list[np.ndarray] = []
        self.vocab: dict[str, int] = {}
        self.version = ""
        self._model: Any = None
        # What searches read: the score model and the ids it was built over, swapped as one object
        # when the build is done, so a search during an update never maps scores to another id list.
        # (Tokenising an update adds to the vocabulary before the new model exists: ids past the
        # snapshot's vocabulary size are tokens the model does not know yet.)
        self._snapshot: tuple[Any, list[str], int] = (None, [], 0)
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """Chunks in the index."""
        return len(self.ids)

    @classmethod
    def load(cls, path: Path) -> Bm25Index:
        """The index saved at ``path``; an empty one when missing, unreadable or of another tokeniser."""
        index = cls(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("tokenizer") != TOKENIZER_VERSION:
                    log.info("BM25 index %s has tokenizer %s: rebuilding", path, meta.get("tokenizer"))
                    return index
                offsets = data["offsets"]
                flat = data["flat"]
                index.ids = data["ids"].tolist()
                index.tokens = [flat[offsets[i] : offsets[i + 1]] for i in range(len(index.ids))]
                index.vocab = {t: i for i, t in enumerate(data["vocab"].tolist())}
                index.version = str(meta.get("version", ""))
        except FileNotFoundError:
            return index
        except (OSError, ValueError, KeyError) as exc:
            log.warning("BM25 index %s unreadable (%s): rebuilding it", path, exc)
            return cls(path)
        index._build()
        return index

    def save(self) -> None:
        """Write the index atomically (a reader sees the old file or the new one).

        Several app processes may share the data dir (scale-out) and save at the same moment: each
        writes a temporary file of its own, and the last rename wins with a whole file.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lengths = np.fromiter((len(t) for t in self.tokens), dtype=np.int64, count=len(self.tokens))
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        flat = np.concatenate(self.tokens).astype(np.int32) if self.tokens else np.zeros(0, np.int32)
        vocab = sorted(self.vocab, key=self.vocab.__getitem__)
        meta = {"tokenizer": TOKENIZER_VERSION, "version": self.version, "count": self.count}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.npz")
        try:
            np.savez(
                tmp,
                ids=np.asarray(self.ids, dtype=str),
                offsets=offsets,
                flat=flat,
                vocab=np.asarray(vocab, dtype=str),
                meta=np.asarray(json.dumps(meta)),
            )
            tmp.replace(self.path)
        finally:
            tmp.unlink(missing_ok=True)  # a failed write leaves nothing behind

    def update(self, add: dict[str, str], remove: Iterable[str], version: str) -> None:
        """Add chunks (id -> text, replacing a same id), remove ids, record ``version``; rebuild BM25."""
        drop = set(remove) | set(add)
        keep = [i for i, cid in enumerate(self.ids) if cid not in drop]
        ids = [self.ids[i] for i in keep]
        tokens = [self.tokens[i] for i in keep]
        for cid, text in add.items():
            ids.append(cid)
            tokens.append(np.fromiter((self._token_id(t) for t in tokenize(text)), dtype=np.int32))
        with self._lock:
            self.ids, self.tokens, self.version = ids, tokens, version
            self._build()

    def _token_id(self, token: str) -> int:
        return self.vocab.setdefault(token, len(self.vocab))

    def _build(self) -> None:
        """(Re)build the bm25s score matrix from the token ids."""
        import bm25s

        if not self.ids:
            self._model = None
            self._snapshot = (None, [], 0)
            return
        model = bm25s.BM25(k1=K1, b=B, method="lucene")
        ids, known = list(self.ids), len(self.vocab)
        # A copy of the vocabulary: bm25s adds its empty-query token to the dict it is given.
        model.index(([t.tolist() for t in self.tokens], dict(self.vocab)), show_progress=False)
        self._model = model
        self._snapshot = (model, ids, known)

    def search(self, query: str, n: int) -> list[tuple[str, float]]:
        """The ``n`` best chunks for ``query`` as ``(chunk id, BM25 score)``, best first; no zero scores."""
        return self.rank(query, n)[0]

    def rank(self, query: str, n: int) -> tuple[list[tuple[str, float]], list[str]]:
        """The BM25 ranking of ``query`` and its exact-identifier ranking, ``n`` hits each.

        The second list holds the chunks that contain the query's compound identifiers
        (:func:`exact_tokens`), most distinct identifiers first, then by BM25 score; it is empty
        when the query names none. RRF gives it a vote of its own, so a chunk that defines
        ``http.postBuffer`` is not outvoted by chunks both rankers find about ``http.client``.
        """
        model, ids, known = self._snapshot  # one read: an update in another thread swaps it whole
        if model is None or n <= 0:
            return [], []
        tokens, exact = _tokens(query)
        vocab = self.vocab
        token_ids = [vocab[t] for t in dict.fromkeys(tokens) if vocab.get(t, known) < known]
        if not token_ids:
            return [], []
        scores = model.get_scores_from_ids(token_ids)
        m = min(n, len(scores))
        top = np.argpartition(-scores, m - 1)[:m]
        top = top[np.argsort(-scores[top], kind="stable")]
        ranked = [(ids[i], float(scores[i])) for i in top if scores[i] > 0]
        return ranked, self._exact(
            model, ids, [vocab[t] for t in exact if vocab.get(t, known) < known], scores, n
        )

    @staticmethod
    def _exact(model: Any, ids: list[str], exact: list[int], scores: np.ndarray, n: int) -> list[str]:
        indptr, indices = model.scores["indptr"], model.scores["indices"]
        matched = np.zeros(len(scores), dtype=np.int32)
        for tid in set(exact):
            matched[indices[indptr[tid] : indptr[tid + 1]]] += 1  # the documents holding this token
        docs = np.flatnonzero(matched)
        order = np.lexsort((-scores[docs], -matched[docs]))[:n]
        return [ids[i] for i in docs[order]]


def all_ids(collection: Any) -> list[str]:
    """Every chunk id in a Chroma collection (paged)."""
    ids: list[str] = []
    offset = 0
    while True:
        page = collection.get(include=[], limit=_PAGE, offset=offset)
        ids.extend(page["ids"])
        if len(page["ids"]) < _PAGE:
            return ids
        offset += _PAGE


def catch_up(index: Bm25Index, collection: Any, version: str, progress: bool = False) -> bool:
    """Bring ``index`` to the chunk set of ``collection`` (whose index version is ``version``).

    Only chunks the index lacks are fetched and tokenised; chunks gone from the collection are
    dropped. The index is saved when it changed.

    Returns:
        True when the index changed.
    """
    if index.version == version and index.count == collection.count() and version:
        return False
    current = all_ids(collection)
    have = set(index.ids)
    new = [cid for cid in current if cid not in have]
    gone = have - set(current)
    texts: dict[str, str] = {}
    for lo in range(0, len(new), _PAGE):
        page = collection.get(ids=new[lo : lo + _PAGE], include=["documents", "metadatas"])
        for cid, doc, meta in zip(page["ids"], page["documents"], page["metadatas"], strict=True):
            texts[cid] = indexed_text(str((meta or {}).get("title") or ""), doc or "")
    if not texts and not gone and index.version == version:
        return False
    log.info("BM25 index catch-up: %d chunks added, %d removed (version %s)", len(texts), len(gone), version)
    index.update(texts, gone, version)
    index.save()
    return True
