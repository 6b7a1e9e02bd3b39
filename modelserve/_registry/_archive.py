"""Export one version to a tar archive, and import such archives safely.

An archive holds exactly: ``manifest.json`` first (the manifest's exact bytes, so the version
keeps its digest across machines), then ``blobs/<hex>`` for each distinct file content. On
import nothing is extracted by ``tarfile``: each member is checked (regular file, expected
name, expected size; no absolute paths, ``..``, links, devices or extra members) and streamed
into the registry's staging area while hashed; then the version is published exactly as
:meth:`Registry.register` publishes (blobs, manifest, tree, then the write-once pointer).

Hostile archives are refused with :class:`RegistryError` before they cost memory, disk or CPU:
the decompressed stream is capped (in all, and per read), PAX and GNU long-name headers are
limited to 64 KiB each (1 MiB in all) and to 8 in a row (``tarfile`` recurses once per header),
PAX records are checked before ``tarfile`` parses them (well-formed, no run of more than 256
digits: Python's own regexes are quadratic on those), sparse members (GNU ``S`` headers and PAX
``GNU.sparse.*`` records, formats 0.0, 0.1 and 1.0) are refused at their header, before
``tarfile`` reads a sparse map that can be made to grow without bound, and any other parsing
error of a malformed header (``ValueError``, ``IndexError``, ``struct.error``) is reported as a
corrupt archive. The manifest's total size must be within ``max_bytes`` and fit on the disk.
Everything is staged before anything is published, and what was published is withdrawn if
the import fails (a full disk leaves the registry unchanged).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import struct
import tarfile
import time
import zlib
from pathlib import Path
from typing import Any, Literal

from .._errors import IntegrityError, InvalidInputError, ModelserveError, RegistryError, VersionConflictError
from . import _fs, _store
from ._manifest import canonical_bytes, parse_manifest
from ._types import ModelVersion

__all__ = ["export_version", "import_version", "DEFAULT_MAX_BYTES"]

_MANIFEST = "manifest.json"
_MAX_MANIFEST = _store.MAX_MANIFEST
_MAX_HEADER = 64 << 10  # one PAX / GNU long-name header
_MAX_HEADERS_TOTAL = 1 << 20  # all of them together
_MAX_READ = _MAX_MANIFEST + (1 << 20)  # the largest single read tarfile or we make
_MAX_CHAIN = 8  # extension headers (PAX, GNU long name) in a row before one member
_MAX_DIGITS = 256  # longest run of digits in a PAX header
_DIGITS = re.compile(rb"[0-9]+")
#: What ``tarfile`` raises on some malformed headers instead of a ``TarError``.
_PARSE_ERRORS = (ValueError, IndexError, struct.error)
_DISK_MARGIN = 16 << 20
#: Default cap on the bytes of files one archive may hold (``import_archive(max_bytes=...)``).
DEFAULT_MAX_BYTES = 16 << 30


def _mode(dest: Path) -> Literal["w:gz", "w"]:
    name = dest.name.lower()
    return "w:gz" if name.endswith((".tar.gz", ".tgz")) else "w"


def export_version(reg: Any, ref: str, dest: Path) -> Path:
    """See :meth:`Registry.export`. Checks every file's digest while writing; an existing
    ``dest`` must be a regular file (a FIFO, device, socket or directory is left untouched)."""
    mv = reg.resolve(ref)
    mhex = _store.hex_of(mv.digest)
    data = _store.read_manifest_blob(reg._layout, mhex, where=mv.ref)
    dest = dest.absolute()
    try:
        _fs.refuse_special(dest, f"cannot export {mv.ref}: destination")
        with _fs.staging_path(dest.parent, f".{dest.name}.export", ".tmp") as tmp:
            _write_archive(reg, mv, data, tmp, _mode(dest))
            _fs.refuse_special(dest, f"cannot export {mv.ref}: destination")
            os.replace(tmp, dest)
    except OSError as exc:
        raise RegistryError(f"exporting {mv.ref} to {dest} failed: {exc}") from exc
    return dest


def _write_archive(reg: Any, mv: ModelVersion, data: bytes, tmp: Path, mode: Literal["w:gz", "w"]) -> None:
    """Write the manifest ``data`` and every distinct blob of ``mv`` to the new archive ``tmp``."""
    with tarfile.open(tmp, mode, format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(_MANIFEST)
        info.size, info.mode, info.mtime = len(data), 0o444, 0
        tar.addfile(info, io.BytesIO(data))
        done = set()
        for f in mv.files:
            if f.hex in done:
                continue
            done.add(f.hex)
            blob = reg._layout.blob(f.hex)
            actual, size = _fs.hash_file(blob)
            if actual != f.hex or size != f.size:
                raise IntegrityError(f"{mv.ref}: {f.path!r} expected {f.digest}, got sha256:{actual}; not exporting")
            info = tarfile.TarInfo(f"blobs/{f.hex}")
            info.size, info.mode, info.mtime = f.size, 0o444, 0
            with _fs.open_read(blob) as fh:
                tar.addfile(info, fh)


def _refuse(path: Path, member: tarfile.TarInfo, why: str) -> RegistryError:
    return RegistryError(f"archive {path}: member {member.name!r:.200} refused: {why}")


def _where(tar: Any) -> str:
    """``archive <path>`` for messages raised inside ``tarfile``'s hooks."""
    path = getattr(getattr(tar, "fileobj", None), "_path", None)
    return f"archive {path}" if path is not None else "archive"


def _check_pax_records(where: str, buf: bytes, size: int) -> None:
    """Refuse a PAX header unless its first ``size`` bytes are well-formed ``"<len> <key>=<value>\\n"``
    records (NUL padding aside) without ``GNU.sparse.*`` keys, a bad ``hdrcharset`` or a run of
    more than :data:`_MAX_DIGITS` digits anywhere in ``buf`` (all linear-time checks)."""
    longest = max((m.end() - m.start() for m in _DIGITS.finditer(buf)), default=0)
    if longest > _MAX_DIGITS:
        raise RegistryError(f"{where}: PAX header with a run of {longest} digits refused (at most {_MAX_DIGITS})")
    records = buf[:size]
    content = len(records.rstrip(b"\0"))
    pos = 0
    while pos < content:
        space = records.find(b" ", pos, pos + 21)
        if space <= pos or not records[pos:space].isdigit():
            raise RegistryError(f"{where}: malformed PAX header: no record length at byte {pos}")
        end = pos + int(records[pos:space])
        keyword, eq, value = records[space + 1:end - 1].partition(b"=")
        if end <= space + 2 or end > len(records) or records[end - 1:end] != b"\n" or not eq or not keyword:
            raise RegistryError(f"{where}: malformed PAX header: bad record at byte {pos}")
        if keyword.startswith(b"GNU.sparse."):
            raise RegistryError(
                f"{where}: sparse member refused (PAX {keyword.decode('ascii', 'replace')} record); "
                f"archives written by Registry.export hold only regular files"
            )
        if keyword == b"hdrcharset":
            try:
                value.decode("utf-8")
            except UnicodeDecodeError:
                raise RegistryError(f"{where}: malformed PAX header: hdrcharset is not UTF-8") from None
        pos = end


class _SafeTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses, before ``tarfile`` acts on them: PAX and GNU long-name headers
    larger than :data:`_MAX_HEADER` (a 100-byte archive can claim a 1 GiB header), more than
    :data:`_MAX_CHAIN` of them in a row (each one recurses), PAX records that are malformed,
    hold long runs of digits or ``GNU.sparse.*`` keys, and GNU sparse (``S``) headers, whose
    chain of extension blocks ``tarfile`` would read without limit."""

    def _limit(self, tar: tarfile.TarFile) -> None:
        if self.size > _MAX_HEADER:
            raise RegistryError(
                f"{_where(tar)}: header (PAX or GNU long name) of {self.size} bytes refused: "
                f"the limit is {_MAX_HEADER} bytes"
            )
        total = getattr(tar, "_modelserve_header_bytes", 0) + self.size + tarfile.BLOCKSIZE
        if total > _MAX_HEADERS_TOTAL:
            raise RegistryError(
                f"{_where(tar)}: headers (PAX or GNU long name) exceed {_MAX_HEADERS_TOTAL} bytes in all; refused"
            )
        tar._modelserve_header_bytes = total  # type: ignore[attr-defined]

    def _chained(self, tar: tarfile.TarFile, proc: Any) -> Any:
        depth = getattr(tar, "_modelserve_chain", 0) + 1
        if depth > _MAX_CHAIN:
            raise RegistryError(
                f"{_where(tar)}: more than {_MAX_CHAIN} extension headers in a row (PAX or GNU long name) refused"
            )
        tar._modelserve_chain = depth  # type: ignore[attr-defined]
        try:
            return proc(tar)
        finally:
            tar._modelserve_chain = depth - 1  # type: ignore[attr-defined]

    def _proc_gnulong(self, tarfile):  # type: ignore[no-untyped-def]  # noqa: ANN001 - tarfile's hook
        self._limit(tarfile)
        return self._chained(tarfile, super()._proc_gnulong)

    def _proc_pax(self, tarfile):  # type: ignore[no-untyped-def]  # noqa: ANN001 - tarfile's hook
        self._limit(tarfile)
        peek = getattr(tarfile.fileobj, "peek_exact", None)
        if peek is not None:
            _check_pax_records(_where(tarfile), peek(self._block(self.size)), self.size)
        return self._chained(tarfile, super()._proc_pax)

    def _proc_sparse(self, tarfile):  # type: ignore[no-untyped-def]  # noqa: ANN001 - tarfile's hook
        raise RegistryError(
            f"{_where(tarfile)}: sparse member refused (GNU sparse header of {self.name!r:.200}); "
            f"archives written by Registry.export hold only regular files"
        )

    def _refuse_pax_sparse(self, version: str) -> None:
        raise RegistryError(
            f"archive: sparse member refused (PAX GNU sparse format {version}); "
            f"archives written by Registry.export hold only regular files"
        )

    # Reached only where PAX records were not checked first (no peek_exact on the stream). Their
    # parameters differ between Python versions; these refuse whatever they are called with.
    def _proc_gnusparse_00(self, *args: Any) -> None:
        self._refuse_pax_sparse("0.0")

    def _proc_gnusparse_01(self, *args: Any) -> None:
        self._refuse_pax_sparse("0.1")

    def _proc_gnusparse_10(self, *args: Any) -> None:
        self._refuse_pax_sparse("1.0")


class _CappedStream(io.RawIOBase):
    """The (decompressed) archive stream, refusing to yield more than ``cap`` bytes in all or
    more than :data:`_MAX_READ` in one read, so no header can make ``tarfile`` allocate or
    inflate without bound. Breaches raise :class:`RegistryError`."""

    def __init__(self, inner: Any, path: Path, cap: int) -> None:
        super().__init__()
        self._inner = inner
        self._path = path
        self.cap = cap
        self._pending = b""  # bytes peeked at but not yet read (they precede the inner position)

    def _check(self) -> None:
        if self._inner.tell() > self.cap:
            raise RegistryError(f"archive {self._path} unpacks to more than {self.cap} bytes; refused")

    def read(self, n: int = -1) -> bytes:  # type: ignore[override]
        if n is None or n < 0 or n > _MAX_READ:
            raise RegistryError(f"archive {self._path}: a record of {n} bytes refused (more than {_MAX_READ} at once)")
        head, self._pending = self._pending[:n], self._pending[n:]
        if len(head) == n:
            return head
        data = self._inner.read(n - len(head))
        self._check()
        return head + data

    def peek_exact(self, n: int) -> bytes:
        """The next (up to) ``n`` bytes, left to be read again (lets a header be checked before
        ``tarfile`` parses it)."""
        data = self.read(n)
        self._pending = data + self._pending
        return data

    def readinto(self, b: Any) -> int:
        data = self.read(len(b))
        b[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset, whence = self.tell() + offset, io.SEEK_SET
        if whence == io.SEEK_SET and self.tell() <= offset <= self._inner.tell():
            self._pending = self._pending[offset - self.tell():]  # within what was peeked at
            return offset
        self._pending = b""
        pos = self._inner.seek(offset, whence)
        self._check()
        return int(pos)

    def tell(self) -> int:
        return int(self._inner.tell()) - len(self._pending)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            super().close()


def _open_stream(raw: Any, path: Path, cap: int) -> _CappedStream:
    """Decompress by magic number (gzip, bzip2, xz, or none) and cap the result."""
    magic = raw.read(6)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        inner: Any = gzip.GzipFile(fileobj=raw, mode="rb")
    elif magic[:3] == b"BZh":
        inner = bz2.BZ2File(raw, "rb")
    elif magic == b"\xfd7zXZ\x00":
        inner = lzma.LZMAFile(raw, "rb")
    else:
        inner = raw
    return _CappedStream(inner, path, cap)


def import_version(reg: Any, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ModelVersion:
    """See :meth:`Registry.import_archive`."""
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
        raise InvalidInputError(f"max_bytes must be a positive int, got {max_bytes!r}")
    try:
        raw = _fs.open_read(path)
    except OSError as exc:
        raise RegistryError(f"{path} is not a readable tar archive: {exc}") from exc
    created: list[Path] = []  # blobs and trees this import published, discarded if it fails
    stream: _CappedStream | None = None
    try:
        try:
            stream = _open_stream(raw, path, max_bytes + _MAX_MANIFEST + (64 << 20))
            tar = tarfile.open(fileobj=stream, mode="r:", tarinfo=_SafeTarInfo)  # type: ignore[call-overload]
        except ModelserveError:
            raise
        except (OSError, EOFError, tarfile.TarError, lzma.LZMAError, zlib.error, *_PARSE_ERRORS) as exc:
            raise RegistryError(f"{path} is not a readable tar archive: {exc}") from exc
        reg._init_root()
        with tar, reg._staging("import") as stage:
            return _import(reg, path, tar, stream, stage, max_bytes, created)
    except ModelserveError:
        reg._discard(created)
        raise
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, *_PARSE_ERRORS) as exc:
        reg._discard(created)
        raise RegistryError(f"archive {path} is corrupt: {exc}") from exc
    except OSError as exc:
        reg._discard(created)
        raise _fs.os_error(f"importing {path}", exc) from exc
    except BaseException:
        reg._discard(created)
        raise
    finally:
        if stream is not None:
            stream.close()
        raw.close()


def _import(
    reg: Any, path: Path, tar: tarfile.TarFile, stream: _CappedStream, stage: Path, max_bytes: int, created: list[Path]
) -> ModelVersion:
    layout = reg._layout
    first = tar.next()
    if first is None:
        raise RegistryError(f"archive {path} is empty")
    if first.name != _MANIFEST or not first.isreg():
        raise _refuse(path, first, f"the first member must be the regular file {_MANIFEST!r}")
    if first.size > _MAX_MANIFEST:
        raise _refuse(path, first, f"manifest larger than {_MAX_MANIFEST} bytes")
    fh = tar.extractfile(first)
    data = fh.read(_MAX_MANIFEST + 1) if fh else b""
    if len(data) != first.size:
        raise IntegrityError(f"archive {path}: manifest is {len(data)} bytes, header says {first.size}")
    mhex = hashlib.sha256(data).hexdigest()
    m = parse_manifest(data, where=f"in archive {path}")
    try:
        canonical = canonical_bytes(m.to_json())
    except ValueError as exc:
        raise IntegrityError(f"archive {path}: manifest cannot be encoded again: {exc}") from exc
    if canonical != data:
        raise IntegrityError(f"archive {path}: manifest is not in canonical form")
    expected = {f.hex: f.size for f in m.files}
    total = sum(expected.values())
    if total > max_bytes:
        raise RegistryError(f"archive {path} holds {total} bytes of files, more than max_bytes={max_bytes}; refused")
    existing_ptr = reg._read_pointer(m.name, m.version)
    if existing_ptr is not None:
        return _existing(reg, m, mhex, existing_ptr)
    free = shutil.disk_usage(layout.tmp).free
    if free < total + _DISK_MARGIN:
        raise RegistryError(
            f"importing {path} needs {total} bytes but only {free} are free under {reg.root}; the registry is unchanged"
        )
    # The rest of the stream: one header (plus padding) per blob, then the end blocks.
    stream.cap = min(stream.cap, stream.tell() + total + (len(expected) + 4) * (2 * _MAX_HEADER + 4096) + (1 << 20))
    sources: dict[str, Path] = {}
    while True:
        member = tar.next()
        if member is None:
            break
        name = member.name
        if not (member.isreg() and member.type in (tarfile.REGTYPE, tarfile.AREGTYPE)):
            raise _refuse(path, member, "only regular files are allowed (no links, devices, directories)")
        if name.startswith(("/", "\\")) or ".." in name.split("/") or "\\" in name or ":" in name:
            raise _refuse(path, member, "absolute or parent-relative path")
        if not name.startswith("blobs/") or name[len("blobs/"):] not in expected:
            raise _refuse(path, member, "not a blob listed in the manifest")
        hx = name[len("blobs/"):]
        if hx in sources:
            raise _refuse(path, member, "duplicate member")
        if member.size != expected[hx]:
            raise IntegrityError(f"archive {path}: blobs/{hx} is {member.size} bytes, manifest says {expected[hx]}")
        src = tar.extractfile(member)
        if src is None:
            raise _refuse(path, member, "cannot be read")
        dest = stage / hx
        try:
            actual, size = _fs.stream_hashing(src, dest, limit=expected[hx])
        except ValueError as exc:
            raise IntegrityError(f"archive {path}: blobs/{hx}: {exc}") from exc
        if actual != hx or size != expected[hx]:
            raise IntegrityError(
                f"archive {path}: blobs/{hx} has sha256:{actual} ({size} bytes), expected sha256:{hx} ({expected[hx]} bytes)"
            )
        sources[hx] = dest
    missing = sorted(set(expected) - set(sources))
    if missing:
        raise IntegrityError(f"archive {path} lacks blobs listed in its manifest: {missing}")
    # Everything is written in the staging area first (blobs, manifest, pointer), so a full
    # disk stops the import before anything is published; publishing is links and renames.
    mstaged = stage / f"manifest-{mhex}"
    _fs.write_new_file(mstaged, data, readonly=True)
    pstaged = stage / "pointer"
    ptr = {"created_ns": time.time_ns(), "manifest": "sha256:" + mhex}
    _fs.write_new_file(pstaged, canonical_bytes(ptr), readonly=True)
    for hx, staged in sources.items():
        _fs.make_readonly(staged)
        if _store.put_blob(layout, staged, hx, expected[hx]):
            created.append(layout.blob(hx))
    if _store.put_blob(layout, mstaged, mhex, len(data)):
        created.append(layout.blob(mhex))
    sources[mhex] = mstaged
    if not layout.tree(mhex).is_dir():
        created.append(layout.tree(mhex))
    _store.materialize_tree(layout, m, mhex, sources)
    if not _fs.link_new(pstaged, layout.pointer(m.name, m.version)):
        return _existing(reg, m, mhex, reg._read_pointer(m.name, m.version))
    del created[:]  # referenced now: nothing to discard on a later error
    reg._ensure_published(m, mhex, sources)
    return reg._version(m.name, m.version, ptr)


def _existing(reg: Any, m: Any, mhex: str, ptr: Any) -> ModelVersion:
    if ptr is None or ptr.get("deleted") or ptr["manifest"] != "sha256:" + mhex:
        theirs = "deleted" if ptr and ptr.get("deleted") else (ptr or {}).get("manifest")
        raise VersionConflictError(
            f"version {m.name}:{m.version} already exists with other content: expected {theirs}, got sha256:{mhex}"
        )
    return reg._version(m.name, m.version, ptr)
