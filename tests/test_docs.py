"""The documentation stays true: README's quick start runs and the docstring examples pass."""

from __future__ import annotations

import doctest
import importlib
import pathlib
import re

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_readme_quick_start_runs_and_its_comments_are_true():
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Quick start\s+```python\n(.*?)```", text, re.S).group(1)
    ns: dict = {}
    exec(compile(code, "README.md", "exec"), ns)
    assert ns["S"].shape == (16, 128, 313) and ns["S"].dtype == np.float32
    assert ns["S80"].shape == (16, 80, 1001)
    assert "(16, 128, 313)" in code and "(16, 80, 1001)" in code


@pytest.mark.parametrize("module", ["arraymel", "arraymel.functional", "arraymel.transforms", "arraymel.core.windows",
                                    "arraymel.core.filterbank", "arraymel.core.stft", "arraymel.core.db", "arraymel.plot",
                                    "arraymel.torch", "arraymel._numpy.workers", "arraymel._show_config",
                                    "arraymel.presets", "arraymel.core.plan"])
def test_docstring_examples(module):
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
