"""The ``modelserve`` command line (also ``python -m modelserve``).

One module per command group, each with ``add_parser(subparsers)`` adding its command (whose
parser sets ``func``, the function that runs it and returns the exit status): ``predict``
(see ``modelserve predict --help``), ``registry`` (``modelserve registry --help``), ``serve``
(KServe v2 REST, ``modelserve serve --help``) and ``export`` (a Triton model repository,
``modelserve export triton --help``). A new group is one module listed in :data:`GROUPS`.

Exit status: 0 success, 1 a modelserve error or a file system error (one line on stderr,
never a traceback), 2 bad usage (argparse's message).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from .._errors import ModelserveError
from . import export, predict, registry, serve

__all__ = ["main", "dispatch", "GROUPS"]

#: The command groups, in the order ``--help`` lists them.
GROUPS = (predict, registry, serve, export)


def build_parser() -> argparse.ArgumentParser:
    """The root parser with every group's command."""
    parser = argparse.ArgumentParser(prog="modelserve", description="modelserve command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in GROUPS:
        group.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit status."""
    args = build_parser().parse_args(argv)
    return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run ``args.func(args)``, turning modelserve errors into a one-line message and exit status 1.

    Any ``OSError`` that escapes (the registry turns its own into :class:`RegistryError`; this is
    defence in depth) is reported the same way, never as a traceback.
    """
    try:
        return int(args.func(args) or 0)
    except (ModelserveError, OSError) as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__
