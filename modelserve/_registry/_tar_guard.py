"""Reading untrusted tar archives without letting them cost unbounded memory, disk or CPU.

``tarfile`` trusts its input: a 100-byte archive can claim a 1 GiB PAX header, chain headers
until it recurses too deep, describe a sparse map that grows without bound, or hold PAX
records that make Python's own regexes quadratic. :func:`open_stream` decompresses (gzip,
bzip2, xz or none, by magic number) behind :class:`CappedStream`, which refuses to yield more
than a cap in all or :data:`MAX_READ` bytes in one read, and :class:`SafeTarInfo` (pass it as
``tarinfo=``) refuses, before ``tarfile`` acts on them: PAX and GNU long-name headers over
:data:`MAX_HEADER` (64 KiB) each or 1 MiB in all, more than 8 of them in a row, PAX records
that are malformed, hold a run of more than 256 digits or ``GNU.sparse.*`` keys, and GNU sparse
(``S``) headers. Every refusal is a :class:`RegistryError`; other parsing errors of malformed
headers are among :data:`PARSE_ERRORS`.

Example::

    stream = open_stream(raw_file, path, cap=max_bytes)
    tar = tarfile.open(fileobj=stream, mode="r:", tarinfo=SafeTarInfo)
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import struct
import tarfile
from pathlib import Path
from typing import Any

from .._errors import RegistryError
from . import _blobs

__all__ = ["SafeTarInfo", "CappedStream", "open_stream", "PARSE_ERRORS", "MAX_HEADER", "MAX_READ"]

#: One PAX / GNU long-name header.
MAX_HEADER = 64 << 10
MAX_HEADERS_TOTAL = 1 << 20  # all of them together
#: The largest single read tarfile (or an importer) may make: a manifest, and some.
MAX_READ = _blobs.MAX_MANIFEST + (1 << 20)
_MAX_CHAIN = 8  # extension headers (PAX, GNU long name) in a row before one member
_MAX_DIGITS = 256  # longest run of digits in a PAX header
_DIGITS = re.compile(rb"[0-9]+")
#: What ``tarfile`` raises on some malformed headers instead of a ``TarError``.
PARSE_ERRORS = (ValueError, IndexError, struct.error)


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


class SafeTarInfo(tarfile.TarInfo):
    """A TarInfo that refuses, before ``tarfile`` acts on them: PAX and GNU long-name headers
    larger than :data:`MAX_HEADER` (a 100-byte archive can claim a 1 GiB header), more than
    :data:`_MAX_CHAIN` of them in a row (each one recurses), PAX records that are malformed,
    hold long runs of digits or ``GNU.sparse.*`` keys, and GNU sparse (``S``) headers, whose
    chain of extension blocks ``tarfile`` would read without limit."""

    def _limit(self, tar: tarfile.TarFile) -> None:
        if self.size > MAX_HEADER:
            raise RegistryError(
                f"{_where(tar)}: header (PAX or GNU long name) of {self.size} bytes refused: "
                f"the limit is {MAX_HEADER} bytes"
            )
        total = getattr(tar, "_modelserve_header_bytes", 0) + self.size + tarfile.BLOCKSIZE
        if total > MAX_HEADERS_TOTAL:
            raise RegistryError(
                f"{_where(tar)}: headers (PAX or GNU long name) exceed {MAX_HEADERS_TOTAL} bytes in all; refused"
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


class CappedStream(io.RawIOBase):
    """The (decompressed) archive stream, refusing to yield more than ``cap`` bytes in all or
    more than :data:`MAX_READ` in one read, so no header can make ``tarfile`` allocate or
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
        if n is None or n < 0 or n > MAX_READ:
            raise RegistryError(f"archive {self._path}: a record of {n} bytes refused (more than {MAX_READ} at once)")
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


def open_stream(raw: Any, path: Path, cap: int) -> CappedStream:
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
    return CappedStream(inner, path, cap)
