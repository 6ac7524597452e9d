"""The corpus layer uses arraymel's public API only: no module of ``arraymel/corpus/`` imports the library's
internals (``arraymel.core``, ``arraymel._numpy``, ``arraymel._config``, ...), so that they stay free to change."""

from __future__ import annotations

import ast
import pathlib

import arraymel

CORPUS = pathlib.Path(__file__).resolve().parents[1] / "arraymel" / "corpus"
#: arraymel's own modules a corpus module may import (the corpus itself, the presets, the command line)
ALLOWED = ("arraymel", "arraymel.corpus", "arraymel.presets", "arraymel.cli")


def _imports(path: pathlib.Path) -> list[tuple[int, str, list[str]]]:
    """``(line, module, names)`` of every import of an arraymel module in ``path`` (lazy ones in functions too)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "arraymel"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "arraymel":
            out.append((node.lineno, node.module, [a.name for a in node.names]))
    return out


def _private(module: str, names: list[str]) -> list[str]:
    bad = []
    if not any(module == m or module.startswith(m + ".") for m in ALLOWED[1:]) and module != "arraymel":
        bad.append(module)
    if module == "arraymel":
        bad += [f"arraymel.{n}" for n in names if n not in arraymel.__all__]
    return bad


def test_corpus_imports_only_the_public_api():
    files = sorted(CORPUS.rglob("*.py"))
    assert len(files) > 10
    found = []
    for path in files:
        for line, module, names in _imports(path):
            found += [f"{path.relative_to(CORPUS.parent.parent)}:{line}: {m}" for m in _private(module, names)]
    assert found == [], "use arraymel's public names (arraymel.__all__) instead"


def test_the_check_sees_a_private_import():
    assert _private("arraymel._config", ["MelConfig"]) == ["arraymel._config"]
    assert _private("arraymel", ["core"]) == ["arraymel.core"]
    assert _private("arraymel", ["MelConfig"]) == [] and _private("arraymel.corpus.storage", ["Writer"]) == []
