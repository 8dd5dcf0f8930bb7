"""Fixtures of the retrieval tests: a shared embedder, small documents, a real PDF writer."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from ragloop.settings import Settings
from retrieval import Embedder, get_embedder


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real all-MiniLM-L6-v2 embedder, loaded once per test session."""
    return get_embedder(Settings())


@pytest.fixture(params=["embedded", "server"])
def store_settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """Settings for embedded Chroma, and for the real `chroma run` server (a fresh collection)."""
    if request.param == "server":
        url = request.getfixturevalue("chroma_server")
        return Settings(data_dir=tmp_path / "data", chroma_url=url, collection=f"t-{uuid.uuid4().hex[:12]}")
    return Settings(data_dir=tmp_path / "data")


def pdf_bytes(lines: list[str]) -> bytes:
    """A valid one-page PDF (Helvetica text) with a correct xref table, written by hand."""
    content = "BT /F1 12 Tf 72 720 Td 14 TL " + " ".join(f"({line}) '" for line in lines) + " ET"
    objects = [
        "<< /Type /Catalog /Pages 2 0 R >>",
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        "/Resources << /Font << /F1 5 0 R >> >> >>",
        f"<< /Length {len(content)} >>\nstream\n{content}\nendstream",
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = b"%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n{obj}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return out


@pytest.fixture()
def make_pdf() -> Callable[[Path, list[str]], Path]:
    """Write a real PDF with the given text lines."""

    def write(path: Path, lines: list[str]) -> Path:
        path.write_bytes(pdf_bytes(lines))
        return path

    return write


#: Small documents on distinct topics, one per supported format.
DOCS = {
    "cooking.md": (
        "# Kitchen notes\n\nIntro line.\n\n## Baking bread\n\n"
        "Knead the dough for ten minutes, let it rise for an hour, then bake at 220 degrees.\n\n"
        "## Making tea\n\nBoil water, pour it over the leaves and steep for three minutes.\n"
    ),
    "astronomy.rst": (
        "Astronomy\n=========\n\nThe night sky.\n\nPlanets\n-------\n\n"
        "Jupiter is the largest planet of the solar system; see :ref:`gas giants <giants>`.\n\n"
        ".. index:: single: moons\n\nMoons\n-----\n\nThe Moon orbits the Earth every 27 days.\n"
    ),
    "gardening.txt": "Water tomato plants at the base in the morning, and never the leaves.\n",
    "birds.html": (
        "<html><head><title>Birds</title><script>var x = 1;</script></head><body>"
        "<h1>Birds</h1><p>Penguins cannot fly but swim very well.</p>"
        "<h2>Migration</h2><p>Swallows migrate to Africa in autumn.</p></body></html>"
    ),
}


@pytest.fixture()
def docs_dir(tmp_path: Path, make_pdf: Callable[[Path, list[str]], Path]) -> Path:
    """A folder with one small document per format (md, rst, txt, html, pdf)."""
    root = tmp_path / "docs"
    root.mkdir()
    for name, text in DOCS.items():
        (root / name).write_text(text, encoding="utf-8")
    make_pdf(root / "cars.pdf", ["Electric cars charge their batteries from the grid.", "Range is 400 km."])
    return root
