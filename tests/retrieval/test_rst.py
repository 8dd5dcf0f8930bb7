from __future__ import annotations

from retrieval._rst import clean_inline, clean_rst, split_rst_sections


def test_roles_links_and_literals_become_plain_text() -> None:
    text = (
        ":func:`~os.path.join`, :class:`!Foo`, :ref:`the guide <guide-label>`, :pep:`8`, "
        "``x = 1``, `Python <https://python.org>`_, **bold**, note [#]_"
    )
    assert clean_inline(text) == "join, Foo, the guide, PEP 8, x = 1, Python, bold, note"


def test_directives_dropped_or_reduced() -> None:
    body = (
        ".. index::\n   single: copy\n\n.. _label:\n\n"
        ".. function:: copy(src, dst)\n   :noindex:\n\n   Copy a file.\n\n"
        ".. versionadded:: 3.8\n\n.. toctree::\n   :maxdepth: 2\n\n   a\n   b\n\n"
        ".. comment here\n\nFor example::\n\n   copy('a', 'b')\n"
    )
    assert clean_rst(body) == (
        "copy(src, dst)\n\n   Copy a file.\n\nAdded in version 3.8\n\nFor example:\n\n   copy('a', 'b')"
    )


def test_sections_levels_follow_first_appearance() -> None:
    text = (
        "=====\nTitle\n=====\n\nintro\n\nFirst\n-----\n\none\n\nSub\n~~~\n\ndeep\n\n"
        "Second\n------\n\ntwo\n\n   indented\n   --------\n"
    )
    assert [(lvl, title) for lvl, title, _ in split_rst_sections(text)] == [
        (1, "Title"),
        (2, "First"),
        (3, "Sub"),
        (2, "Second"),
    ]
