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
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

from .._errors import InvalidInputError, ModelNotFoundError, ModelserveError
from . import _fs, _store
from ._manifest import canonical_bytes
from ._names import validate_digest, validate_relpath

__all__ = ["artifact_dir", "find_artifact", "stage_artifact", "publish_artifact"]

_INFO = "artifact.json"


def _key_hex(key: Mapping[str, str]) -> str:
    if not isinstance(key, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in key.items()):
        raise InvalidInputError(f"artifact key must be a dict of str -> str, got {key!r:.120}")
    return hashlib.sha256(canonical_bytes(dict(key))).hexdigest()[:32]


def artifact_dir(reg: Any, source_digest: str, key: Mapping[str, str]) -> Path:
    """See :meth:`Registry.artifact_dir`."""
    src = _store.hex_of(validate_digest(source_digest))
    return reg._layout.artifact(src, _key_hex(key))


def find_artifact(reg: Any, source_digest: str, key: Mapping[str, str]) -> Path | None:
    """The artifact directory if published and its files have their recorded sizes, else None."""
    d = artifact_dir(reg, source_digest, key)
    try:
        info = json.loads(_fs.read_small(d / _INFO, 1 << 20))
        for rel, size in info["files"].items():
            if os.stat(d.joinpath(*validate_relpath(rel).split("/"))).st_size != size:
                return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ModelserveError):
        return None
    return d


@contextmanager
def stage_artifact(reg: Any, source_digest: str, key: Mapping[str, str]) -> Iterator[Path]:
    """See :meth:`Registry.stage_artifact`."""
    final = artifact_dir(reg, source_digest, key)
    digest = validate_digest(source_digest)
    if not reg._layout.blob(_store.hex_of(digest)).exists():
        raise ModelNotFoundError(f"artifact source {digest} is not stored in {reg.root}")
    reg._init_root()
    reg._layout.tmp.mkdir(parents=True, exist_ok=True)
    staged = reg._layout.tmp / _fs.staging_name("art")
    staged.mkdir()
    try:
        yield staged
        files = {}
        for dirpath, _, names in os.walk(staged):
            for n in names:
                p = Path(dirpath) / n
                if p.is_symlink() or not p.is_file():
                    raise InvalidInputError(f"artifacts may hold only regular files, got {p}")
                files[validate_relpath(p.relative_to(staged).as_posix())] = p.stat().st_size
        if _INFO in files:
            raise InvalidInputError(f"{_INFO!r} is reserved inside an artifact directory")
        info = {"files": files, "key": dict(key), "source": digest}
        _fs.write_new_file(staged / _INFO, canonical_bytes(info))
        for dirpath, _, names in os.walk(staged):
            for n in names:
                _fs.make_readonly(Path(dirpath) / n)
        _fs.rename_dir_new(staged, final)
    finally:
        _fs.remove_path(staged)


def publish_artifact(
    reg: Any, source_digest: str, key: Mapping[str, str], files: Mapping[str, bytes | str | os.PathLike[str]]
) -> Path:
    """See :meth:`Registry.publish_artifact`."""
    with stage_artifact(reg, source_digest, key) as d:
        for rel, content in files.items():
            dest = d.joinpath(*validate_relpath(rel).split("/"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                _fs.write_new_file(dest, content)
            else:
                with open(content, "rb") as fh:
                    _fs.stream_hashing(fh, dest)
    found = find_artifact(reg, source_digest, key)
    if found is None:
        raise ModelNotFoundError(f"artifact for {source_digest} {dict(key)} vanished right after publishing")
    return found
