"""Reference pages driven by each public module's ``__all__``.

When the configuration is read, one page per module of ``arraymel_api_modules`` (conf.py) is written to
``reference/api/<module>.rst``: the module's docstring and an autosummary table of its public names,
whose own pages autosummary then generates. A name a module adds to ``__all__`` gets its page with no
edit here; a module without ``__all__`` lists the functions and classes defined in it (or in its
submodules) whose names do not start with an underscore.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
from typing import Any


def public_names(module: Any) -> list[str]:
    """The names a module documents: ``__all__`` (dunders left out), else its own public functions and classes."""
    names = getattr(module, "__all__", None)
    if names is not None:
        return [n for n in names if not (n.startswith("__") and n.endswith("__"))]
    own = []
    for name, obj in vars(module).items():
        if name.startswith("_") or not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        if (getattr(obj, "__module__", "") or "").startswith(module.__name__):
            own.append(name)
    return sorted(own)


def module_page(modname: str) -> str:
    module = importlib.import_module(modname)
    names = public_names(module)
    lines = [modname, "=" * len(modname), "", f".. automodule:: {modname}", "   :no-members:", ""]
    if names:
        lines += [".. rubric:: Public names", "", f".. currentmodule:: {modname}", "",
                  ".. autosummary::", "   :toctree: generated", "   :nosignatures:", ""]
        lines += [f"   {n}" for n in names]
    lines.append("")
    return "\n".join(lines)


def write_pages(app: Any, config: Any) -> None:
    out = pathlib.Path(app.srcdir) / "reference" / "api"
    out.mkdir(parents=True, exist_ok=True)
    wanted = {f"{m}.rst": module_page(m) for m in config.arraymel_api_modules}
    for stale in out.glob("*.rst"):
        if stale.name not in wanted:
            stale.unlink()
    for name, text in wanted.items():
        path = out / name
        if not path.exists() or path.read_text() != text:  # unchanged pages keep their mtime: no rebuild
            path.write_text(text)


def setup(app: Any) -> dict[str, Any]:
    app.add_config_value("arraymel_api_modules", [], "env")
    # config-inited: before Sphinx lists the source files, so the pages are read in the same build
    app.connect("config-inited", write_pages)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
