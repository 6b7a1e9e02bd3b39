"""``python -m modelserve``: the command line, :func:`modelserve.cli.main`."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
