"""`automot` command line: one subcommand per job.

Each entry of `SUBCOMMAND_MODULES` is a module exposing `register(subparsers)`, which adds its
subcommand(s) and sets `func` on the parser. Those modules import heavy dependencies inside their
`func`, so `automot --help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMAND_MODULES: tuple[str, ...] = (
    "automot.bench",
    "training.cli",
    "driving.cli",
    "studies.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automot", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # Pass-through subcommands (e.g. `fit`, backed by Lightning's own CLI) get the rest verbatim.
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):
        args.extra = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        result = args.func(args)
    except ValueError as err:
        # Input errors are the user's to fix: print the message, not a traceback.
        print(f"automot {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
