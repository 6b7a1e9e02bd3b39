"""The content store: blobs named by their sha256, and per-version trees of hard links.

Blobs are published from complete staged files with ``os.link`` and are read-only (0444). A
version's *tree* (``trees/<manifest hex>/``) holds its files under their own names, as hard links
to the blobs (copies where the file system has no hard links), so engines that look at file
names or sibling files (``model.xml`` + ``model.bin``) get what they expect. Trees are staged
complete and renamed into place, so a tree that exists is whole.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path
from typing import Mapping

from .._errors import IntegrityError
from . import _fs
from ._layout import Layout
from ._manifest import Manifest

__all__ = ["put_blob", "read_manifest_blob", "materialize_tree", "hex_of"]


def hex_of(digest: str) -> str:
    """``sha256:<hex>`` -> ``<hex>``."""
    return digest.split(":", 1)[1] if digest.startswith("sha256:") else digest


def put_blob(layout: Layout, staged: Path, hexdigest: str, size: int) -> bool:
    """Publish the complete, read-only staged file as blob ``hexdigest``.

    Returns True if this call created the blob, False if an intact one (right size) already
    existed. A blob of the wrong size (damaged) is atomically replaced by the staged copy.
    """
    target = layout.blob(hexdigest)
    if _fs.link_new(staged, target):
        return True
    try:
        if os.stat(target).st_size == size:
            return False
    except FileNotFoundError:
        return put_blob(layout, staged, hexdigest, size)
    spare = staged.with_name(staged.name + ".relink")
    _fs.remove_path(spare)
    os.link(staged, spare)
    os.replace(spare, target)
    _fs.fsync_dir(target.parent)
    return True


def read_manifest_blob(layout: Layout, manifest_hex: str, *, where: str) -> bytes:
    """Read manifest blob bytes and check them against their name; raise :class:`IntegrityError`."""
    path = layout.blob(manifest_hex)
    try:
        data = _fs.read_small(path)
    except FileNotFoundError as exc:
        raise IntegrityError(f"manifest of {where} is missing from the store: {path}") from exc
    except ValueError as exc:
        raise IntegrityError(f"manifest of {where} is too large: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest_hex:
        raise IntegrityError(
            f"manifest of {where} was modified: expected sha256:{manifest_hex}, got sha256:{actual}"
        )
    return data


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EACCES):
            raise
        with open(src, "rb") as fh:
            _fs.stream_hashing(fh, dest)
        shutil.copymode(src, dest)


def materialize_tree(
    layout: Layout, manifest: Manifest, manifest_hex: str, sources: Mapping[str, Path] | None = None
) -> Path:
    """Make sure ``trees/<manifest_hex>`` exists and is whole; return it.

    ``sources`` maps blob hexes to a registrar's staged copies: a blob that vanished (a
    concurrent gc) is re-published from there. Otherwise a missing blob raises
    :class:`IntegrityError`.
    """
    tree = layout.tree(manifest_hex)
    if tree.is_dir():
        return tree
    layout.tmp.mkdir(parents=True, exist_ok=True)
    staged = layout.tmp / _fs.staging_name("tree")
    staged.mkdir()
    try:
        for f in manifest.files:
            blob = layout.blob(f.hex)
            dest = staged.joinpath(*f.path.split("/"))
            dest.parent.mkdir(parents=True, exist_ok=True)
            try:
                _link_or_copy(blob, dest)
                continue
            except FileNotFoundError as exc:
                missing = exc
            if sources is not None and f.hex in sources:
                _fs.link_new(sources[f.hex], blob)
                _link_or_copy(sources[f.hex], dest)
            else:
                raise IntegrityError(
                    f"{manifest.name}:{manifest.version}: blob of {f.path!r} is missing from the store "
                    f"(expected {f.digest}, {f.size} bytes)"
                ) from missing
        _fs.rename_dir_new(staged, tree)
    finally:
        _fs.remove_path(staged)
    return tree
