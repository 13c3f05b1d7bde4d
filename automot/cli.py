"""`automot` command line: one subcommand per job.

Each entry of `SUBCOMMAND_MODULES` is a module exposing `register(subparsers)`, which adds its
subcommand(s) and sets `func` on the parser. Those modules import heavy dependencies inside their
`func`, so `automot --help` stays fast.

Every subcommand also takes the shared options `--import MODULE` (repeatable: import a plug-in that
registers heads etc. before the command runs; see `automot.plugins`) and `--verbose` (show library
warnings, Lightning's tips and banners, which are hidden by default; see `automot.quiet`).

Errors in the user's input (`ValueError`) print one line, `automot <command>: error: ...`, and exit
with code 2, like argparse's own usage errors; no traceback.
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


def positive_int(text: str) -> int:
    """argparse type: an int >= 1 (0 workers, 0 episodes or a batch of 0 are errors, not no-ops)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an int >= 1, got {text!r}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """`--import` and `--verbose`; added to every subcommand (and to `automot` itself)."""
    parser.add_argument(
        "--import",
        dest="plugin_modules",
        action="append",
        default=None,
        metavar="MODULE",
        help="import MODULE (a dotted name or a .py file) first, e.g. a module that registers a head; repeatable",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        default=None,
        help="show warnings, tips and banners (hidden by default)",
    )


def _all_subparsers(parser: argparse.ArgumentParser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield sub
                yield from _all_subparsers(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="automot", description=__doc__.splitlines()[0])
    parser.add_argument("--import", dest="top_plugin_modules", action="append", default=[], metavar="MODULE",
                        help="import MODULE first (see the subcommands' --import)")  # fmt: skip
    parser.add_argument(
        "--verbose", dest="top_verbose", action="store_true", help="show warnings and banners"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(sub)
    for subparser in _all_subparsers(parser):
        add_common_arguments(subparser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from automot.plugins import import_modules
    from automot.quiet import configure_output

    parser = build_parser()
    # Pass-through subcommands (e.g. `fit`, backed by Lightning's own CLI) get the rest verbatim.
    args, extra = parser.parse_known_args(argv)
    if getattr(args, "passthrough", False):
        args.extra = extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.plugin_modules = [*args.top_plugin_modules, *(args.plugin_modules or [])]
    args.verbose = bool(args.top_verbose or args.verbose)
    configure_output(verbose=args.verbose)
    try:
        import_modules(args.plugin_modules)
        result = args.func(args)
    except ValueError as err:
        # Input errors are the user's to fix: print the message, not a traceback.
        print(f"automot {args.command}: error: {err}", file=sys.stderr)
        return 2
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
