"""Every public object's docstring is NumPy style: it exists, documents each parameter, says what it returns,
and has examples (which run as doctests: conftest.py). Checked with numpydoc's own validator.

The public objects are the names of each reference module's ``__all__`` (else its own public functions
and classes) and each class's own public methods: what the site gives a page (docs/conf.py).
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import re
import sys

import pytest

numpydoc_validate = pytest.importorskip("numpydoc.validate")

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODULES = eval(re.search(r"arraymel_api_modules = (\[.*?\])", (ROOT / "docs" / "conf.py").read_text()).group(1))

#: numpydoc's checks that make a docstring complete: GL08 no docstring, PR01 a parameter not documented,
#: PR02 a documented parameter that does not exist, RT01 no Returns section, EX01 no Examples section.
REQUIRED = ("GL08", "PR01", "PR02", "RT01", "EX01")

#: Where numpydoc's rule does not fit, and why.
EXCEPTIONS = {
    # dataclasses made by a factory (MelConfig.create, the preset functions): their fields are
    # documented as Attributes, not as constructor parameters a user passes
    ("arraymel.MelConfig", "PR01"), ("arraymel.presets.Preset", "PR01"),
    # takes **kwargs (Keras's layer keys pass through) and documents each parameter it accepts by name
    ("arraymel.MelSpectrogram", "PR02"),
}


def public_objects() -> list[str]:
    names = []
    for modname in MODULES:
        module = importlib.import_module(modname)
        own = [n for n in getattr(module, "__all__", ()) if not n.startswith("__")]
        if not hasattr(module, "__all__"):
            own = [n for n, obj in vars(module).items() if not n.startswith("_")
                   and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__.startswith(modname)]
        for name in own:
            names.append(f"{modname}.{name}")
            obj = getattr(module, name)
            if inspect.isclass(obj):
                names += [f"{modname}.{name}.{m}" for m, v in vars(obj).items()
                          if (inspect.isfunction(v) or isinstance(v, (classmethod, staticmethod)))
                          and (not m.startswith("_") or m == "__call__")]
    return names


def test_there_are_public_objects_to_check():
    assert {"arraymel.mel_spectrogram", "arraymel.MelSpectrogram.get_config", "arraymel.presets.whisper"} \
        <= set(public_objects())


def _resolve(name: str):
    modname, _, attr = name.partition(".")
    while True:  # the longest importable prefix is the module
        head, _, rest = attr.partition(".")
        try:
            importlib.import_module(f"{modname}.{head}")
        except ImportError:
            break
        modname, attr = f"{modname}.{head}", rest
    obj = importlib.import_module(modname)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return modname, attr, obj


def attribute_doc(modname: str, attr: str, obj) -> list[str]:
    """The ``#:`` comment Sphinx documents a module's data with, from the module that assigns it."""
    from sphinx.pycode import ModuleAnalyzer

    for name in sorted(n for n in sys.modules if n == modname or n.startswith(modname + ".")):
        if getattr(sys.modules[name], attr, None) is obj:
            doc = ModuleAnalyzer.for_module(name).find_attr_docs().get(("", attr))
            if doc:
                return doc
    return []


@pytest.mark.parametrize("name", public_objects())
def test_docstring_is_complete_numpy_style(name):
    modname, attr, obj = _resolve(name)
    if not (inspect.isclass(obj) or callable(obj) or inspect.ismodule(obj)):
        # data (a dict, an int): its docstring would be its type's; Sphinx documents it with the ``#:``
        # comment above its assignment, which must say what it holds
        assert "".join(attribute_doc(modname, attr, obj)).strip(), f"{name}: no #: comment above its assignment"
        return
    errors = numpydoc_validate.validate(name)["errors"]
    missing = [f"{code}: {message}" for code, message in errors if code in REQUIRED and (name, code) not in EXCEPTIONS]
    assert missing == []
