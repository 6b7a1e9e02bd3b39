"""Alias histories: an append-only log per alias whose replay gives the alias's target.

``models/<name>/aliases/<alias>.jsonl`` holds one JSON object per line::

    {"digest": "sha256:...", "op": "set", "pid": 123, "previous": "2", "time_ns": ..., "version": "3"}

A move is one ``O_APPEND`` write of a whole line, then fsync, so concurrent writers never
interleave and a reader sees the old history or the new one. Replay: ``set`` pushes its
target, ``rollback`` pops the current one (never the last); the top of the stack is the alias's target. Moves
are thus serialised by the order in which their lines landed, without any lock. Lines that do
not parse (a torn write after a power loss) and an unterminated last line (a write in
progress) are ignored.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import _fs
from ._types import AliasMove

__all__ = ["append_move", "read_history", "replay"]


def append_move(path: Path, *, op: str, version: str, digest: str, previous: str | None) -> AliasMove:
    """Append one move to the history at ``path`` (created if missing) and fsync it."""
    move = AliasMove(op=op, version=version, digest=digest, previous=previous, time_ns=time.time_ns(), pid=os.getpid())
    line = json.dumps(
        {"digest": digest, "op": op, "pid": move.pid, "previous": previous, "time_ns": move.time_ns, "version": version},
        sort_keys=True,
        separators=(",", ":"),
    ).encode("ascii")
    path.parent.mkdir(parents=True, exist_ok=True)
    created = not path.exists()
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags, 0o644)
    try:
        size = os.fstat(fd).st_size
        prefix = b""
        if size:
            # After a torn write the file may not end in a newline; start on a fresh line.
            with open(path, "rb") as fh:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    prefix = b"\n"
        _fs.write_all(fd, prefix + line + b"\n")
        if _fs._FSYNC:
            os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        _fs.fsync_dir(path.parent)
    return move


def read_history(path: Path) -> list[AliasMove]:
    """All complete, well-formed moves in order; missing file -> empty list."""
    try:
        data = _fs.read_small(path, 256 << 20)
    except FileNotFoundError:
        return []
    lines = data.split(b"\n")
    lines = lines[:-1]  # the last piece is b"" or an unterminated line being written
    moves = []
    for raw in lines:
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            move = AliasMove(
                op=obj["op"], version=obj["version"], digest=obj["digest"], previous=obj["previous"],
                time_ns=int(obj["time_ns"]), pid=int(obj["pid"]),
            )
        except (ValueError, KeyError, TypeError):
            continue
        if move.op not in ("set", "rollback") or not isinstance(move.version, str) or not isinstance(move.digest, str):
            continue
        moves.append(move)
    return moves


def replay(moves: list[AliasMove]) -> list[tuple[str, str]]:
    """The stack of ``(version, digest)`` targets after replaying ``moves``; the last is current."""
    stack: list[tuple[str, str]] = []
    for m in moves:
        if m.op == "set":
            stack.append((m.version, m.digest))
        elif len(stack) > 1:  # a rollback never leaves an alias without a target
            stack.pop()
    return stack
