"""The dispatch table (arraymel._backend): total, the documented rules for every (input, device, backend), and
what show_config() shows of it."""

from __future__ import annotations

import itertools

import pytest

import arraymel
from arraymel import _backend


def expected(kind: str, device: str | None, backend: str) -> str | None:
    """The rules as docs/architecture.md states them, written out independently of the table
    (None: an error)."""
    if kind.startswith("tensor-"):
        lives = kind.split("-")[1]
        if device not in (None, lives):
            return None
        if backend == "generic":
            return "generic"
        if lives == "cpu":
            return "numpy" if backend in ("auto", "numpy") else None
        return "cupy" if backend in ("auto", "cupy", "cupy-fused") else None
    gpu = backend in ("cupy", "cupy-fused")
    if device == "cuda":
        return "cupy" if (backend == "auto" or gpu) and kind != "other" else None
    if device == "cpu":
        if gpu:
            return None
        return "generic" if kind == "other" or backend == "generic" else "numpy"
    if backend == "generic":
        return "generic"
    if backend == "numpy":
        return "numpy" if kind == "numpy" else None
    if gpu:
        return None if kind == "other" else "cupy"
    return {"numpy": "numpy", "cupy": "cupy", "other": "generic"}[kind]


@pytest.mark.parametrize("kind,device,backend",
                         list(itertools.product(_backend.INPUT_KINDS, _backend.DEVICES, _backend.BACKENDS)))
def test_every_combination_has_one_documented_answer(kind, device, backend):
    row = _backend.route(kind, device, backend)
    assert row.path == expected(kind, device, backend)
    assert (row.path is None) == (row.error is not None)


def test_errors_name_the_value_and_what_is_allowed():
    import numpy as np

    x = np.zeros(1000, np.float32)
    with pytest.raises(ValueError, match=r"backend='torch' is not allowed: backend must be one of \('auto', "):
        _backend.choose(x, backend="torch")
    with pytest.raises(ValueError, match=r"backend='numpy' cannot compute on device='cuda': use backend='auto'"):
        _backend.choose(x, device="cuda", backend="numpy")
    with pytest.raises(ValueError, match=r"backend='cupy-fused' cannot compute on device='cpu'"):
        _backend.choose(x, device="cpu", backend="cupy-fused")
    assert _backend.choose(x, device="cuda:1") == _backend.Plan("cupy", 1, "numpy", None, "cufft")
    assert _backend.choose(x, backend="cupy-fused").fft == "fused"


def test_show_config_shows_the_paths_and_the_table(capsys):
    d = arraymel.show_config(mode="dicts")["dispatch"]
    assert set(d["paths"]) == set(_backend.PATHS) and d["backends"] == list(_backend.BACKENDS)
    assert len(d["routes"]) == len(_backend.ROUTES)
    assert d["paths"]["numpy"]["workers"] is True and d["paths"]["cupy"]["ffts"] == ["cufft", "fused"]
    arraymel.show_config()
    out = capsys.readouterr().out
    assert "paths (backend=auto|generic|numpy|cupy|cupy-fused):" in out and "  generic (any;" in out


def test_docs_architecture_shows_the_table_as_it_is():
    """docs/architecture.md's rows are the table's, in order (input, device, backend, path or error)."""
    import pathlib

    text = (pathlib.Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    section = text.split("Rows, first match first")[1].split("\n\n")[1]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in section.splitlines()[2:]]
    assert len(rows) == len(_backend.ROUTES)

    def cell(sel):
        return "any" if sel == "*" else ", ".join("None" if v is None else v for v in sel)

    for (kinds, devices, backends, path), r in zip(rows, _backend.ROUTES):
        assert (kinds, devices) == (cell(r.kinds), cell(r.devices))
        assert backends == cell(r.backends) or (backends == "any other" and r.backends == "*")
        assert path == r.path if r.path else path.startswith("error")
