"""The import graph follows the layers of docs/architecture.md (imports only go down).

Every ``import`` and ``from ... import`` in the packages' source is read with :mod:`ast`, including
imports inside functions (a lazy import is still a dependency); imports under ``if TYPE_CHECKING:``
are left out (they do not run). Relative imports are resolved against the importing module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("ragloop", "chatlog", "retrieval", "monitoring", "eval", "labeling", "chatbot")
COMPOSITION = ("ragloop.app", "ragloop.run", "ragloop.cli")


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        base = ROOT / package
        if not base.is_dir():
            continue
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import that runs, lazily or not."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                skip.update(id(n) for n in ast.walk(child))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield target, node.lineno
            for alias in node.names:  # `from ragloop import app` imports the module ragloop.app
                yield f"{target}.{alias.name}", node.lineno


def _ours(target: str) -> str | None:
    top = target.split(".")[0]
    return target if top in PACKAGES else None


def _edges() -> list[tuple[str, str, str]]:
    """(importer, imported, "path:line") for every import of one of our packages."""
    edges = []
    for module, path in _modules():
        for target, line in _imports(module, path):
            if _ours(target):
                edges.append((module, target, f"{path.relative_to(ROOT)}:{line}"))
    return edges


def _within(target: str, names: tuple[str, ...]) -> bool:
    return any(target == n or target.startswith(n + ".") for n in names)


def _violations(
    importers: tuple[str, ...], allowed: tuple[str, ...] = (), banned: tuple[str, ...] = ()
) -> list[str]:
    found = []
    for src, dst, where in _edges():
        if not _within(src, importers) or _within(dst, importers):
            continue
        if banned and _within(dst, banned):
            found.append(f"{where}: {src} imports {dst}")
        if allowed and not _within(dst, allowed):
            found.append(f"{where}: {src} imports {dst}")
    return sorted(set(found))


def test_the_walker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    src = tmp_path / "pkg" / "mod.py"
    src.parent.mkdir()
    src.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import chatbot\n"
        "def f():\n    from chatbot._run import start_llm\n"
        "from . import sibling\n"
    )
    found = {t for t, _ in _imports("pkg.mod", src)}
    assert "chatbot._run" in found and "pkg.sibling" in found and "chatbot" not in found


def test_chatlog_is_a_leaf() -> None:
    assert _violations(("chatlog",), allowed=("ragloop.settings",)) == []


@pytest.mark.parametrize("package", ["monitoring", "eval", "retrieval", "labeling"])
def test_features_never_import_the_chat_layer_or_the_composition_root(package: str) -> None:
    assert _violations((package,), banned=("chatbot", *COMPOSITION)) == []


def test_chatbot_never_imports_the_composition_root() -> None:
    assert _violations(("chatbot",), banned=COMPOSITION) == []


def test_the_bottom_layer_imports_nothing_above_it() -> None:
    bottom = ("ragloop.settings", "ragloop.process", "ragloop._fastapi", "ragloop.errors")
    assert _violations(bottom, allowed=bottom) == []


def test_only_the_composition_root_assembles_the_application() -> None:
    # serve, run and compose all go through ragloop.app.build_application: nobody else starts the
    # online evaluator (command-line tools may still drive an outbox worker themselves, e.g. a backfill).
    starters = []
    for module, path in _modules():
        if _within(module, ("ragloop.app",)) or module.startswith("eval"):
            continue
        if "OnlineEvaluator(" in path.read_text():
            starters.append(str(path.relative_to(ROOT)))
    assert starters == []
