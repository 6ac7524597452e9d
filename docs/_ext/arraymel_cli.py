"""``.. cli-help:: module:function``: the ``--help`` of a command and of each of its subcommands.

The parser is built by the named function when the site is built, so the page says what the
installed command says. The help text is shown as printed (a literal block, 80 columns), not
parsed as markup: help strings hold globs such as ``*.wav`` that reStructuredText would read as
emphasis.
"""

from __future__ import annotations

import argparse
import importlib
import os
from typing import Any

from docutils import nodes
from sphinx.util.docutils import SphinxDirective
from sphinx.util.nodes import make_id


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:  # argparse has no public accessor for its subcommands
        if isinstance(action, argparse._SubParsersAction):
            seen = set()
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases share a parser
                    seen.add(id(sub))
                    out.append((name, sub))
    return out


def _help(parser: argparse.ArgumentParser) -> str:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"  # argparse wraps to the terminal's width; the page has one width
    try:
        return parser.format_help().rstrip()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


class CliHelp(SphinxDirective):
    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        modname, _, funcname = self.arguments[0].partition(":")
        parser = getattr(importlib.import_module(modname), funcname)()
        return self._sections(parser, parser.prog)

    def _sections(self, parser: argparse.ArgumentParser, prog: str) -> list[nodes.Node]:
        section = nodes.section(ids=[make_id(self.env, self.state.document, "cli", prog)])
        section += nodes.title(text=prog)
        block = nodes.literal_block(text=_help(parser))
        block["language"] = "text"
        section += block
        for name, sub in _subparsers(parser):
            section += self._sections(sub, f"{prog} {name}")
        return [section]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("cli-help", CliHelp)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
