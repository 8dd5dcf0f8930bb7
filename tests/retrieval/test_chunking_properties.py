"""Property-based tests of chunking (hypothesis): nothing lost or reordered, sizes, headings, idempotence."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from retrieval import split_document, split_text
from retrieval._chunking import TITLE_SEP, Chunk

FAST = settings(max_examples=150, deadline=None)
#: Text made of words, spaces, line and paragraph breaks and sentence ends: every separator used.
_TEXT = st.text(alphabet=st.sampled_from("ab c.\n\t"), max_size=400)
_SIZE = st.integers(min_value=1, max_value=120)


def _squeezed(text: str) -> str:
    return re.sub(r"\s+", "", text)


@FAST
@given(text=_TEXT, size=_SIZE, overlap=st.integers(0, 150))
def test_chunks_are_stripped_non_empty_and_within_the_size(text: str, size: int, overlap: int) -> None:
    chunks = split_text(text, size, overlap)
    assert all(c and c == c.strip() and len(c) <= size for c in chunks)
    assert bool(chunks) == bool(text.strip())


@FAST
@given(text=_TEXT, size=_SIZE)
def test_without_overlap_nothing_is_lost_added_or_reordered(text: str, size: int) -> None:
    # Chunks are stripped, so only whitespace at the cuts may go; every other character stays in order.
    assert "".join(_squeezed(c) for c in split_text(text, size, 0)) == _squeezed(text)


@FAST
@given(text=_TEXT, size=st.integers(10, 120), overlap=st.integers(1, 60))
def test_with_overlap_every_chunk_is_document_text_and_the_ends_are_kept(
    text: str, size: int, overlap: int
) -> None:
    chunks = split_text(text, size, overlap)
    flat = _squeezed(text)
    assert all(_squeezed(c) in flat for c in chunks)  # no invented text, no reordering inside a chunk
    if chunks:
        assert flat.startswith(_squeezed(chunks[0])) and flat.endswith(_squeezed(chunks[-1]))
        assert sum(len(_squeezed(c)) for c in chunks) >= len(flat)  # overlap only adds


@FAST
@given(text=_TEXT, size=_SIZE, overlap=st.integers(0, 60))
def test_chunking_a_chunk_again_gives_it_back(text: str, size: int, overlap: int) -> None:
    for chunk in split_text(text, size, overlap):
        assert split_text(chunk, size, overlap) == [chunk]
        assert split_document(chunk, "txt", size, overlap) == [Chunk(chunk, "", 0)]


_TITLE = st.text(alphabet=st.sampled_from("abcXYZ "), min_size=1, max_size=12).filter(lambda t: t.strip())
_BODY = st.text(alphabet=st.sampled_from("ab .\n"), max_size=200)
_SECTIONS = st.lists(st.tuples(st.integers(1, 4), _TITLE, _BODY), max_size=8)


def _expected_paths(intro: str, sections: list[tuple[int, str, str]]) -> list[tuple[str, str]]:
    """(heading path, body) per section, as a reader nests Markdown headings."""
    out, stack = [("", intro)], []  # type: list[tuple[str, str]], list[tuple[int, str]]
    for level, title, body in sections:
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title.strip()))
        out.append((TITLE_SEP.join(t for _, t in stack), body))
    return out


@FAST
@given(intro=_BODY, sections=_SECTIONS, size=st.integers(5, 80))
@example(intro="", sections=[(1, "a", "x"), (3, "b", "y"), (2, "c", "z")], size=20)
def test_markdown_chunks_keep_their_heading_path_and_all_body_text(
    intro: str, sections: list[tuple[int, str, str]], size: int
) -> None:
    doc = "\n".join([intro, *(f"{'#' * lvl} {title}\n{body}" for lvl, title, body in sections)])
    chunks = split_document(doc, "md", size, 0)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    expected = _expected_paths(intro, sections)
    for path, body in expected:  # each section's text is found, in order, under its own path
        mine = [c.text for c in chunks if c.title == path]
        if body.strip():
            assert _squeezed("".join(mine)).find(_squeezed(body)) >= 0
    assert {c.title for c in chunks} <= {p for p, _ in expected}
    assert "".join(_squeezed(c.text) for c in chunks) == "".join(_squeezed(b) for _, b in expected)
    assert not any(line.lstrip().startswith("#") for c in chunks for line in c.text.splitlines())


@FAST
@given(before=_BODY, code=st.lists(_TITLE, min_size=1, max_size=4), after=_BODY)
def test_a_heading_inside_a_code_fence_stays_text(before: str, code: list[str], after: str) -> None:
    fenced = "\n".join(f"# {line}" for line in code)
    doc = f"# Guide\n{before}\n```\n{fenced}\n```\n{after}\n"
    chunks = split_document(doc, "md", 10_000, 0)
    assert {c.title for c in chunks} == {"Guide"}
    assert all(f"# {line}" in chunks[0].text for line in code)
