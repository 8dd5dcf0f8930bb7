"""The extractive quote keeps code blocks whole, with their indentation, and never ends on "...:"."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass

import pytest

from chatbot._gate import extractive_answer


@dataclass(frozen=True)
class Chunk:
    text: str
    title: str = ""
    source: str = "doc.md"


# The Python FAQ's passages as the index holds them (retrieval.split_document of programming.rst).
DUPLICATES = Chunk(
    "See the Python Cookbook for a long discussion of many ways to do this:\n\n"
    "   https://code.activestate.com/recipes/52560/\n\n"
    "If you don't mind reordering the list, sort it and then scan from the end of the\n"
    "list, deleting duplicates as you go:\n\n"
    "   if mylist:\n"
    "       mylist.sort()\n"
    "       last = mylist[-1]\n"
    "       for i in range(len(mylist)-2, -1, -1):\n"
    "           if last == mylist[i]:\n"
    "               del mylist[i]\n"
    "           else:\n"
    "               last = mylist[i]\n\n"
    "If all elements of the list may be used as set keys (i.e. they are all\n"
    "hashable) this is often faster :\n\n"
    "   mylist = list(set(mylist))\n\n"
    "This converts the list into a set, thereby removing duplicates, and then back\n"
    "into a list.",
    "Programming FAQ > Sequences (Tuples/Lists) > How do you remove duplicates from a list?",
)
MULTIPLE = Chunk(
    "As with removing duplicates, explicitly iterating in reverse with a\n"
    "delete condition is one possibility.  However, it is easier and faster\n"
    "to use slice replacement with an implicit or explicit forward iteration.\n"
    "Here are three variations.:\n\n"
    "   mylist[:] = filter(keep_function, mylist)\n"
    "   mylist[:] = (x for x in mylist if keep_condition)\n"
    "   mylist[:] = [x for x in mylist if keep_condition]\n\n"
    "The list comprehension may be fastest.",
    "Programming FAQ > Sequences (Tuples/Lists) > How do you remove multiple items from a list",
)
MARKDOWN = Chunk(
    "To read a file line by line, iterate over it:\n\n"
    "```python\nwith open(path) as f:\n    for line in f:\n        print(line)\n```\n\n"
    "Each line keeps its newline.",
    "Files > Reading a file line by line",
)
CODE_BLOCKS = {
    "duplicates": [
        textwrap.dedent(DUPLICATES.text.split("as you go:\n\n")[1].split("\n\nIf all")[0]),
        "mylist = list(set(mylist))",
    ],
    "multiple": [textwrap.dedent(MULTIPLE.text.split(".:\n\n")[1].split("\n\nThe list")[0])],
    "markdown": ["with open(path) as f:\n    for line in f:\n        print(line)"],
}
CASES = [
    ("How do I remove duplicates from a list while keeping order?", [DUPLICATES, MULTIPLE], "duplicates"),
    ("How do I remove multiple items from a list?", [DUPLICATES, MULTIPLE], "multiple"),
    ("How do I read a file line by line?", [MARKDOWN], "markdown"),
]


def _quoted(text: str) -> str:
    """The quote as Markdown, without the ``> `` of the blockquote."""
    lines = text.split("\n\n", 1)[1].splitlines()
    return "\n".join(re.sub(r"^> ?", "", line) for line in lines)


@pytest.mark.parametrize(("question", "chunks", "case"), CASES)
def test_a_quote_keeps_whole_code_blocks_with_their_indentation(question, chunks, case) -> None:
    text, citations = extractive_answer(question, chunks)  # type: ignore[misc]
    quote = _quoted(text)
    assert citations
    # Never a dangling "...:" at the end, nor a sentence introducing code without the code.
    assert not re.search(r":\s*(\[\d+\])?\s*$", quote), quote
    lines, fenced = quote.splitlines(), False
    for k, line in enumerate(lines):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and line.rstrip().endswith(":"):
            after = [x for x in lines[k + 1 :] if x.strip()]
            assert after and after[0].startswith("```"), (line, quote)  # its code follows, fenced
    # Every code line quoted comes with its whole block, indentation kept, in a fenced block.
    for block in CODE_BLOCKS[case]:
        first = block.splitlines()[0].strip()
        if first in quote:
            assert f"```\n{block}\n```" in quote or f"```python\n{block}\n```" in quote, quote
    if case != "multiple":  # there the best sentence is the passage's last, after the code
        assert any(block.splitlines()[0].strip() in quote for block in CODE_BLOCKS[case]), quote


def test_a_quote_without_code_reads_as_before() -> None:
    chunk = Chunk("`sorted(x)` returns a new list. `list.sort()` sorts in place. Both take a key.", "Sorting")
    text, _ = extractive_answer("How do I sort a list?", [chunk])  # type: ignore[misc]
    assert text.endswith(
        "> `sorted(x)` returns a new list. `list.sort()` sorts in place. Both take a key. [1]"
    )
