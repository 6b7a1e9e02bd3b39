"""Alias histories: an append-only log per alias whose replay gives the alias's target.

``models/<name>/aliases/<alias>.jsonl`` holds one JSON object per line::

    {"digest": "sha256:...", "id": "9f2c...", "op": "set", "pid": 123, "previous": "2",
     "seq": 4, "time_ns": ..., "version": "3"}

``version``/``digest`` are the move's explicit target (for ``set`` and ``rollback`` alike).
A move is one ``O_APPEND`` write of a whole line, then fsync, so concurrent writers never
interleave and a reader sees the old history or the new one.

Moves are *conditional* (compare-and-append, no lock needed): ``seq`` is the number of
well-formed lines the writer read before deciding on the move. On replay a line counts only if
exactly ``seq`` well-formed lines precede it, that is, if nobody appended between the writer's
read and its append; otherwise it is *stale* and ignored. The writer re-reads after appending
and, if its line is stale, decides again on the new history and appends again
(:func:`move`). The history is append-only, so the first ``seq`` lines a writer read are the
first ``seq`` lines for ever, and every reader agrees on which lines count. A rollback thus
always returns what the alias resolves to right after it. Lines without ``seq`` (histories
written by older modelserve) always count.

Replay: ``set`` pushes its target; ``rollback`` pops the current one (never the last) and the
top is then its recorded target (the two agree for every line that counts, since its writer
computed the target from exactly that stack). The top of the stack is the alias's target.
Lines that do not parse (a torn write after a power loss) and an unterminated last line (a
write in progress) are ignored.

A best-effort ``flock`` on the history around read-decide-append reduces retries between
processes of one host; correctness never depends on it (see :data:`USE_LOCKS`).

The history is only ever opened as a regular file (``_fs.open_regular``): a FIFO, device or
directory in its place is refused with a :class:`RegistryError` naming it (reading, appending
and locking alike), never waited on.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import time
from pathlib import Path
from typing import Callable

from .._errors import RegistryError
from . import _fs
from ._manifest import loads
from ._types import AliasMove

__all__ = ["append_move", "read_history", "effective", "replay", "move", "USE_LOCKS"]

#: Take a best-effort ``flock`` on the history while deciding a move (contention only; tests
#: turn it off to exercise the lock-free path).
USE_LOCKS = True
_MAX_TRIES = 200
_MAX_WAIT_S = 60.0

try:  # pragma: no cover - platform dependent
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows
    _fcntl = None  # type: ignore[assignment]


def append_move(
    path: Path, *, op: str, version: str, digest: str, previous: str | None,
    seq: int | None = None, move_id: str | None = None,
) -> AliasMove:
    """Append one move to the history at ``path`` (created if missing) and fsync it.

    ``seq`` makes the move conditional (see the module docstring); ``None`` appends an
    unconditional line (the old format).
    """
    move_id = move_id or secrets.token_hex(8)
    m = AliasMove(op=op, version=version, digest=digest, previous=previous, time_ns=time.time_ns(),
                  pid=os.getpid(), seq=seq, id=move_id)
    obj = {"digest": digest, "id": move_id, "op": op, "pid": m.pid, "previous": previous,
           "time_ns": m.time_ns, "version": version}
    if seq is not None:
        obj["seq"] = seq
    line = json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("ascii")
    _fs.make_dir(path.parent, parents=True, exist_ok=True)
    created = not path.exists()
    fd = _fs.open_regular(path, os.O_RDWR | os.O_APPEND | os.O_CREAT)
    try:
        size = os.fstat(fd).st_size
        # After a torn write the file may not end in a newline; start on a fresh line.
        prefix = b"\n" if size and _last_byte(fd, size) != b"\n" else b""
        _fs.write_all(fd, prefix + line + b"\n")
        _fs.fsync_fd(fd)
    finally:
        os.close(fd)
    if created:
        _fs.fsync_dir(path.parent)
    return m


def _last_byte(fd: int, size: int) -> bytes:
    """Byte ``size - 1`` of the open file ``fd`` (``O_APPEND`` writes are unaffected by seeking)."""
    if hasattr(os, "pread"):
        return os.pread(fd, 1, size - 1)
    os.lseek(fd, size - 1, os.SEEK_SET)  # pragma: no cover - Windows
    return os.read(fd, 1)  # pragma: no cover


def read_history(path: Path) -> list[AliasMove]:
    """All complete, well-formed lines in order (stale ones included); missing file -> []."""
    try:
        data = _fs.read_small(path, 256 << 20)
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise RegistryError(f"alias history {path} is unreadable: {exc}") from exc
    lines = data.split(b"\n")
    lines = lines[:-1]  # the last piece is b"" or an unterminated line being written
    moves = []
    for raw in lines:
        if not raw.strip():
            continue
        try:
            obj = loads(raw)
            seq = obj.get("seq")
            if seq is not None and (not isinstance(seq, int) or isinstance(seq, bool) or seq < 0):
                raise ValueError("bad seq")
            move_id = obj.get("id")
            m = AliasMove(
                op=obj["op"], version=obj["version"], digest=obj["digest"], previous=obj["previous"],
                time_ns=int(obj["time_ns"]), pid=int(obj["pid"]), seq=seq,
                id=move_id if isinstance(move_id, str) else None,
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if m.op not in ("set", "rollback") or not isinstance(m.version, str) or not isinstance(m.digest, str):
            continue
        moves.append(m)
    return moves


def effective(moves: list[AliasMove]) -> list[AliasMove]:
    """The moves that count: unconditional ones and those whose ``seq`` equals their position."""
    return [m for i, m in enumerate(moves) if m.seq is None or m.seq == i]


def replay(moves: list[AliasMove]) -> list[tuple[str, str]]:
    """The stack of ``(version, digest)`` targets after replaying ``moves``; the last is current."""
    stack: list[tuple[str, str]] = []
    for m in effective(moves):
        target = (m.version, m.digest)
        if m.op == "set":
            stack.append(target)
        else:
            if len(stack) > 1:  # a rollback never leaves an alias without a target
                stack.pop()
            if not stack:
                stack.append(target)
            elif stack[-1] != target:  # honour the recorded target (old histories that raced)
                stack[-1] = target
    return stack


class _Lock:
    """Best-effort exclusive ``flock`` on the history file (no-op where unavailable, or where the
    history is not a regular file: the read that follows reports that)."""

    def __init__(self, path: Path) -> None:
        self.fd: int | None = None
        if not USE_LOCKS or _fcntl is None:
            return
        try:
            _fs.make_dir(path.parent, parents=True, exist_ok=True)
            fd = _fs.open_regular(path, os.O_RDONLY | os.O_CREAT)
        except OSError:  # FileKindError included
            return
        try:
            _fcntl.flock(fd, _fcntl.LOCK_EX)
        except OSError:
            os.close(fd)
            return
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            try:
                _fcntl.flock(self.fd, _fcntl.LOCK_UN)
            except OSError:  # pragma: no cover
                pass
            os.close(self.fd)
            self.fd = None


Decision = tuple[str, str, str]  # (op, version, digest)


def move(path: Path, decide: Callable[[list[tuple[str, str]]], Decision],
         before_append: Callable[[], None] | None = None) -> AliasMove:
    """Append the move ``decide(stack)`` conditionally, retrying until it counts.

    ``decide`` gets the current stack (see :func:`replay`) and returns ``(op, version,
    digest)`` or raises to refuse. It is called again on the fresh history whenever another
    writer got in first. Returns the move as it counts in the history.
    """
    deadline = time.monotonic() + _MAX_WAIT_S
    for attempt in range(_MAX_TRIES):
        lock = _Lock(path)
        try:
            moves = read_history(path)
            stack = replay(moves)
            op, version, digest = decide(stack)
            if before_append is not None:
                before_append()
            seq = len(moves)
            move_id = secrets.token_hex(8)
            append_move(path, op=op, version=version, digest=digest,
                        previous=stack[-1][0] if stack else None, seq=seq, move_id=move_id)
        finally:
            lock.release()
        after = read_history(path)
        for i, m in enumerate(after):
            if m.id == move_id and m.pid == os.getpid():
                if i == seq:
                    return m
                break
        else:
            raise RegistryError(f"alias history {path}: the move just appended cannot be read back")
        if time.monotonic() > deadline:
            break
        time.sleep(random.uniform(0, min(0.05, 0.001 * (2 ** min(attempt, 6)))))
    raise RegistryError(f"alias history {path}: gave up after {attempt + 1} tries (too many concurrent moves)")
