"""The documentation stays true: README's quick start runs and the docstring examples pass."""

from __future__ import annotations

import pathlib
import re

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_quick_start_runs_and_its_comments_are_true():
    import matplotlib

    matplotlib.use("Agg")  # the example draws its picture
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Quick start\s+```python\n(.*?)```", text, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["S"].shape == (16, 128, 313) and ns["S"].dtype == np.float32
    assert ns["S80"].shape == (16, 80, 1001)
    assert "(16, 128, 313)" in code and "(16, 80, 1001)" in code
    assert len(code.strip().splitlines()) <= 10  # the README's example stays a 10-line example


# The docstring examples of every module of arraymel/ run as tests of their own: conftest.py collects them.
