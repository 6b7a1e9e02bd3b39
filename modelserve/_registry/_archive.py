"""Export one version to a tar archive, and import such archives safely.

An archive holds exactly: ``manifest.json`` first (the manifest's exact bytes, so the version
keeps its digest across machines), then ``blobs/<hex>`` for each distinct file content. On
import nothing is extracted by ``tarfile``: each member is checked (regular file, expected
name, expected size; no absolute paths, ``..``, links, devices or extra members) and streamed
into the registry's staging area while hashed; then the version is published exactly as
:meth:`Registry.register` publishes (blobs, manifest, tree, then the write-once pointer).
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import time
from pathlib import Path
from typing import Any

from .._errors import IntegrityError, RegistryError, VersionConflictError
from . import _fs, _store
from ._manifest import canonical_bytes, parse_manifest
from ._types import ModelVersion

__all__ = ["export_version", "import_version"]

_MANIFEST = "manifest.json"
_MAX_MANIFEST = 16 << 20


def _mode(dest: Path) -> str:
    name = dest.name.lower()
    return "w:gz" if name.endswith((".tar.gz", ".tgz")) else "w"


def export_version(reg: Any, ref: str, dest: Path) -> Path:
    """See :meth:`Registry.export`. Checks every file's digest while writing."""
    mv = reg.resolve(ref)
    mhex = _store.hex_of(mv.digest)
    data = _store.read_manifest_blob(reg._layout, mhex, where=mv.ref)
    dest = dest.absolute()
    tmp = dest.with_name(f".{dest.name}.{_fs.staging_name('export')}.tmp")
    try:
        with tarfile.open(tmp, _mode(dest), format=tarfile.PAX_FORMAT) as tar:
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
                with open(blob, "rb") as fh:
                    tar.addfile(info, fh)
        os.replace(tmp, dest)
    except OSError as exc:
        raise RegistryError(f"exporting {mv.ref} to {dest} failed: {exc}") from exc
    finally:
        _fs.remove_path(tmp)
    return dest


def _refuse(path: Path, member: tarfile.TarInfo, why: str) -> RegistryError:
    return RegistryError(f"archive {path}: member {member.name!r:.200} refused: {why}")


def import_version(reg: Any, path: Path) -> ModelVersion:
    """See :meth:`Registry.import_archive`."""
    try:
        tar = tarfile.open(path, "r:*")
    except (OSError, tarfile.TarError) as exc:
        raise RegistryError(f"{path} is not a readable tar archive: {exc}") from exc
    try:
        reg._init_root()
        with tar, reg._staging("import") as stage:
            return _import(reg, path, tar, stage)
    except (tarfile.TarError, EOFError) as exc:
        raise RegistryError(f"archive {path} is corrupt: {exc}") from exc
    except OSError as exc:
        from ._registry import _os_error

        raise _os_error(f"importing {path}", exc) from exc


def _import(reg: Any, path: Path, tar: tarfile.TarFile, stage: Path) -> ModelVersion:
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
    if canonical_bytes(m.to_json()) != data:
        raise IntegrityError(f"archive {path}: manifest is not in canonical form")
    expected = {f.hex: f.size for f in m.files}
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
    # Publish: blobs, manifest, tree, then the write-once pointer.
    existing_ptr = reg._read_pointer(m.name, m.version)
    if existing_ptr is not None:
        return _existing(reg, m, mhex, existing_ptr)
    for hx, staged in sources.items():
        _fs.make_readonly(staged)
        _store.put_blob(reg._layout, staged, hx, expected[hx])
    mstaged = stage / f"manifest-{mhex}"
    _fs.write_new_file(mstaged, data, readonly=True)
    _store.put_blob(reg._layout, mstaged, mhex, len(data))
    sources[mhex] = mstaged
    _store.materialize_tree(reg._layout, m, mhex, sources)
    pstaged = stage / "pointer"
    ptr = {"created_ns": time.time_ns(), "manifest": "sha256:" + mhex}
    _fs.write_new_file(pstaged, canonical_bytes(ptr), readonly=True)
    if not _fs.link_new(pstaged, reg._layout.pointer(m.name, m.version)):
        return _existing(reg, m, mhex, reg._read_pointer(m.name, m.version))
    reg._ensure_published(m, mhex, sources)
    return reg._version(m.name, m.version, ptr)


def _existing(reg: Any, m: Any, mhex: str, ptr: Any) -> ModelVersion:
    if ptr is None or ptr.get("deleted") or ptr["manifest"] != "sha256:" + mhex:
        theirs = "deleted" if ptr and ptr.get("deleted") else (ptr or {}).get("manifest")
        raise VersionConflictError(
            f"version {m.name}:{m.version} already exists with other content: expected {theirs}, got sha256:{mhex}"
        )
    return reg._version(m.name, m.version, ptr)
