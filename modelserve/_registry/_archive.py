"""Export one version to a tar archive, and import such archives safely.

An archive holds exactly: ``manifest.json`` first (the manifest's exact bytes, so the version
keeps its digest across machines), then ``blobs/<hex>`` for each distinct file content. On
import nothing is extracted by ``tarfile``: each member is checked (regular file, expected
name, expected size; no absolute paths, ``..``, links, devices or extra members) and streamed
into the registry's staging area while hashed; then the version is published as
:meth:`Registry.register` publishes (blobs, manifest, tree, then the write-once pointer).

Hostile archives are refused with :class:`RegistryError` before they cost memory, disk or CPU
(``_tar_guard``: the decompressed stream is capped, in all and per read; PAX and GNU long-name
headers are bounded in size and in how many come in a row; PAX records are checked before
``tarfile`` parses them; sparse members are refused at their header), and any other parsing
error of a malformed header (``ValueError``, ``IndexError``, ``struct.error``) is reported as a
corrupt archive. The manifest's total size must be within ``max_bytes`` and fit on the disk.
Everything is staged before anything is published, and what was published is withdrawn if
the import fails (a full disk leaves the registry unchanged).
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import shutil
import tarfile
import zlib
from pathlib import Path
from typing import Literal

from .._errors import IntegrityError, InvalidInputError, ModelserveError, RegistryError, VersionConflictError
from . import _blobs, _fs
from ._gc import discard
from ._manifest import Manifest, canonical_bytes, parse_manifest
from ._staging import staging_path
from ._store import Pointer, Store
from ._tar_guard import MAX_HEADER, PARSE_ERRORS, CappedStream, SafeTarInfo, open_stream
from ._types import ModelVersion

__all__ = ["export_version", "import_version", "DEFAULT_MAX_BYTES"]

_MANIFEST = "manifest.json"
_MAX_MANIFEST = _blobs.MAX_MANIFEST
_DISK_MARGIN = 16 << 20
#: Default cap on the bytes of files one archive may hold (``import_archive(max_bytes=...)``).
DEFAULT_MAX_BYTES = 16 << 30


def _mode(dest: Path) -> Literal["w:gz", "w"]:
    name = dest.name.lower()
    return "w:gz" if name.endswith((".tar.gz", ".tgz")) else "w"


def export_version(store: Store, mv: ModelVersion, dest: Path) -> Path:
    """See :meth:`Registry.export`. Checks every file's digest while writing; an existing
    ``dest`` must be a regular file (a FIFO, device, socket or directory is left untouched)."""
    mhex = _blobs.hex_of(mv.digest)
    data = _blobs.read_manifest_blob(store.layout, mhex, where=mv.ref)
    dest = dest.absolute()
    try:
        _fs.refuse_special(dest, f"cannot export {mv.ref}: destination")
        with staging_path(dest.parent, f".{dest.name}.export", ".tmp") as tmp:
            _write_archive(store, mv, data, tmp, _mode(dest))
            _fs.refuse_special(dest, f"cannot export {mv.ref}: destination")
            os.replace(tmp, dest)
    except OSError as exc:
        raise RegistryError(f"exporting {mv.ref} to {dest} failed: {exc}") from exc
    return dest


def _write_archive(store: Store, mv: ModelVersion, data: bytes, tmp: Path, mode: Literal["w:gz", "w"]) -> None:
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
            blob = store.layout.blob(f.hex)
            actual, size = _fs.hash_file(blob)
            if actual != f.hex or size != f.size:
                raise IntegrityError(f"{mv.ref}: {f.path!r} expected {f.digest}, got sha256:{actual}; not exporting")
            info = tarfile.TarInfo(f"blobs/{f.hex}")
            info.size, info.mode, info.mtime = f.size, 0o444, 0
            with _fs.open_read(blob) as fh:
                tar.addfile(info, fh)


def _refuse(path: Path, member: tarfile.TarInfo, why: str) -> RegistryError:
    return RegistryError(f"archive {path}: member {member.name!r:.200} refused: {why}")



def import_version(store: Store, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ModelVersion:
    """See :meth:`Registry.import_archive`."""
    if not isinstance(max_bytes, int) or isinstance(max_bytes, bool) or max_bytes <= 0:
        raise InvalidInputError(f"max_bytes must be a positive int, got {max_bytes!r}")
    try:
        raw = _fs.open_read(path)
    except OSError as exc:
        raise RegistryError(f"{path} is not a readable tar archive: {exc}") from exc
    created: list[Path] = []  # blobs and trees this import published, discarded if it fails
    stream: CappedStream | None = None
    try:
        try:
            stream = open_stream(raw, path, max_bytes + _MAX_MANIFEST + (64 << 20))
            tar = tarfile.open(fileobj=stream, mode="r:", tarinfo=SafeTarInfo)  # type: ignore[call-overload]
        except ModelserveError:
            raise
        except (OSError, EOFError, tarfile.TarError, lzma.LZMAError, zlib.error, *PARSE_ERRORS) as exc:
            raise RegistryError(f"{path} is not a readable tar archive: {exc}") from exc
        store.init_root()
        with tar, store.staging("import") as stage:
            return _import(store, path, tar, stream, stage, max_bytes, created)
    except ModelserveError:
        discard(store, created)
        raise
    except (tarfile.TarError, EOFError, lzma.LZMAError, zlib.error, *PARSE_ERRORS) as exc:
        discard(store, created)
        raise RegistryError(f"archive {path} is corrupt: {exc}") from exc
    except OSError as exc:
        discard(store, created)
        raise _fs.os_error(f"importing {path}", exc) from exc
    except BaseException:
        discard(store, created)
        raise
    finally:
        if stream is not None:
            stream.close()
        raw.close()


def _import(
    store: Store, path: Path, tar: tarfile.TarFile, stream: CappedStream, stage: Path, max_bytes: int,
    created: list[Path],
) -> ModelVersion:
    data, m = _read_manifest(path, tar)
    mhex = hashlib.sha256(data).hexdigest()
    expected = {f.hex: f.size for f in m.files}
    total = sum(expected.values())
    if total > max_bytes:
        raise RegistryError(f"archive {path} holds {total} bytes of files, more than max_bytes={max_bytes}; refused")
    existing_ptr = store.read_pointer(m.name, m.version)
    if existing_ptr is not None:
        return _existing(store, m, mhex, existing_ptr)
    free = shutil.disk_usage(store.layout.tmp).free
    if free < total + _DISK_MARGIN:
        raise RegistryError(
            f"importing {path} needs {total} bytes but only {free} are free under {store.root}; the registry is unchanged"
        )
    # The rest of the stream: one header (plus padding) per blob, then the end blocks.
    stream.cap = min(stream.cap, stream.tell() + total + (len(expected) + 4) * (2 * MAX_HEADER + 4096) + (1 << 20))
    sources = _read_blobs(path, tar, stage, expected)
    # Everything is written in the staging area first (blobs, manifest, pointer), so a full
    # disk stops the import before anything is published; publishing is links and renames.
    mstaged = stage / f"manifest-{mhex}"
    _fs.write_new_file(mstaged, data, readonly=True)
    pstaged = stage / "pointer"
    ptr = store.stage_pointer(pstaged, mhex)
    for hx, staged in sources.items():
        _fs.make_readonly(staged)
        store.put_blob(staged, hx, expected[hx], created)
    store.put_blob(mstaged, mhex, len(data), created)
    sources[mhex] = mstaged
    store.put_tree(m, mhex, sources, created)
    if not store.link_pointer(pstaged, m.name, m.version):
        return _existing(store, m, mhex, store.read_pointer(m.name, m.version))
    del created[:]  # in use now: nothing to discard on a later error
    store.ensure_published(m, mhex, sources)
    return store.version(m.name, m.version, ptr)


def _read_manifest(path: Path, tar: tarfile.TarFile) -> tuple[bytes, Manifest]:
    """The first member: the manifest's bytes, which must be in canonical form, and the manifest."""
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
    m = parse_manifest(data, where=f"in archive {path}")
    try:
        canonical = canonical_bytes(m.to_json())
    except ValueError as exc:
        raise IntegrityError(f"archive {path}: manifest cannot be encoded again: {exc}") from exc
    if canonical != data:
        raise IntegrityError(f"archive {path}: manifest is not in canonical form")
    return data, m


def _read_blobs(path: Path, tar: tarfile.TarFile, stage: Path, expected: dict[str, int]) -> dict[str, Path]:
    """Stream every remaining member into ``stage`` while hashing it: each must be the regular
    file ``blobs/<hex>`` of a blob the manifest lists, once, with its size and digest."""
    sources: dict[str, Path] = {}
    while True:
        member = tar.next()
        if member is None:
            break
        hx = _check_member(path, member, expected, sources)
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
    return sources


def _check_member(path: Path, member: tarfile.TarInfo, expected: dict[str, int], seen: dict[str, Path]) -> str:
    """The blob hex a member holds, after refusing anything but a new, listed, right-sized blob."""
    name = member.name
    if not (member.isreg() and member.type in (tarfile.REGTYPE, tarfile.AREGTYPE)):
        raise _refuse(path, member, "only regular files are allowed (no links, devices, directories)")
    if name.startswith(("/", "\\")) or ".." in name.split("/") or "\\" in name or ":" in name:
        raise _refuse(path, member, "absolute or parent-relative path")
    if not name.startswith("blobs/") or name[len("blobs/"):] not in expected:
        raise _refuse(path, member, "not a blob listed in the manifest")
    hx = name[len("blobs/"):]
    if hx in seen:
        raise _refuse(path, member, "duplicate member")
    if member.size != expected[hx]:
        raise IntegrityError(f"archive {path}: blobs/{hx} is {member.size} bytes, manifest says {expected[hx]}")
    return hx


def _existing(store: Store, m: Manifest, mhex: str, ptr: Pointer | None) -> ModelVersion:
    if ptr is None or ptr.get("deleted") or ptr["manifest"] != "sha256:" + mhex:
        theirs = "deleted" if ptr and ptr.get("deleted") else (ptr or {}).get("manifest")
        raise VersionConflictError(
            f"version {m.name}:{m.version} already exists with other content: expected {theirs}, got sha256:{mhex}"
        )
    return store.version(m.name, m.version, ptr)
