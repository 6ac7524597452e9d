"""The ``arraymel`` command line: ``demo``, ``corpus`` and ``bench``.

Each subcommand lives with its own code (``arraymel.demo``, ``arraymel.corpus.cli``,
``arraymel.bench.cli``) and registers its parser here; nothing heavy is imported until
the chosen subcommand runs.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: subcommand -> module that defines ``add_parser(subparsers)`` (and the function it sets as ``func``)
SUBCOMMANDS = {
    "demo": "arraymel.demo",
    "corpus": "arraymel.corpus.cli",
    "bench": "arraymel.bench.cli",
}


def build_parser() -> argparse.ArgumentParser:
    from arraymel import __version__

    parser = argparse.ArgumentParser(
        prog="arraymel",
        description="Mel spectrograms with Keras 3 semantics on NumPy and CuPy.",
    )
    parser.add_argument("--version", action="version", version=f"arraymel {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in SUBCOMMANDS.values():
        importlib.import_module(module).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
