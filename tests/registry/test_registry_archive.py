"""Registry archives: round trip, digests preserved, hostile archives refused."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from modelserve._errors import IntegrityError, RegistryError, VersionConflictError
from modelserve._registry import Registry, resolve_for_load

from .write_faults import count_writes, fail_writes_after


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Registry, Path]:
    reg = Registry(tmp_path / "a")
    d = tmp_path / "ov"
    d.mkdir()
    (d / "model.xml").write_text("<net/>")
    (d / "model.bin").write_bytes(os.urandom(3000))
    reg.register("ov", d, version="3", alias="prod", metadata={"source": "test"})
    return reg, reg.export("ov:3", tmp_path / "ov-3.tar")


@pytest.mark.parametrize("suffix", [".tar", ".tar.gz"])
def test_round_trip_keeps_digest_and_lock(tmp_path: Path, suffix: str) -> None:
    a = Registry(tmp_path / "a")
    src = tmp_path / "m.onnx"
    src.write_bytes(os.urandom(5000))
    mv = a.register("det", src, alias="prod")
    lock = a.write_lock(["det@prod"], tmp_path / "modelserve.lock")
    arc = a.export("det@prod", tmp_path / f"det{suffix}")
    b = Registry(tmp_path / "b")
    got = b.import_archive(arc, alias="prod")
    assert (got.name, got.version, got.digest) == (mv.name, mv.version, mv.digest)
    assert got.path.read_bytes() == src.read_bytes() and got.path.name == "m.onnx"
    assert resolve_for_load("det@prod", registry=b, lock=lock) == got  # a lock from a is valid in b
    assert b.import_archive(arc) == got  # idempotent
    assert b.verify().ok
    c = Registry(tmp_path / "c")
    other = tmp_path / "o.onnx"
    other.write_bytes(b"other")
    c.register("det", other, version="1")
    with pytest.raises(VersionConflictError):
        c.import_archive(arc)


def _rewrite(src: Path, dest: Path, edit) -> Path:
    """Copy archive src to dest, letting edit(members) -> list[(TarInfo, bytes | None)] change it."""
    with tarfile.open(src) as tar:
        members = [(m, tar.extractfile(m).read() if m.isreg() else None) for m in tar.getmembers()]
    members = edit(members)
    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as out:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            out.addfile(info, io.BytesIO(data) if data is not None else None)
    return dest


def _extra(info: tarfile.TarInfo, data: bytes | None = None):
    return lambda ms: [*ms, (info, data)]


def _tar(name: str, type_=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    t = tarfile.TarInfo(name)
    t.type, t.linkname = type_, linkname
    return t


def _blob_members(ms):
    return [i for i, (m, _) in enumerate(ms) if m.name.startswith("blobs/")]


def _flip(ms):
    i = _blob_members(ms)[0]
    m, d = ms[i]
    return [*ms[:i], (m, bytes([d[0] ^ 1]) + d[1:]), *ms[i + 1:]]


def _truncate(ms):
    i = _blob_members(ms)[0]
    m, d = ms[i]
    return [*ms[:i], (m, d[:-1]), *ms[i + 1:]]


def _evil_manifest(ms):
    m, d = ms[0]
    obj = json.loads(d)
    obj["files"][0]["path"] = "../../escape.txt"
    return [(m, json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()), *ms[1:]]


HOSTILE = [
    ("absolute path", _extra(_tar("/etc/evil"), b"x"), RegistryError, "refused"),
    ("dot-dot", _extra(_tar("blobs/../../evil"), b"x"), RegistryError, "refused"),
    ("symlink", _extra(_tar("blobs/link", tarfile.SYMTYPE, "/etc/passwd")), RegistryError, "regular files"),
    ("hard link", _extra(_tar("blobs/hl", tarfile.LNKTYPE, "manifest.json")), RegistryError, "regular files"),
    ("char device", _extra(_tar("blobs/dev", tarfile.CHRTYPE)), RegistryError, "regular files"),
    ("fifo", _extra(_tar("blobs/fifo", tarfile.FIFOTYPE)), RegistryError, "regular files"),
    ("directory", _extra(_tar("blobs", tarfile.DIRTYPE)), RegistryError, "regular files"),
    ("unlisted blob", _extra(_tar("blobs/" + "0" * 64), b"x"), RegistryError, "not a blob listed"),
    ("flipped byte", _flip, IntegrityError, "expected sha256"),
    ("truncated blob", _truncate, IntegrityError, "manifest says"),
    ("missing blob", lambda ms: [m for i, m in enumerate(ms) if i not in _blob_members(ms)[:1]], IntegrityError, "lacks"),
    ("manifest not first", lambda ms: [*ms[1:], ms[0]], RegistryError, "first member"),
    ("evil manifest path", _evil_manifest, IntegrityError, "malformed"),
    ("duplicate blob", lambda ms: [*ms, ms[_blob_members(ms)[0]]], RegistryError, "duplicate"),
]


@pytest.mark.parametrize("why, edit, error, match", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_archives_refused(exported, tmp_path: Path, why, edit, error, match) -> None:
    _, arc = exported
    bad = _rewrite(arc, tmp_path / "bad.tar", edit)
    target = Registry(tmp_path / "target")
    with pytest.raises(error, match=match):
        target.import_archive(bad)
    assert target.list_models() == []
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "evil").exists()
    leftovers = list((tmp_path / "target" / "tmp").iterdir()) if (tmp_path / "target" / "tmp").exists() else []
    assert leftovers == []


def test_not_a_tar(tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar"
    junk.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(RegistryError):
        Registry(tmp_path / "r").import_archive(junk)


def _huge_header_archive(dest: Path, type_: bytes, size: int) -> Path:
    """A tiny .tar.gz whose first header claims a ``size``-byte PAX / GNU long-name record."""
    import gzip

    t = tarfile.TarInfo("././@PaxHeader" if type_ == tarfile.XHDTYPE else "././@LongLink")
    t.type, t.size = type_, size
    with gzip.open(dest, "wb") as fh:
        fh.write(t.tobuf(format=tarfile.USTAR_FORMAT) + b"\0" * 4096)
    return dest


@pytest.mark.parametrize("type_", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME], ids=["pax", "gnu-longname"])
def test_oversized_header_is_refused_without_allocating(tmp_path: Path, type_: bytes) -> None:
    import tracemalloc

    arc = _huge_header_archive(tmp_path / "bomb.tar.gz", type_, 1 << 30)
    assert arc.stat().st_size < 1000
    target = Registry(tmp_path / "target")
    tracemalloc.start()
    try:
        with pytest.raises(RegistryError, match="header"):
            target.import_archive(arc)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"importing a {arc.stat().st_size}-byte archive allocated {peak >> 20} MiB"
    assert target.list_models() == []


def test_moderate_pax_header_over_64k_is_refused(exported, tmp_path: Path) -> None:
    _, arc = exported

    def fat_pax(ms):
        m, d = ms[1]
        m.pax_headers = {"comment": "x" * (100 << 10)}
        return [ms[0], (m, d), *ms[2:]]

    bad = _rewrite(arc, tmp_path / "fat.tar", fat_pax)
    with pytest.raises(RegistryError, match="header"):
        Registry(tmp_path / "target").import_archive(bad)


def test_max_bytes_and_free_space(exported, tmp_path: Path, monkeypatch) -> None:
    import collections
    import shutil

    reg, arc = exported
    size = reg.resolve("ov:3").size
    with pytest.raises(RegistryError, match="max_bytes"):
        Registry(tmp_path / "t1").import_archive(arc, max_bytes=size - 1)
    Usage = collections.namedtuple("Usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: Usage(10 << 30, 10 << 30, 1000))
    t2 = Registry(tmp_path / "t2")
    with pytest.raises(RegistryError, match="free"):
        t2.import_archive(arc)
    assert t2.list_models() == []
    monkeypatch.undo()
    assert Registry(tmp_path / "t3").import_archive(arc, max_bytes=size).digest == reg.resolve("ov:3").digest


def _tree(root: Path) -> dict[str, bytes]:
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        if os.path.relpath(dirpath, root).split(os.sep)[0] == "tmp":
            dirnames[:] = []
            continue
        for f in files:
            p = Path(dirpath) / f
            out[str(p.relative_to(root))] = p.read_bytes()
    return out


def test_enospc_at_every_write_of_an_import_leaves_registry_unchanged(exported, tmp_path: Path, monkeypatch) -> None:
    src_reg, arc = exported
    other = tmp_path / "other.onnx"
    other.write_bytes(b"other")
    probe = Registry(tmp_path / "probe")
    probe.register("keep", other)
    total = count_writes(monkeypatch, lambda: probe.import_archive(arc))
    assert total >= 4  # two blobs, manifest, pointer
    target = Registry(tmp_path / "target")
    target.register("keep", other)
    for fail_at in range(total):
        before = _tree(target.root)
        undo = fail_writes_after(monkeypatch, fail_at)
        with pytest.raises(RegistryError, match="no space left"):
            target.import_archive(arc)
        undo()
        assert _tree(target.root) == before, f"write #{fail_at + 1} failed but the registry changed"
        assert target.list_models() == ["keep"] and target.verify().ok
    got = target.import_archive(arc, alias="prod")
    assert got.digest == src_reg.resolve("ov:3").digest and target.verify().ok
