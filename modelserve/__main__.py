"""The ``modelserve`` command line (also ``python -m modelserve``).

Commands: ``registry`` (see ``modelserve registry --help``). Exit status: 0 success,
1 a modelserve error (message on stderr), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return its exit status."""
    from ._registry import _cli

    parser = argparse.ArgumentParser(prog="modelserve", description="modelserve command line")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _cli.add_parser(sub)
    args = parser.parse_args(argv)
    return _cli.dispatch(args)


if __name__ == "__main__":
    sys.exit(main())
