"""Hostile inputs to the registry: sparse-tar bombs, FIFOs, full disks, deep nesting, special files.

Every case must end in a typed error (a ``ModelserveError``) with a message, never a hang, a bare
``OSError``/``RecursionError``/``IndexError``/``MemoryError`` or a traceback. Tests that would block
on the old code (a FIFO opened for reading waits for a writer forever) run under :func:`no_hang`,
which interrupts the blocked system call with ``SIGALRM``.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import modelserve as ms
from modelserve import cli
from modelserve._errors import (
    IntegrityError,
    InvalidInputError,
    ModelserveError,
    RegistryError,
)
from modelserve._registry import Registry, _aliases, _dirs, _faults, _fs, _staging, read_lock, resolve_for_load

from .write_faults import fail_writes_after

ROOT = Path(__file__).resolve().parents[2]
BLOCK = 512


# ---------------------------------------------------------------- helpers
class Hung(BaseException):
    """Raised by :func:`no_hang` in the main thread when the guarded block is still running."""


@contextmanager
def no_hang(seconds: float = 10.0) -> Iterator[None]:
    """Fail (raise :class:`Hung`) if the block takes longer than ``seconds``; interrupts blocking
    system calls such as ``open()`` of a FIFO, so the suite never hangs on the old code."""

    def fire(signum: int, frame: Any) -> None:
        raise Hung(f"still blocked after {seconds} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def typed(fn: Callable[[], Any], error: type[BaseException] = RegistryError, match: str | None = None,
          seconds: float = 10.0) -> BaseException:
    """Run ``fn`` under :func:`no_hang` and return the typed error it must raise."""
    with no_hang(seconds):
        with pytest.raises(error, match=match) as ei:
            fn()
    return ei.value


def make_file(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / "src" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg")


def header(name: bytes, type_: bytes = b"0", size: int = 0, fields: dict[int, bytes] | None = None) -> bytes:
    """One raw 512-byte ustar header written by hand (``fields``: offset -> bytes), checksum included."""
    b = bytearray(BLOCK)
    b[0:len(name)] = name
    b[100:108] = b"0000444\0"
    b[108:116] = b"0000000\0"
    b[116:124] = b"0000000\0"
    b[124:136] = b"%011o\0" % size
    b[136:148] = b"00000000000\0"
    b[156:157] = type_
    b[257:265] = b"ustar\x0000"
    for off, val in (fields or {}).items():
        b[off:off + len(val)] = val
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\0 " % sum(b)
    return bytes(b)


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def pax_records(records: dict[bytes, bytes]) -> bytes:
    """PAX extended-header records ``"<len> <key>=<value>\\n"``."""
    out = b""
    for k, v in records.items():
        body = b" " + k + b"=" + v + b"\n"
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n += 1
        out += str(n).encode() + body
    return out


def pax(records: dict[bytes, bytes], type_: bytes = b"x") -> bytes:
    data = pax_records(records)
    return header(b"././@PaxHeader", type_, len(data)) + padded(data)


def sparse_struct(offset: int, numbytes: int) -> bytes:
    return b"%011o\0%011o\0" % (offset, numbytes)


def gnu_sparse(name: bytes = b"manifest.json", *, extended: bool, realsize: int = 1 << 20) -> bytes:
    """An old-GNU sparse ('S') header: 4 sparse structs, isextended, the real size."""
    fields = {386 + 24 * i: sparse_struct(1 + i, 1) for i in range(4)}
    fields[482] = b"\1" if extended else b"\0"
    fields[483] = b"%011o\0" % realsize
    return header(name, b"S", 0, fields)


def sparse_extension(more: bool) -> bytes:
    """A GNU sparse extension block: 21 structs and the isextended flag at byte 504."""
    b = bytearray(b"".join(sparse_struct(1000 + i, 7) for i in range(21)) + b"\0" * 8)
    b[504] = 1 if more else 0
    return bytes(b)


END = b"\0" * (2 * BLOCK)


def write_archive(path: Path, data: bytes, *, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data, compresslevel=9) if gz else data)
    return path


def assert_refused(reg: Registry, arc: Path, match: str, seconds: float = 10.0) -> RegistryError:
    err = typed(lambda: reg.import_archive(arc), RegistryError, match, seconds)
    assert reg.list_models() == []
    tmp = reg.root / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []
    return err  # type: ignore[return-value]


def exported_manifest(tmp_path: Path) -> tuple[bytes, bytes]:
    """(manifest bytes, the manifest member's raw header + data) of a real exported version."""
    import tarfile

    src = Registry(tmp_path / "exporter")
    mv = src.register("det", make_file(tmp_path, "m.onnx", b"m" * 100))
    arc = src.export(mv.ref, tmp_path / "det.tar")
    with tarfile.open(arc) as tar:
        first = tar.next()
        assert first is not None
        fh = tar.extractfile(first)
        assert fh is not None
        data = fh.read()
    return data, header(b"manifest.json", b"0", len(data)) + padded(data)


# ================================================================ 1. sparse members and malformed headers
def test_gnu_sparse_header_with_a_long_extension_chain_is_refused_before_the_chain_is_read(reg: Registry, tmp_path: Path) -> None:
    import tracemalloc

    chain = 8000  # tarfile would collect 21 sparse structs per block: ~170k tuples, ~20 MiB
    data = gnu_sparse(extended=True) + sparse_extension(True) * (chain - 1) + sparse_extension(False) + END
    arc = write_archive(tmp_path / "bomb.tar.gz", data, gz=True)
    assert arc.stat().st_size < 100_000
    tracemalloc.start()
    try:
        err = assert_refused(reg, arc, "sparse member refused")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(arc) in str(err)
    assert peak < 4 << 20, f"refusing a sparse header allocated {peak >> 20} MiB: the chain was read"


def test_gnu_sparse_512_byte_archive_is_refused(reg: Registry, tmp_path: Path) -> None:
    arc = write_archive(tmp_path / "tiny.tar", gnu_sparse(extended=True))  # isextended=1, then EOF
    assert arc.stat().st_size == BLOCK
    assert_refused(reg, arc, "sparse member refused")


def test_gnu_sparse_member_after_the_manifest_is_refused(reg: Registry, tmp_path: Path) -> None:
    _, manifest_member = exported_manifest(tmp_path)
    data = manifest_member + gnu_sparse(b"blobs/" + b"0" * 64, extended=True) + sparse_extension(True)[:100]
    assert_refused(reg, write_archive(tmp_path / "late.tar", data), "sparse member refused")


PAX_SPARSE = {
    "0.0": {b"GNU.sparse.size": b"1048576", b"GNU.sparse.numblocks": b"1", b"GNU.sparse.offset": b"0",
            b"GNU.sparse.numbytes": b"10"},
    "0.1": {b"GNU.sparse.size": b"1048576", b"GNU.sparse.numblocks": b"1", b"GNU.sparse.map": b"0,10"},
    "1.0": {b"GNU.sparse.major": b"1", b"GNU.sparse.minor": b"0", b"GNU.sparse.name": b"manifest.json",
            b"GNU.sparse.realsize": b"1048576"},
    "0.1-garbage-map": {b"GNU.sparse.map": b"0,x"},
}


@pytest.mark.parametrize("fmt", sorted(PAX_SPARSE))
@pytest.mark.parametrize("type_", [b"x", b"g"], ids=["extended", "global"])
def test_pax_sparse_members_are_refused(reg: Registry, tmp_path: Path, fmt: str, type_: bytes) -> None:
    # format 1.0 keeps its map in the member's data: a count of 10^11 entries and no map at all
    body = padded(b"99999999999\n") if fmt == "1.0" else padded(b"{}")
    data = pax(PAX_SPARSE[fmt], type_) + header(b"manifest.json", b"0", len(body)) + body + END
    assert_refused(reg, write_archive(tmp_path / "pax.tar", data), "sparse member refused")


def _pax_chain(n: int) -> bytes:
    return header(b"././@PaxHeader", b"x", 0) * n + header(b"manifest.json") + END


def _longname_chain(n: int) -> bytes:
    return (header(b"././@LongLink", b"L", 5) + padded(b"abcd\0")) * n + header(b"manifest.json") + END


MALFORMED = [
    ("pax-chain", lambda: _pax_chain(400), "extension headers in a row"),  # old: RecursionError
    ("gnu-longname-chain", lambda: _longname_chain(400), "extension headers in a row"),  # old: RecursionError
    ("bad-hdrcharset", lambda: pax({b"hdrcharset": b"\xff\xfe"}) + header(b"manifest.json") + END, "malformed PAX header"),
    ("unparseable-pax-records", lambda: header(b"././@PaxHeader", b"x", 7) + padded(b"garbage") + END, "malformed PAX header"),
]


@pytest.mark.parametrize("why, build, match", MALFORMED, ids=[m[0] for m in MALFORMED])
def test_malformed_headers_give_registry_errors(reg: Registry, tmp_path: Path, why: str, build, match: str) -> None:
    assert_refused(reg, write_archive(tmp_path / f"{why}.tar", build()), match)


def test_pax_header_full_of_digits_is_refused_quickly(reg: Registry, tmp_path: Path) -> None:
    """Python 3.11's PAX parser searches for 'hdrcharset' with a regex that is quadratic on runs
    of digits: one 60 KiB header costs seconds of CPU, sixteen fit under the header limits."""
    digits = b"1" * 60000
    data = (header(b"././@PaxHeader", b"x", len(digits)) + padded(digits)) * 4 + header(b"manifest.json") + END
    value = pax({b"comment": b"7" * 60000}) * 4 + header(b"manifest.json") + END  # well-formed records
    for i, raw in enumerate((data, value)):
        arc = write_archive(tmp_path / f"digits{i}.tar", raw)
        started = time.monotonic()
        assert_refused(reg, arc, "PAX header", seconds=60)
        assert time.monotonic() - started < 2.0


def test_regular_archives_still_import(reg: Registry, tmp_path: Path) -> None:
    """Long names of exported members and a PAX header of ordinary records are still accepted."""
    import io
    import tarfile

    src = Registry(tmp_path / "a")
    mv = src.register("det", make_file(tmp_path, "m.onnx", os.urandom(3000)), metadata={"note": "\u00e9t\u00e9"})
    arc = src.export(mv.ref, tmp_path / "det.tar.gz")
    redo = tmp_path / "pax.tar"
    with tarfile.open(arc) as tar, tarfile.open(redo, "w", format=tarfile.PAX_FORMAT) as out:
        for m in tar.getmembers():
            data = tar.extractfile(m).read()  # type: ignore[union-attr]
            m.pax_headers = {"comment": "exported by a test", "mtime": "1.5"}
            out.addfile(m, io.BytesIO(data))
    assert reg.import_archive(redo).digest == mv.digest
    assert Registry(tmp_path / "c").import_archive(arc).digest == mv.digest


# ================================================================ 2. FIFOs never block
@pytest.fixture
def populated(reg: Registry, tmp_path: Path):
    v1 = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 1000), alias="prod")
    v2 = reg.register("det", make_file(tmp_path, "b.onnx", b"b" * 1000))
    reg.set_alias("det", "prod", "2")
    return reg, v1, v2


def plant_fifo(path: Path) -> Path:
    if path.exists() or path.is_symlink():
        _dirs.remove_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return path


def test_fifo_as_lock_file(populated, tmp_path: Path) -> None:
    reg, _, _ = populated
    fifo = plant_fifo(tmp_path / "modelserve.lock")
    for call in (lambda: read_lock(fifo), lambda: resolve_for_load("det@prod", registry=reg, lock=fifo),
                 lambda: ms.load("det@prod", registry=reg, lock=fifo)):
        err = typed(call, RegistryError, "FIFO")
        assert str(fifo) in str(err)


def test_fifo_as_archive(reg: Registry, tmp_path: Path) -> None:
    fifo = plant_fifo(tmp_path / "det.tar")
    typed(lambda: reg.import_archive(fifo), RegistryError, "FIFO")
    assert reg.list_models() == []


def test_fifo_as_registry_marker(populated) -> None:
    reg, _, _ = populated
    plant_fifo(reg.root / "registry.json")
    typed(lambda: Registry(reg.root), RegistryError, "not a registry marker.*FIFO")
    typed(lambda: Registry(reg.root, read_only=True), RegistryError, "FIFO")


def test_fifo_as_version_pointer(populated) -> None:
    reg, _, v2 = populated
    plant_fifo(reg.root / "models" / "det" / "versions" / "1")
    typed(lambda: reg.resolve("det:1"), IntegrityError, "version pointer .* FIFO")
    typed(lambda: reg.list_versions("det"), IntegrityError, "FIFO")
    with no_hang():
        report = reg.verify()
        assert any("FIFO" in p.message for p in report.problems)
        plan = reg.gc(dry_run=True, min_age_s=0)
    assert not plan.blobs and not plan.trees  # an unreadable pointer: nothing of the store is collected
    with no_hang():
        assert reg.resolve("det:2") == v2


@pytest.mark.parametrize("locks", [True, False], ids=["flock", "no-flock"])
def test_fifo_as_alias_history(populated, monkeypatch, locks: bool) -> None:
    reg, _, _ = populated
    monkeypatch.setattr(_aliases, "USE_LOCKS", locks)
    hist = plant_fifo(reg.root / "models" / "det" / "aliases" / "prod.jsonl")
    for call in (lambda: reg.resolve("det@prod"), lambda: reg.aliases("det"), lambda: reg.alias_history("det", "prod"),
                 lambda: reg.set_alias("det", "prod", "1"), lambda: reg.rollback("det", "prod"),
                 lambda: resolve_for_load("det@prod", registry=reg)):
        err = typed(call, RegistryError, "FIFO")
        assert str(hist) in str(err)
    with no_hang():
        assert not reg.verify().ok
    assert stat.S_ISFIFO(os.lstat(hist).st_mode)


def test_fifo_alias_history_lock_and_append_do_not_block(populated) -> None:
    reg, v1, _ = populated
    hist = plant_fifo(reg.root / "models" / "det" / "aliases" / "canary.jsonl")
    with no_hang():
        lock = _aliases._Lock(hist)  # best effort: no lock on a FIFO, and no wait for a writer
        assert lock.fd is None
        lock.release()
    typed(lambda: _aliases.append_move(hist, op="set", version="1", digest=v1.digest, previous=None), RegistryError, "FIFO")
    assert stat.S_ISFIFO(os.lstat(hist).st_mode)


def test_fifo_as_verification_record(populated) -> None:
    reg, _, v2 = populated
    record = plant_fifo(reg.root / "state" / "verified" / f"{v2.digest[7:]}.json")
    with no_hang():
        assert resolve_for_load("det:2", registry=reg) == v2  # a cache: ignored, hashed again
        assert reg.verify().ok
    assert stat.S_ISREG(os.lstat(record).st_mode)  # replaced by a real record


def test_fifo_as_blob_or_manifest_blob(populated, tmp_path: Path) -> None:
    reg, v1, v2 = populated
    blob = reg.root / "blobs" / "sha256" / v1.files[0].hex[:2] / v1.files[0].hex
    plant_fifo(blob)
    with no_hang():
        report = reg.verify()
    assert any("FIFO" in p.message and p.subject == "det:1" for p in report.problems), report.problems
    typed(lambda: reg.export("det:1", tmp_path / "out.tar"), RegistryError, "FIFO")
    assert not (tmp_path / "out.tar").exists()
    mblob = reg.root / "blobs" / "sha256" / v2.digest[7:9] / v2.digest[7:]
    plant_fifo(mblob)
    typed(lambda: reg.resolve("det:2"), IntegrityError, "manifest of det:2 is unreadable.*FIFO")
    with no_hang():
        assert not reg.verify().ok
        plan = reg.gc(min_age_s=0)
    assert not plan.blobs and not plan.trees
    # registering the same content again repairs the FIFO-squatted blob without reading it
    with no_hang():
        again = reg.register("other", make_file(tmp_path, "a2.onnx", b"a" * 1000))
    assert stat.S_ISREG(os.lstat(blob).st_mode) and again.path.read_bytes() == b"a" * 1000


def test_fifo_as_artifact_source_or_record(populated, tmp_path: Path) -> None:
    reg, v1, _ = populated
    fifo = plant_fifo(tmp_path / "plan.bin")
    typed(lambda: reg.publish_artifact(v1.digest, {"k": "v"}, {"model.plan": fifo}), RegistryError, "FIFO")
    assert reg.find_artifact(v1.digest, {"k": "v"}) is None
    art = reg.publish_artifact(v1.digest, {"k": "w"}, {"model.plan": b"PLAN"})
    plant_fifo(art / "artifact.json")
    with no_hang():
        assert reg.find_artifact(v1.digest, {"k": "w"}) is None
    assert not list((reg.root / "tmp").iterdir())


def test_open_regular_names_what_it_refuses(tmp_path: Path) -> None:
    fifo = plant_fifo(tmp_path / "fifo")
    d = tmp_path / "dir"
    d.mkdir()
    sock_path = tmp_path / "sock"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(sock_path))
    try:
        for path, kind, flags in ((fifo, "FIFO", os.O_RDONLY), (fifo, "FIFO", os.O_WRONLY | os.O_APPEND),
                                  (d, "directory", os.O_RDONLY), (d, "directory", os.O_WRONLY),
                                  (sock_path, "socket", os.O_RDONLY)):
            with no_hang():
                with pytest.raises(RegistryError, match=f"{path} must be a regular file, got a {kind}"):
                    _fs.open_regular(path, flags)
    finally:
        sock.close()
    with pytest.raises(FileNotFoundError):
        _fs.open_regular(tmp_path / "missing")


# ================================================================ 3a. gc on a full disk
def _no_space_for_new_dirs(monkeypatch, fail: Callable[[Path], bool] = lambda p: True) -> list[str]:
    """Make the registry's mkdir point (``_fs._os_mkdir``) fail with ENOSPC for new directories."""
    calls: list[str] = []
    real = _fs._os_mkdir

    def mkdir(path: Any, mode: int = 0o777) -> None:
        p = Path(path)
        calls.append(p.name)
        if not os.path.lexists(p) and fail(p):
            raise OSError(errno.ENOSPC, "No space left on device", str(p))
        real(path, mode)

    monkeypatch.setattr(_fs, "_os_mkdir", mkdir)
    return calls


def _garbage(reg: Registry, tmp_path: Path, n: int = 3):
    keep = reg.register("keep", make_file(tmp_path, "keep.onnx", b"keep" * 500))
    gone = []
    for i in range(n):
        d = tmp_path / f"dir{i}"
        d.mkdir()
        for j in range(3):
            (d / f"f{j}.bin").write_bytes(bytes([i, j]) * 2000)
        (d / "model.xml").write_bytes(b"<net/>")
        mv = reg.register("old", d)
        reg.delete_version(mv.ref)
        gone.append(mv)
    return keep, gone


def _store_entries(reg: Registry) -> set[str]:
    out = set()
    for sub in ("blobs", "trees"):
        base = reg.root / sub
        if base.exists():
            out |= {p.name for p in base.rglob("*") if p.is_file() or p.parent == base}
    return out


def test_gc_without_room_for_its_trash_still_frees_unreferenced_files(reg: Registry, tmp_path: Path, monkeypatch) -> None:
    keep, gone = _garbage(reg, tmp_path)
    want = reg.gc(dry_run=True, min_age_s=0)
    assert want.blobs and want.trees
    _no_space_for_new_dirs(monkeypatch)
    plan = reg.gc(min_age_s=0)
    assert plan.done and sorted(plan.blobs) == sorted(want.blobs) and sorted(plan.trees) == sorted(want.trees)
    assert all(not p.exists() for p in plan.blobs + plan.trees)
    monkeypatch.undo()
    assert len(reg.gc(dry_run=True, min_age_s=0)) == 0
    assert reg.verify().ok and reg.resolve("keep:1") == keep
    assert not list((reg.root / "tmp").iterdir())


def test_gc_returns_to_its_trash_as_soon_as_space_is_freed(reg: Registry, tmp_path: Path, monkeypatch) -> None:
    _garbage(reg, tmp_path)
    want = reg.gc(dry_run=True, min_age_s=0)
    failed: list[str] = []

    def first_trash_fails(p: Path) -> bool:
        if p.name.startswith("gc-") and not failed:
            failed.append(p.name)
            return True
        return False

    calls = _no_space_for_new_dirs(monkeypatch, first_trash_fails)
    seen: list[str] = []
    monkeypatch.setattr(_faults, "hook", lambda step: seen.append(step))
    plan = reg.gc(min_age_s=0)
    assert failed and sum(c.startswith("gc-") for c in calls) == 2, calls
    assert "gc-trashed" in seen, "after freeing one entry gc should use its move-then-rescan trash again"
    assert len(plan.blobs) == len(want.blobs) and len(plan.trees) == len(want.trees)
    assert reg.verify().ok and not list((reg.root / "tmp").iterdir())


def test_gc_without_room_keeps_what_became_live(reg: Registry, tmp_path: Path, monkeypatch) -> None:
    """A blob gc planned to remove, reused by a version registered right after the plan, survives
    the direct (no-trash) removal too: the live set is read again before each removal."""
    src = make_file(tmp_path, "m.onnx", os.urandom(5000))
    reg.register("det", make_file(tmp_path, "keep.onnx", b"keep" * 100))
    reg.register("det", src, version="old")
    reg.delete_version("det:old")
    _no_space_for_new_dirs(monkeypatch, lambda p: p.name.startswith("gc-"))

    def reuse(step: str) -> None:
        if step == "gc-planned":
            _faults.hook = None
            reg.register("det", src)

    monkeypatch.setattr(_faults, "hook", reuse)
    reg.gc(min_age_s=0)
    monkeypatch.undo()
    mv = reg.resolve("det")
    assert mv.version == "2" and mv.path.read_bytes() == src.read_bytes()
    assert reg.verify().ok, reg.verify().problems


def test_gc_honours_min_age_without_room(reg: Registry, tmp_path: Path, monkeypatch) -> None:
    _garbage(reg, tmp_path, n=1)
    _no_space_for_new_dirs(monkeypatch)
    plan = reg.gc(min_age_s=3600)  # everything was just created
    assert not plan.blobs and not plan.trees


def test_gc_other_os_errors_are_typed(reg: Registry, tmp_path: Path, monkeypatch) -> None:
    _garbage(reg, tmp_path, n=1)

    def broken(path: Any, mode: int = 0o777) -> None:
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(_fs, "_os_mkdir", broken)
    typed(lambda: reg.gc(min_age_s=0), RegistryError, "gc .*failed.*Input/output error")
    monkeypatch.undo()
    assert reg.verify().ok


def _mount_tmpfs(where: Path, options: str) -> None:
    where.mkdir()
    try:
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)],
                           capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot run mount: {exc}")
    if r.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here: {r.stderr.strip() or r.returncode}")


def _fill(where: Path) -> None:
    """Use up every data block, then every inode, of the file system holding ``where``."""
    where.mkdir()
    with open(where / "big", "wb", buffering=0) as fh:  # unbuffered: close() has nothing left to flush
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    i = 0
    while True:
        try:
            (where / str(i)).touch()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
            break
        i += 1


def test_gc_on_a_full_tmpfs_frees_space_and_registration_works_again(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    _mount_tmpfs(mnt, "size=2m,nr_inodes=160")
    try:
        reg = Registry(mnt / "reg")
        keep = reg.register("keep", make_file(tmp_path, "keep.onnx", b"k" * 1000))
        d = tmp_path / "old"
        d.mkdir()
        for j in range(12):
            (d / f"w{j}.bin").write_bytes(os.urandom(40_000))
        (d / "model.xml").write_bytes(b"<net/>")
        reg.register("old", d)
        reg.delete_version("old:1")
        _fill(mnt / "filler")
        new = make_file(tmp_path, "new.onnx", os.urandom(8000))
        with pytest.raises(RegistryError, match="no space left"):
            reg.register("new", new)
        plan = reg.gc(min_age_s=0)
        assert plan.done and len(plan.blobs) >= 13 and plan.trees, plan
        assert os.statvfs(mnt).f_bfree > 0 and os.statvfs(mnt).f_ffree > 0
        mv = reg.register("new", new)
        assert resolve_for_load("new:1", registry=reg) == mv and mv.path.read_bytes() == new.read_bytes()
        assert reg.resolve("keep:1") == keep and reg.verify().ok
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=30)


# ================================================================ 3b. deep nesting
def _deep_dict(n: int) -> dict:
    d: dict = {}
    for _ in range(n):
        d = {"a": d}
    return d


def _deep_list(n: int) -> list:
    x: list = []
    for _ in range(n):
        x = [x]
    return x


@pytest.mark.parametrize("meta", [lambda: _deep_dict(100_000), lambda: {"x": _deep_list(100_000)}, lambda: _deep_dict(65)],
                         ids=["dict", "list", "65-levels"])
def test_deeply_nested_metadata_is_refused(reg: Registry, tmp_path: Path, meta) -> None:
    src = make_file(tmp_path, "m.onnx", b"m")
    typed(lambda: reg.register("det", src, metadata=meta()), InvalidInputError, "64 levels")
    assert reg.list_models() == []
    assert reg.register("det", src, metadata=_deep_dict(63)).metadata["a"]["a"] is not None


def test_self_referencing_and_exploding_metadata_is_refused(reg: Registry, tmp_path: Path) -> None:
    src = make_file(tmp_path, "m.onnx", b"m")
    loop: dict = {}
    loop["self"] = loop
    typed(lambda: reg.register("det", src, metadata=loop), InvalidInputError)
    assert reg.list_models() == []
    # 2**40 values once written out: json.dumps never returns and SIGALRM cannot stop it, so a subprocess
    script = (
        "import sys\n"
        "from modelserve._errors import InvalidInputError\n"
        "from modelserve._registry import Registry\n"
        "wide = [0]\n"
        "for _ in range(40):\n"
        "    wide = [wide, wide]\n"
        "try:\n"
        "    Registry(sys.argv[1]).register('det', sys.argv[2], metadata={'x': wide})\n"
        "except InvalidInputError as exc:\n"
        "    print('refused:', exc)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        r = subprocess.run([sys.executable, "-c", script, str(reg.root), str(src)], capture_output=True, text=True,
                           timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("register() with exploding shared metadata did not return within 60 s")
    assert r.returncode == 0 and r.stdout.startswith("refused:"), r
    assert reg.list_models() == []


def test_metadata_too_large_for_a_manifest_is_refused(reg: Registry, tmp_path: Path) -> None:
    src = make_file(tmp_path, "m.onnx", b"m")
    typed(lambda: reg.register("det", src, metadata={"x": "a" * (17 << 20)}), InvalidInputError, "bytes as JSON")
    assert reg.list_models() == []
    assert not (reg.root / "models" / "det" / "versions" / "1").exists()


def test_deeply_nested_lock_file_is_refused(populated, tmp_path: Path) -> None:
    reg, _, _ = populated
    lock = tmp_path / "deep.lock"
    for text in ("a = " + "[" * 100_000, "a = " + "{b = " * 100_000):
        lock.write_text(text)
        typed(lambda: read_lock(lock), RegistryError, "too deeply")
        typed(lambda: resolve_for_load("det@prod", registry=reg, lock=lock), RegistryError, "too deeply")


DEEP = b"[" * 100_000


def test_deeply_nested_json_in_registry_files(populated, tmp_path: Path) -> None:
    reg, v1, v2 = populated
    root = reg.root
    # alias history: a line that does not parse is ignored like a torn write
    with open(root / "models" / "det" / "aliases" / "prod.jsonl", "ab") as fh:
        fh.write(DEEP + b"\n")
    assert reg.resolve("det@prod") == v2
    # verification record: a cache, ignored
    record = root / "state" / "verified" / f"{v2.digest[7:]}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_bytes(DEEP)
    assert resolve_for_load("det:2", registry=reg) == v2
    # artifact record: no artifact
    art = reg.publish_artifact(v1.digest, {"k": "v"}, {"x.plan": b"x"})
    os.chmod(art / "artifact.json", 0o644)
    (art / "artifact.json").write_bytes(DEEP)
    assert reg.find_artifact(v1.digest, {"k": "v"}) is None
    # version pointer
    p1 = root / "models" / "det" / "versions" / "1"
    os.chmod(p1, 0o644)
    p1.write_bytes(DEEP)
    typed(lambda: reg.resolve("det:1"), IntegrityError, "version pointer")
    assert not reg.verify().ok
    assert not reg.gc(dry_run=True, min_age_s=0).blobs
    # the marker
    os.chmod(root / "registry.json", 0o644)
    (root / "registry.json").write_bytes(DEEP)
    typed(lambda: Registry(root), RegistryError, "marker")


def test_deeply_nested_manifest_in_an_archive(reg: Registry, tmp_path: Path) -> None:
    manifest, _ = exported_manifest(tmp_path)
    obj = json.loads(manifest)
    for deep in (DEEP, manifest.replace(b'"metadata":{}', b'"metadata":' + b'{"a":' * 900 + b"{}" + b"}" * 900)):
        assert deep != manifest
        data = header(b"manifest.json", b"0", len(deep)) + padded(deep) + END
        typed(lambda: reg.import_archive(write_archive(tmp_path / "deep.tar", data)), IntegrityError, "too deeply")  # noqa: B023 - called at once
    assert obj["metadata"] == {} and reg.list_models() == []


def test_deeply_nested_manifest_blob_in_the_store(populated) -> None:
    """A manifest blob whose bytes still match its name but nest too deeply (a registry written by
    something else) gives IntegrityError, not RecursionError."""
    import hashlib

    reg, _, _ = populated
    data = b'{"a":' * 100_000 + b"{}" + b"}" * 100_000
    hx = hashlib.sha256(data).hexdigest()
    blob = reg.root / "blobs" / "sha256" / hx[:2] / hx
    blob.parent.mkdir(parents=True, exist_ok=True)
    blob.write_bytes(data)
    ptr = reg.root / "models" / "det" / "versions" / "deep"
    ptr.write_bytes(json.dumps({"created_ns": 1, "manifest": "sha256:" + hx}).encode())
    typed(lambda: reg.resolve("det:deep"), IntegrityError, "too deeply")
    assert not reg.gc(dry_run=True, min_age_s=0).blobs


# ================================================================ 3c. a file as the registry root; the CLI
def test_registry_root_that_is_a_file(tmp_path: Path) -> None:
    f = tmp_path / "file"
    f.write_text("not a registry")
    for root in (f, f / "sub"):
        for ro in (False, True):
            err = typed(lambda: Registry(root, read_only=ro).list_models(), RegistryError, "is not a directory")  # noqa: B023
            assert str(root) in str(err)
    assert f.read_text() == "not a registry"


@pytest.mark.parametrize("root", ["file", "/etc/passwd"])
def test_cli_root_that_is_a_file(tmp_path: Path, root: str) -> None:
    if root == "file":
        root = str(tmp_path / "file")
        Path(root).write_text("x")
    elif not os.path.isfile(root):  # pragma: no cover
        pytest.skip(f"{root} does not exist here")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "modelserve", "registry", "--root", root, "ls"],
                       capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 1, r
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: ") and "is not a directory" in r.stderr


def test_cli_dispatch_turns_a_stray_os_error_into_one_line(capsys) -> None:
    import argparse

    def boom(args: argparse.Namespace) -> int:
        raise OSError(errno.EIO, "Input/output error", "/somewhere")

    assert cli.dispatch(argparse.Namespace(func=boom)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Input/output error" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("where", ["models", "trees", "artifacts", "state/verified", "blobs/sha256"])
def test_a_file_where_a_directory_belongs_gives_typed_errors(populated, tmp_path: Path, where: str) -> None:
    reg, _, _ = populated
    src = make_file(tmp_path, "n.onnx", b"n" * 10)
    reg.publish_artifact(reg.resolve("det:1").digest, {"k": "v"}, {"x.plan": b"x"})
    resolve_for_load("det:1", registry=reg)
    path = reg.root / where
    _dirs.remove_path(path)
    path.write_text("squatter")
    calls = [lambda: reg.gc(min_age_s=0), lambda: reg.gc(dry_run=True, min_age_s=0), reg.verify, reg.list_models,
             lambda: resolve_for_load("det:1", registry=reg), lambda: reg.register("new", src),
             lambda: reg.publish_artifact(reg.resolve("det:2").digest, {"k": "w"}, {"x.plan": b"x"})]
    for call in calls:
        try:
            with no_hang():
                call()
        except ModelserveError as exc:  # typed, with a message; anything else fails the test
            assert str(exc)
    assert path.read_text() == "squatter"


def test_a_file_in_place_of_tmp_is_collected(populated, tmp_path: Path) -> None:
    reg, _, _ = populated
    _dirs.remove_path(reg.root / "tmp")
    (reg.root / "tmp").write_text("junk")
    typed(lambda: reg.register("new", make_file(tmp_path, "n.onnx", b"n")), RegistryError, "should be a directory")
    plan = reg.gc(min_age_s=0)
    assert reg.root / "tmp" in plan.staging
    assert reg.register("new", make_file(tmp_path, "n.onnx", b"n")).version == "1"


# ================================================================ 3d. special files as destinations
def _special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"dest-{kind}"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        try:
            os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 7))  # like /dev/full, but ours
        except (PermissionError, OSError) as exc:
            pytest.skip(f"cannot create a device node here: {exc}")
    elif kind == "directory":
        path.mkdir()
        (path / "inside").write_text("keep me")
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(path))
        s.close()
    return path


def _still(path: Path, kind: str) -> None:
    mode = os.lstat(path).st_mode
    test = {"fifo": stat.S_ISFIFO, "chardev": stat.S_ISCHR, "directory": stat.S_ISDIR, "socket": stat.S_ISSOCK}[kind]
    assert test(mode), f"{path} is no longer a {kind}"
    if kind == "directory":
        assert (path / "inside").read_text() == "keep me"


KINDS = ["fifo", "chardev", "directory", "socket"]


@pytest.mark.parametrize("kind", KINDS)
def test_export_refuses_special_destinations(populated, tmp_path: Path, kind: str) -> None:
    reg, _, _ = populated
    dest = _special(tmp_path, kind)
    err = typed(lambda: reg.export("det:1", dest), RegistryError, "not a regular file")
    assert str(dest) in str(err)
    _still(dest, kind)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")] == []


@pytest.mark.parametrize("kind", KINDS)
def test_write_lock_refuses_special_destinations(populated, tmp_path: Path, kind: str) -> None:
    reg, _, _ = populated
    dest = _special(tmp_path, kind)
    typed(lambda: reg.write_lock(["det@prod"], dest), RegistryError, "not a regular file")
    _still(dest, kind)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")] == []


def test_export_and_lock_still_replace_regular_files(populated, tmp_path: Path) -> None:
    reg, v1, _ = populated
    for dest in (tmp_path / "x.tar", tmp_path / "x.lock"):
        dest.write_text("old")
    assert reg.export("det:1", tmp_path / "x.tar").stat().st_size > 100
    assert "det@prod" in reg.write_lock(["det@prod"], tmp_path / "x.lock").read_text()
    assert Registry(tmp_path / "other").import_archive(tmp_path / "x.tar").digest == v1.digest


# ================================================================ 3e. failed staged writes leave nothing behind
def _tmp_entries(reg: Registry) -> list[str]:
    tmp = reg.root / "tmp"
    return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []


def test_failed_verification_record_write_leaves_no_tmp_file(reg: Registry, tmp_path: Path, monkeypatch) -> None:
    mv = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 5000))
    undo = fail_writes_after(monkeypatch, 0)
    try:
        assert resolve_for_load("det:1", registry=reg) == mv  # the record is a cache: its failure is ignored
    finally:
        undo()
    assert _tmp_entries(reg) == []
    reg.gc(min_age_s=0)
    assert _tmp_entries(reg) == []


def test_failed_tombstone_and_marker_writes_leave_no_tmp_file(reg: Registry, tmp_path: Path, monkeypatch) -> None:
    reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 5000))
    undo = fail_writes_after(monkeypatch, 0)
    try:
        typed(lambda: reg.delete_version("det:1"), RegistryError, "no space left")
        fresh = Registry(tmp_path / "fresh")
        typed(lambda: fresh.register("det", make_file(tmp_path, "b.onnx", b"b")), RegistryError, "no space left")
        typed(lambda: reg.set_alias("det", "prod", "1"), RegistryError, "no space left")
    finally:
        undo()
    assert _tmp_entries(reg) == [] and _tmp_entries(fresh) == []
    assert reg.resolve("det:1").version == "1"


def test_gc_removes_dead_leftovers_of_its_own_process(reg: Registry, tmp_path: Path) -> None:
    """Leftovers named after this very process (e.g. by an older modelserve, or a write whose
    cleanup failed) are collected: only entries the process is still using count as alive."""
    reg.register("det", make_file(tmp_path, "a.onnx", b"a"))
    name = _staging.staging_name("w")
    _staging.staging_done(name)
    left = reg.root / "tmp" / f"{name}.tmp"
    left.write_bytes(b"half a record")
    plan = reg.gc()  # default ages: only dead entries go
    assert left in plan.staging and not left.exists()


def test_gc_keeps_staging_entries_in_use_by_its_own_process(reg: Registry, tmp_path: Path) -> None:
    src = make_file(tmp_path, "a.onnx", b"a" * 1000)
    seen: list[Path] = []

    def collect(step: str) -> None:
        if step == "blobs":
            seen.extend(reg.gc(min_age_s=0).staging)

    _faults.hook = collect
    try:
        mv = reg.register("det", src)
    finally:
        _faults.hook = None
    assert not seen and mv.path.read_bytes() == src.read_bytes() and reg.verify().ok


# ================================================================ 4. check() racing gc
def test_check_while_gc_loops_never_reports_a_live_version_missing(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    reader = Registry(reg.root, read_only=True)
    stop = threading.Event()
    errors: list[BaseException] = []

    def collect() -> None:
        g = Registry(reg.root)
        while not stop.is_set():
            try:
                g.gc(min_age_s=0)
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

    t = threading.Thread(target=collect, daemon=True)
    t.start()
    checked = 0
    deadline = time.monotonic() + 6.0
    try:
        i = 0
        while time.monotonic() < deadline:
            d = tmp_path / f"m{i}"
            d.mkdir()
            for j in range(4):
                (d / f"f{j}.bin").write_bytes(os.urandom(64) + bytes([j]))
            (d / "model.xml").write_bytes(b"<net/>")
            mv = reg.register("det", d)
            for r in (reg, reader):
                for ref in (mv.ref, f"det:{1 + (i * 7) % (i + 1)}"):
                    got = r.resolve(ref)
                    r.check(got, full=True)
                    r.check(got)
                    checked += 1
            i += 1
    finally:
        stop.set()
        t.join(30)
    assert not errors, errors[:3]
    assert checked > 20
    assert reg.verify().ok, reg.verify().problems


# ================================================================ deep directories (os.walk / rmtree recurse in 3.11)
def _deep_dirs(root: Path, depth: int) -> Path:
    """``root/a/a/.../a/f.bin``, ``depth`` levels deep (made without recursion)."""
    q = str(root)
    os.makedirs(q, exist_ok=True)
    for _ in range(depth):
        q = os.path.join(q, "a")
        os.mkdir(q)
    Path(q, "f.bin").write_bytes(b"x")
    return root


def test_deeply_nested_directories_give_typed_results(reg: Registry, tmp_path: Path) -> None:
    src = tmp_path / "deep-src"
    src.mkdir()
    (src / "model.xml").write_text("<net/>")
    _deep_dirs(src / "d", 1200)
    try:
        typed(lambda: reg.register("det", src), RegistryError, "1-1024 characters")
        assert reg.list_models() == []
        mv = reg.register("det", make_file(tmp_path, "m.onnx", b"m" * 10))
        junk = _deep_dirs(reg.root / "tmp" / "junk", 1200)
        plan = reg.gc(min_age_s=0, staging_max_age_s=0)
        assert junk in plan.staging and not junk.exists()
        stray = _deep_dirs(reg.root / "trees" / ("0" * 64), 1200)
        plan = reg.gc(min_age_s=0)
        assert stray in plan.trees and not stray.exists() and plan.bytes >= 1
        assert reg.verify().ok and reg.resolve("det:1") == mv
    finally:
        _dirs.remove_path(src)
    assert not src.exists()


def test_walk_matches_os_walk(tmp_path: Path) -> None:
    top = tmp_path / "t"
    (top / "a" / "b").mkdir(parents=True)
    (top / "c").mkdir()
    (top / "a" / "f").write_text("f")
    (top / "a" / "b" / "g").write_text("g")
    os.symlink(top / "c", top / "a" / "link-to-dir")
    os.symlink(top / "a" / "f", top / "link-to-file")
    os.symlink(tmp_path / "nowhere", top / "dangling")
    norm = lambda rows: sorted((d, sorted(ds), sorted(fs)) for d, ds, fs in rows)  # noqa: E731
    assert norm(_dirs.walk(top)) == norm(os.walk(top, followlinks=False))
    _dirs.remove_path(top / "a")  # removes the link, not the directory it points to
    assert (top / "c").is_dir() and not (top / "a").exists()
