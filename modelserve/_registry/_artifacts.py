"""Derived artifacts (compiled TensorRT plans, OpenVINO caches) kept beside their source.

An artifact is a directory ``artifacts/<source hex>/<key hex>/`` where ``<source hex>`` is the
digest of what it was derived from (a version's manifest digest, ``ModelVersion.digest``, or a
file's blob digest) and ``<key hex>`` is a hash of ``key``: a ``{str: str}`` of everything else
it depends on (engine version, GPU model, precision, ...). It is written in a private staging
directory and published by one directory rename, so it is either absent or whole; if two
processes build it at once, the first published wins and the other's copy is dropped. A
``artifact.json`` inside records the key and each file's size (checked by :func:`find_artifact`).
``gc`` removes artifacts whose source is no longer stored.

Example (an engine caching a compiled plan)::

    key = {"engine": "tensorrt", "trt": trt.__version__, "gpu": name, "precision": "fp16"}
    hit = reg.find_artifact(mv.digest, key)
    if hit is None:
        with reg.stage_artifact(mv.digest, key) as d:
            (d / "model.plan").write_bytes(build_plan())
        hit = reg.find_artifact(mv.digest, key)
    plan_path = hit / "model.plan"
"""

from __future__ import annotations

import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Mapping

from .._errors import InvalidInputError, ModelNotFoundError, ModelserveError
from . import _blobs, _fs
from ._dirs import walk
from ._manifest import canonical_bytes, loads
from ._names import validate_digest, validate_relpath
from ._staging import staging_path
from ._store import Store

__all__ = ["artifact_dir", "find_artifact", "stage_artifact", "publish_artifact", "engine_cache_dir"]

_INFO = "artifact.json"


def _key_hex(key: Mapping[str, str]) -> str:
    if not isinstance(key, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in key.items()):
        raise InvalidInputError(f"artifact key must be a dict of str -> str, got {key!r:.120}")
    return hashlib.sha256(canonical_bytes(dict(key))).hexdigest()[:32]


def artifact_dir(store: Store, source_digest: str, key: Mapping[str, str]) -> Path:
    """See :meth:`Registry.artifact_dir`."""
    src = _blobs.hex_of(validate_digest(source_digest))
    return store.layout.artifact(src, _key_hex(key))


def find_artifact(store: Store, source_digest: str, key: Mapping[str, str]) -> Path | None:
    """The artifact directory if published and its files have their recorded sizes, else None."""
    d = artifact_dir(store, source_digest, key)
    try:
        info = loads(_fs.read_small(d / _INFO, 1 << 20))
        for rel, size in info["files"].items():
            if os.stat(d.joinpath(*validate_relpath(rel).split("/"))).st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ModelserveError):
        return None
    return d


@contextmanager
def stage_artifact(store: Store, source_digest: str, key: Mapping[str, str]) -> Iterator[Path]:
    """See :meth:`Registry.stage_artifact`. ``OSError`` s of the registry's own steps (staging,
    publishing; not of the caller's block) become :class:`RegistryError`."""
    final = artifact_dir(store, source_digest, key)
    digest = validate_digest(source_digest)
    if not store.layout.blob(_blobs.hex_of(digest)).exists():
        raise ModelNotFoundError(f"artifact source {digest} is not stored in {store.root}")
    with staging_path(store.layout.tmp, "art") as staged:
        try:
            store.init_root()
            _fs.make_dir(store.layout.tmp, parents=True, exist_ok=True)
            _fs.make_dir(staged)
        except OSError as exc:
            raise _fs.os_error(f"staging an artifact for {digest}", exc) from exc
        yield staged
        try:
            _publish_staged(staged, final, key, digest)
        except OSError as exc:
            raise _fs.os_error(f"publishing the artifact {final}", exc) from exc


def _publish_staged(staged: Path, final: Path, key: Mapping[str, str], digest: str) -> None:
    """Record the staged files in ``artifact.json``, make them read-only and rename the directory into place."""
    files = {}
    for dirpath, _, names in walk(staged):
        for n in names:
            p = Path(dirpath) / n
            if p.is_symlink() or not p.is_file():
                raise InvalidInputError(f"artifacts may hold only regular files, got {p}")
            files[validate_relpath(p.relative_to(staged).as_posix())] = p.stat().st_size
    if _INFO in files:
        raise InvalidInputError(f"{_INFO!r} is reserved inside an artifact directory")
    info = {"files": files, "key": dict(key), "source": digest}
    _fs.write_new_file(staged / _INFO, canonical_bytes(info))
    for dirpath, _, names in walk(staged):
        for n in names:
            _fs.make_readonly(Path(dirpath) / n)
    _fs.rename_dir_new(staged, final)


def publish_artifact(
    store: Store, source_digest: str, key: Mapping[str, str], files: Mapping[str, bytes | str | os.PathLike[str]]
) -> Path:
    """See :meth:`Registry.publish_artifact`."""
    with stage_artifact(store, source_digest, key) as d:
        for rel, content in files.items():
            dest = d.joinpath(*validate_relpath(rel).split("/"))
            try:
                _fs.make_dir(dest.parent, parents=True, exist_ok=True)
                if isinstance(content, bytes):
                    _fs.write_new_file(dest, content)
                else:  # a regular file only: a FIFO or device is refused, never read
                    _fs.copy_hashing(Path(content), dest)
            except OSError as exc:
                raise _fs.os_error(f"publishing the artifact file {rel!r}", exc) from exc
    found = find_artifact(store, source_digest, key)
    if found is None:
        raise ModelNotFoundError(f"artifact for {source_digest} {dict(key)} vanished right after publishing")
    return found


def engine_cache_dir(store: Store, source_digest: str, key: Mapping[str, str]) -> Path | None:
    """See :meth:`Registry.engine_cache_dir`."""
    if store.read_only:
        return None
    path = artifact_dir(store, source_digest, {**dict(key), "kind": "engine-cache"})
    try:
        _fs.make_dir(path, parents=True, exist_ok=True)
    except OSError as exc:
        raise _fs.os_error(f"creating the engine cache directory {path}", exc) from exc
    return path
