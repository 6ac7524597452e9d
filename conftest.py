"""Every docstring example of the package runs as a test (pytest's doctest collector, options in pyproject.toml).

Only ``arraymel/`` is collected for doctests: tests/ and benchmarks/ hold scripts (goldens generators,
benchmark drivers) that are not meant to be imported by the suite. A module that needs an optional
library that is not installed (CuPy, torch, matplotlib, ...) is skipped, naming it.
"""

from __future__ import annotations

import importlib
import pathlib

import pytest
from _pytest.doctest import DoctestModule  # pytest's own collector, as --doctest-modules uses it

PACKAGE = pathlib.Path(__file__).resolve().parent / "arraymel"


class _OptionalDoctestModule(DoctestModule):
    def collect(self):
        name = ".".join(self.path.relative_to(PACKAGE.parent).with_suffix("").parts).removesuffix(".__init__")
        try:
            importlib.import_module(name)
        except ImportError as e:
            pytest.skip(f"{name} needs an optional library that is not installed: {e}", allow_module_level=True)
        yield from super().collect()


def pytest_collect_file(file_path: pathlib.Path, parent: pytest.Collector):
    if file_path.suffix == ".py" and PACKAGE in file_path.parents and not parent.config.option.doctestmodules:
        return _OptionalDoctestModule.from_parent(parent, path=file_path)
    return None
