"""Registry core: immutable versions, aliases, integrity, locks, read-only, ENOSPC, artifacts."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import stat
import time
from pathlib import Path

import pytest

import modelserve
from modelserve._errors import (
    IntegrityError,
    InvalidInputError,
    InvalidNameError,
    ModelNotFoundError,
    ModelserveError,
    PinMismatchError,
    RegistryError,
    VersionConflictError,
)
from modelserve._registry import ModelVersion, Registry, _dirs, _fs, default_root, read_lock, resolve_for_load

from .write_faults import count_writes, fail_writes_after

NUDENET = Path(importlib.util.find_spec("nudenet").submodule_search_locations[0]) / "320n.onnx"


@pytest.fixture
def reg(tmp_path: Path) -> Registry:
    return Registry(tmp_path / "reg")


def make_file(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / "src" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def snapshot(root: Path, *, skip_tmp: bool = True) -> dict[str, tuple]:
    """Every file under root with its mode, size, mtime and content hash (empty shard dirs may stay)."""
    out = {}
    for dirpath, dirnames, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        if skip_tmp and (rel == "tmp" or rel.startswith("tmp" + os.sep)):
            dirnames[:] = []
            continue
        for f in files:
            p = Path(dirpath) / f
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_size, st.st_mtime_ns, _fs.hash_file(p)[0])
    return out


def tamper(path: Path, offset: int = 100) -> None:
    os.chmod(path, 0o644)
    with open(path, "r+b") as fh:
        fh.seek(offset)
        b = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([b[0] ^ 0xFF]))
    os.chmod(path, 0o444)


# ---------------------------------------------------------------- 1. immutable, content-addressed versions
def test_register_real_onnx_model_stores_read_only_blob_and_model_info(reg: Registry) -> None:
    mv = reg.register("det", NUDENET, metadata={"team": "vision", "map": 0.5})
    assert isinstance(mv, ModelVersion)
    assert (mv.name, mv.version) == ("det", "1")
    assert mv.digest.startswith("sha256:") and len(mv.digest) == 71
    assert mv.path.name == "320n.onnx" and mv.path.read_bytes() == NUDENET.read_bytes()
    assert stat.S_IMODE(mv.path.stat().st_mode) == 0o444
    blob = reg.root / "blobs" / "sha256" / mv.files[0].hex[:2] / mv.files[0].hex
    assert os.path.samefile(blob, mv.path)  # stored once
    assert mv.metadata == {"team": "vision", "map": 0.5}
    assert mv.model_info is not None, "modelserve._metadata should describe a real ONNX detector"
    assert mv.model_info["imgsz"] and mv.model_info["names"]
    # the manifest is a blob whose sha256 is the version digest
    mblob = reg.root / "blobs" / "sha256" / mv.digest[7:9] / mv.digest[7:]
    import hashlib

    assert "sha256:" + hashlib.sha256(mblob.read_bytes()).hexdigest() == mv.digest
    assert json.loads(mblob.read_bytes())["files"][0]["size"] == NUDENET.stat().st_size


def test_same_content_same_digest_across_registries(tmp_path: Path) -> None:
    src = make_file(tmp_path, "m.onnx", b"x" * 1000)
    a = Registry(tmp_path / "a").register("det", src, version="7")
    b = Registry(tmp_path / "b").register("det", src, version="7")
    assert a.digest == b.digest  # manifests hold no timestamps


def test_auto_labels_increase_and_skip_custom_labels(reg: Registry, tmp_path: Path) -> None:
    v = [reg.register("det", make_file(tmp_path, f"m{i}.onnx", bytes([i]) * 10)).version for i in range(3)]
    assert v == ["1", "2", "3"]
    assert reg.register("det", make_file(tmp_path, "rc.onnx", b"rc"), version="rc1").version == "rc1"
    assert reg.register("det", make_file(tmp_path, "m9.onnx", b"9")).version == "4"
    assert [m.version for m in reg.list_versions("det")] == ["1", "2", "3", "rc1", "4"]
    assert reg.resolve("det").version == "4"  # latest = registered last


def test_label_written_once(reg: Registry, tmp_path: Path) -> None:
    a = make_file(tmp_path, "a.onnx", b"a" * 100)
    b = make_file(tmp_path, "b.onnx", b"b" * 100)
    mv = reg.register("det", a, version="v1")
    assert reg.register("det", a, version="v1") == mv  # idempotent
    with pytest.raises(VersionConflictError, match="already exists with other content"):
        reg.register("det", b, version="v1")
    with pytest.raises(VersionConflictError):
        reg.register("det", a, version="v1", metadata={"other": 1})
    assert reg.resolve("det:v1").path.read_bytes() == b"a" * 100
    # same content again without a label: the existing version comes back
    assert reg.register("det", a).version == "v1"


def test_directory_model(reg: Registry, tmp_path: Path) -> None:
    d = tmp_path / "ov"
    (d / "sub").mkdir(parents=True)
    (d / "model.xml").write_text("<net/>")
    (d / "model.bin").write_bytes(b"\0" * 4096)
    (d / "sub" / "notes.txt").write_text("hello")
    mv = reg.register("ov", d)
    assert mv.kind == "directory"
    assert mv.path == mv.root / "model.xml"
    assert (mv.root / "model.bin").read_bytes() == b"\0" * 4096
    assert (mv.root / "sub" / "notes.txt").read_text() == "hello"
    assert mv.model_info is None
    assert sorted(f.path for f in mv.files) == ["model.bin", "model.xml", "sub/notes.txt"]
    assert reg.verify().ok


def test_directory_model_refuses_symlinks(reg: Registry, tmp_path: Path) -> None:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "model.xml").write_text("x")
    os.symlink("/etc/passwd", d / "model.bin")
    with pytest.raises(RegistryError, match="regular files"):
        reg.register("ov", d)
    assert reg.list_models() == []


def test_bad_metadata_and_missing_source(reg: Registry, tmp_path: Path) -> None:
    src = make_file(tmp_path, "m.onnx", b"m")
    with pytest.raises(InvalidInputError):
        reg.register("det", src, metadata={"x": float("nan")})
    with pytest.raises(InvalidInputError):
        reg.register("det", src, metadata={1: "x"})
    with pytest.raises(RegistryError, match="does not exist"):
        reg.register("det", tmp_path / "nope.onnx")


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "fifo-in-dir", "socket-in-dir"])
def test_register_refuses_devices_fifos_and_sockets(reg: Registry, tmp_path: Path, kind: str) -> None:
    import socket

    if kind == "dev-zero":
        src = Path("/dev/zero")
        if not src.exists():  # pragma: no cover - not POSIX
            pytest.skip("no /dev/zero")
    elif kind == "fifo":
        src = tmp_path / "m.onnx"
        os.mkfifo(src)
    else:
        src = tmp_path / "d"
        src.mkdir()
        (src / "model.xml").write_text("<net/>")
        if kind == "fifo-in-dir":
            os.mkfifo(src / "model.bin")
        else:
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(str(src / "model.bin"))
            sock.close()
    with pytest.raises(RegistryError, match="regular file"):
        reg.register("det", src)  # returns at once: never blocks on the FIFO nor reads /dev/zero forever
    assert reg.list_models() == []


def test_copy_refuses_a_fifo_swapped_in_after_the_check(tmp_path: Path) -> None:
    fifo = tmp_path / "m.onnx"
    os.mkfifo(fifo)
    with pytest.raises(RegistryError, match="must be a regular file, got a FIFO"):
        _fs.copy_hashing(fifo, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


# ---------------------------------------------------------------- resolve
def test_resolve_forms_and_errors(reg: Registry, tmp_path: Path) -> None:
    v1 = reg.register("det", make_file(tmp_path, "a.onnx", b"a"))
    v2 = reg.register("det", make_file(tmp_path, "b.onnx", b"b"), alias="prod")
    assert reg.resolve("det") == v2
    assert reg.resolve("det:1") == v1
    assert reg.resolve("det@prod") == v2
    assert reg.resolve(f"det@{v1.digest}") == v1
    assert reg.resolve(f"det@{v1.digest[:19].upper()}") == v1
    for bad, err in [("nope", "no model named 'nope'"), ("det:9", "no version '9'"), ("det@beta", "no alias 'beta'"),
                     ("det@sha256:" + "0" * 64, "has digest")]:
        with pytest.raises(ModelNotFoundError, match=err):
            reg.resolve(bad)
    with pytest.raises(InvalidNameError):
        reg.resolve("../det")
    assert reg.list_models() == ["det"]


# ---------------------------------------------------------------- 2. aliases and rollback
def test_alias_moves_history_and_rollback(reg: Registry, tmp_path: Path) -> None:
    for i in range(3):
        reg.register("det", make_file(tmp_path, f"m{i}.onnx", bytes([i])))
    reg.set_alias("det", "prod", "1")
    reg.set_alias("det", "prod", "2")
    reg.set_alias("det", "prod", "3")
    assert reg.aliases("det") == {"prod": "3"}
    assert reg.rollback("det", "prod").version == "2"
    assert reg.resolve("det@prod").version == "2"
    assert reg.rollback("det", "prod").version == "1"
    with pytest.raises(RegistryError, match="no previous target"):
        reg.rollback("det", "prod")
    hist = reg.alias_history("det", "prod")
    assert [(m.op, m.version) for m in hist] == [("set", "1"), ("set", "2"), ("set", "3"), ("rollback", "2"), ("rollback", "1")]
    assert hist[2].previous == "2"
    with pytest.raises(ModelNotFoundError):
        reg.set_alias("det", "prod", "42")
    with pytest.raises(InvalidNameError):
        reg.set_alias("det", "sha256", "1")


def test_alias_history_ignores_torn_lines(reg: Registry, tmp_path: Path) -> None:
    reg.register("det", make_file(tmp_path, "a.onnx", b"a"), alias="prod")
    reg.register("det", make_file(tmp_path, "b.onnx", b"b"))
    hist = reg.root / "models" / "det" / "aliases" / "prod.jsonl"
    with open(hist, "ab") as fh:
        fh.write(b'{"digest":"sha256:00","op":"se')  # a torn write (power loss)
    assert reg.resolve("det@prod").version == "1"
    reg.set_alias("det", "prod", "2")  # starts on a fresh line
    assert reg.resolve("det@prod").version == "2"
    assert reg.verify().ok


# ---------------------------------------------------------------- 3. lock files
def test_lock_pins_version_after_alias_moves(reg: Registry, tmp_path: Path) -> None:
    v1 = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 50), alias="prod")
    lock = reg.write_lock(["det@prod"], tmp_path / "modelserve.lock")
    text = lock.read_text()
    assert 'ref = "det@prod"' in text and f'digest = "{v1.digest}"' in text and "lock-version = 1" in text
    reg.register("det", make_file(tmp_path, "b.onnx", b"b" * 50), alias="prod")
    assert reg.resolve("det@prod").version == "2"
    assert resolve_for_load("det@prod", registry=reg, lock=lock) == v1
    assert resolve_for_load("det@prod", registry=reg).version == "2"
    with pytest.raises(PinMismatchError, match="not pinned"):
        resolve_for_load("det:2", registry=reg, lock=lock)


@pytest.mark.parametrize(
    "edit, error, match",
    [
        (lambda t, d: t.replace(d[7:15], "00000000"), PinMismatchError, "registry has"),
        (lambda t, d: t.replace('version = "1"', 'version = "2"'), PinMismatchError, "registry has"),
        (lambda t, d: t.replace('version = "1"', 'version = "7"'), ModelNotFoundError, "no version '7'"),
        (lambda t, d: t.replace('name = "det"', 'name = "other"'), PinMismatchError, "expected 'det'"),
        (lambda t, d: t.replace('ref = "det@prod"', 'ref = "det@canary"'), PinMismatchError, "not pinned"),
        (lambda t, d: t.replace('name = "det"', 'name = "../det"'), RegistryError, "malformed"),
        (lambda t, d: t.replace('version = "1"', "version = 1"), RegistryError, "must be a string"),
        (lambda t, d: t.replace("lock-version = 1", "lock-version = 2"), RegistryError, "lock-version"),
        (lambda t, d: t + "\n[[model]]\nref = 'x'\n", RegistryError, "exactly ref, name"),
        (lambda t, d: t.replace("[[model]]", "[[model]"), RegistryError, "not valid TOML"),
        (lambda t, d: t + t[t.index("[[model]]"):], RegistryError, "locked twice"),
    ],
)
def test_lock_file_edited_by_hand(reg: Registry, tmp_path: Path, edit, error, match) -> None:
    v1 = reg.register("det", make_file(tmp_path, "a.onnx", b"a"), alias="prod")
    reg.register("det", make_file(tmp_path, "b.onnx", b"b"))
    lock = reg.write_lock(["det@prod"], tmp_path / "modelserve.lock")
    lock.write_text(edit(lock.read_text(), v1.digest))
    with pytest.raises(error, match=match):
        resolve_for_load("det@prod", registry=reg, lock=lock)


def test_lock_strings_round_trip(tmp_path: Path) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    from modelserve._registry._lockfile import toml_string

    try:
        import tomllib
    except ImportError:  # pragma: no cover
        tomllib = pytest.importorskip("tomli")

    @hypothesis.settings(max_examples=200, deadline=None)
    @hypothesis.given(st.text())
    def check(s: str) -> None:
        if any(0xD800 <= ord(c) <= 0xDFFF for c in s):
            return
        assert tomllib.loads(f"k = {toml_string(s)}\n")["k"] == s

    check()


def test_missing_lock_file(reg: Registry, tmp_path: Path) -> None:
    reg.register("det", make_file(tmp_path, "a.onnx", b"a"), alias="prod")
    with pytest.raises(RegistryError, match="does not exist"):
        resolve_for_load("det@prod", registry=reg, lock=tmp_path / "nope.lock")
    assert read_lock(reg.write_lock([], tmp_path / "empty.lock")).entries == ()


# ---------------------------------------------------------------- 4. integrity
def test_flipped_byte_is_caught_on_load_and_by_verify(reg: Registry) -> None:
    mv = reg.register("det", NUDENET, alias="prod")
    resolve_for_load("det@prod", registry=reg)
    tamper(mv.path, offset=5000)
    with pytest.raises(IntegrityError) as ei:
        resolve_for_load("det@prod", registry=reg)
    assert mv.files[0].digest in str(ei.value) and "got sha256:" in str(ei.value)
    report = reg.verify()
    assert not report.ok and any(mv.files[0].hex in str(p) for p in report.problems)


def test_truncated_file_is_caught_by_size(reg: Registry, tmp_path: Path) -> None:
    mv = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 10000))
    os.chmod(mv.path, 0o644)
    os.truncate(mv.path, 5000)
    with pytest.raises(IntegrityError, match="5000 bytes, expected 10000") as ei:
        resolve_for_load("det:1", registry=reg)
    assert mv.files[0].digest in str(ei.value)
    assert not reg.verify().ok


def test_sha256_only_on_first_use_or_change(reg: Registry, tmp_path: Path, monkeypatch) -> None:
    mv = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 10000))
    old = time.time() - 3600
    os.utime(mv.path, (old, old))  # out of the racy window
    calls = []
    real = _fs.hash_file
    monkeypatch.setattr(_fs, "hash_file", lambda p: calls.append(p) or real(p))
    resolve_for_load("det:1", registry=reg)
    assert len(calls) == 1  # first use
    resolve_for_load("det:1", registry=reg)
    resolve_for_load("det:1", registry=Registry(reg.root))  # other instance, same record
    assert len(calls) == 1  # unchanged: size check only
    tamper(mv.path)  # changes mtime
    with pytest.raises(IntegrityError):
        resolve_for_load("det:1", registry=reg)
    assert len(calls) == 2


def test_tampered_manifest_and_pointer(reg: Registry, tmp_path: Path) -> None:
    v1 = reg.register("det", make_file(tmp_path, "a.onnx", b"a"), alias="prod")
    v2 = reg.register("det", make_file(tmp_path, "b.onnx", b"b"))
    # swap version 1's pointer for version 2's: the alias pinned v1's digest
    p1 = reg.root / "models" / "det" / "versions" / "1"
    p2 = reg.root / "models" / "det" / "versions" / "2"
    os.replace(p1, tmp_path / "saved")
    os.link(p2, p1)
    with pytest.raises(IntegrityError):
        reg.resolve("det@prod")
    os.replace(tmp_path / "saved", p1)
    mblob = reg.root / "blobs" / "sha256" / v1.digest[7:9] / v1.digest[7:]
    tamper(mblob, offset=10)
    with pytest.raises(IntegrityError, match="manifest of det:1 was modified"):
        reg.resolve("det:1")
    assert reg.resolve("det:2") == v2
    assert not reg.verify().ok


def test_reuse_of_a_damaged_blob_repairs_it(reg: Registry, tmp_path: Path) -> None:
    """A stored blob with flipped bits (same size) is hashed before reuse, and replaced."""
    data = os.urandom(8000)
    v1 = reg.register("det", make_file(tmp_path, "a.onnx", data))
    blob = reg.root / "blobs" / "sha256" / v1.files[0].hex[:2] / v1.files[0].hex
    tamper(blob, offset=10)
    v2 = reg.register("other", make_file(tmp_path, "b.onnx", data))  # same content, new version
    assert v2.files[0].digest == v1.files[0].digest
    assert v2.path.read_bytes() == data and blob.read_bytes() == data
    assert stat.S_IMODE(blob.stat().st_mode) == 0o444
    resolve_for_load("other:1", registry=reg)
    report = reg.verify()  # only version 1's old tree still holds the damaged inode
    assert [p.subject for p in report.problems] == ["det:1"]


def test_edit_with_restored_mtime_is_caught_on_load(reg: Registry, tmp_path: Path) -> None:
    mv = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 10000))
    blob = reg.root / "blobs" / "sha256" / mv.files[0].hex[:2] / mv.files[0].hex
    old = time.time() - 3600
    os.utime(blob, (old, old))  # out of the racy window
    resolve_for_load("det:1", registry=reg)  # hashed once and recorded
    st = blob.stat()
    time.sleep(0.05)  # let the clock that stamps ctime move on
    os.chmod(blob, 0o644)
    with open(blob, "r+b") as fh:
        fh.seek(5000)
        fh.write(b"b")
    os.chmod(blob, 0o444)
    os.utime(blob, ns=(st.st_atime_ns, st.st_mtime_ns))  # forge the timestamps back
    assert (blob.stat().st_size, blob.stat().st_mtime_ns, blob.stat().st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)
    with pytest.raises(IntegrityError, match="was modified"):
        resolve_for_load("det:1", registry=reg)


def test_manifest_replaced_by_a_directory_gives_typed_errors(reg: Registry, tmp_path: Path) -> None:
    v1 = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 100), alias="prod")
    reg.register("det", make_file(tmp_path, "b.onnx", b"b" * 100))
    mblob = reg.root / "blobs" / "sha256" / v1.digest[7:9] / v1.digest[7:]
    _dirs.remove_path(mblob)
    mblob.mkdir()
    for call in (lambda: reg.resolve("det:1"), lambda: reg.resolve("det@prod"), lambda: reg.list_versions("det"),
                 lambda: resolve_for_load("det@prod", registry=reg)):
        with pytest.raises(IntegrityError, match="unreadable"):
            call()
    report = reg.verify()
    assert not report.ok
    assert {p.subject for p in report.problems} == {"det:1", "det@prod"}
    plan = reg.gc(dry_run=True, min_age_s=0)  # a manifest it cannot read: nothing of the store is collected
    assert not plan.blobs and not plan.trees
    assert reg.resolve("det:2").version == "2"


def test_file_replaced_by_a_directory_in_a_tree_is_typed(reg: Registry, tmp_path: Path) -> None:
    mv = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 100))
    os.unlink(mv.path)
    mv.path.mkdir()
    with pytest.raises(IntegrityError, match="not a regular file"):
        resolve_for_load("det:1", registry=reg)
    assert not reg.verify().ok


def test_verify_reports_unexpected_files_in_a_version(reg: Registry, tmp_path: Path) -> None:
    d = tmp_path / "ov"
    d.mkdir()
    (d / "model.xml").write_text("<net/>")
    (d / "model.bin").write_bytes(b"\0" * 100)
    mv = reg.register("ov", d)
    assert reg.verify().ok
    (mv.root / "plugin.so").write_bytes(b"evil")
    (mv.root / "extra").mkdir()
    report = reg.verify()
    assert sorted(p.message.rsplit(": ", 1)[1] for p in report.problems) == ["extra/", "plugin.so"]


# ---------------------------------------------------------------- 5. gc
def test_gc_removes_deleted_versions_and_their_artifacts(reg: Registry, tmp_path: Path) -> None:
    v1 = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 100), alias="prod")
    v2 = reg.register("det", make_file(tmp_path, "b.onnx", b"b" * 100))
    key = {"engine": "tensorrt", "precision": "fp16"}
    art = reg.publish_artifact(v1.digest, key, {"model.plan": b"PLAN", "sub/meta.json": b"{}"})
    assert reg.find_artifact(v1.digest, key) == art == reg.artifact_dir(v1.digest, key)
    assert (art / "model.plan").read_bytes() == b"PLAN"
    assert reg.find_artifact(v1.digest, {"engine": "tensorrt", "precision": "fp32"}) is None
    assert len(reg.gc(dry_run=True, min_age_s=0)) == 0
    with pytest.raises(RegistryError, match="target of alias"):
        reg.delete_version("det:1")
    reg.set_alias("det", "prod", "2")
    reg.delete_version("det:1")
    with pytest.raises(ModelNotFoundError, match="deleted"):
        reg.resolve("det:1")
    with pytest.raises(VersionConflictError, match="never reused"):
        reg.register("det", make_file(tmp_path, "c.onnx", b"c"), version="1")
    plan = reg.gc(dry_run=True, min_age_s=0)
    assert plan.artifacts and plan.blobs and plan.trees and not plan.done
    assert (art / "model.plan").exists()  # dry run removes nothing
    plan = reg.gc(min_age_s=0)
    assert plan.done and not art.exists() and not v1.root.exists()
    assert reg.resolve("det:2") == v2 and reg.verify().ok
    assert len(reg.gc(min_age_s=0)) == 0


def test_gc_keeps_young_artifacts_and_those_of_live_sources(reg: Registry, tmp_path: Path) -> None:
    v1 = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 100))
    v2 = reg.register("det", make_file(tmp_path, "b.onnx", b"b" * 100))
    gone = reg.publish_artifact(v1.digest, {"k": "v"}, {"model.plan": b"PLAN"})
    live = reg.publish_artifact(v2.digest, {"k": "v"}, {"model.plan": b"PLAN"})
    reg.delete_version("det:1")
    plan = reg.gc(min_age_s=600)  # the source is gone, but the artifact was just built: kept
    assert not plan.artifacts and gone.exists() and live.exists()
    old = time.time() - 3600
    for p in (gone, gone.parent, live, live.parent):
        os.utime(p, (old, old))
    cache = reg.engine_cache_dir(v1.digest, {"engine": "openvino"})  # an engine writing into it now
    assert cache is not None and cache.parent == gone.parent
    assert not reg.gc(min_age_s=600).artifacts and gone.exists()
    os.rmdir(cache)
    os.utime(gone.parent, (old, old))
    plan = reg.gc(min_age_s=600)
    assert plan.artifacts == [gone.parent] and not gone.exists()
    assert live.exists() and reg.find_artifact(v2.digest, {"k": "v"}) == live


def test_artifact_staging_is_atomic(reg: Registry, tmp_path: Path) -> None:
    mv = reg.register("det", make_file(tmp_path, "a.onnx", b"a"))
    key = {"k": "v"}
    with pytest.raises(RuntimeError):
        with reg.stage_artifact(mv.digest, key) as d:
            (d / "half.plan").write_bytes(b"half")
            raise RuntimeError("build failed")
    assert reg.find_artifact(mv.digest, key) is None
    with reg.stage_artifact(mv.digest, key) as d1:
        (d1 / "x.plan").write_bytes(b"first")
        with reg.stage_artifact(mv.digest, key) as d2:
            (d2 / "x.plan").write_bytes(b"second")
    assert (reg.find_artifact(mv.digest, key) / "x.plan").read_bytes() == b"second"  # first published wins
    with pytest.raises(ModelNotFoundError):
        reg.publish_artifact("sha256:" + "1" * 64, key, {"a": b""})
    with pytest.raises(InvalidInputError):
        reg.publish_artifact(mv.digest, {"k": 1}, {"a": b""})
    assert not list((reg.root / "tmp").iterdir())


# ---------------------------------------------------------------- 6. read-only, ENOSPC
def test_read_only_never_writes(reg: Registry, tmp_path: Path) -> None:
    v1 = reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 100), alias="prod")
    before = snapshot(reg.root, skip_tmp=False)
    ro = Registry(reg.root, read_only=True)
    assert ro.resolve("det@prod") == v1
    assert resolve_for_load("det@prod", registry=ro) == v1
    assert ro.verify().ok and ro.list_models() == ["det"] and ro.list_versions("det") == [v1]
    assert len(ro.gc(dry_run=True)) == 0
    ro.write_lock(["det@prod"], tmp_path / "ro.lock")
    for call in (lambda: ro.register("det", tmp_path / "src" / "a.onnx"), lambda: ro.set_alias("det", "prod", "1"),
                 lambda: ro.rollback("det", "prod"), lambda: ro.gc(), lambda: ro.delete_version("det:1"),
                 lambda: ro.publish_artifact(v1.digest, {}, {"a": b""})):
        with pytest.raises(RegistryError, match="read_only"):
            call()
    assert snapshot(reg.root, skip_tmp=False) == before
    empty = Registry(tmp_path / "nothing-here", read_only=True)
    assert empty.list_models() == [] and not (tmp_path / "nothing-here").exists()


def test_enospc_at_every_write_leaves_registry_unchanged(reg: Registry, tmp_path: Path, monkeypatch) -> None:
    reg.register("det", make_file(tmp_path, "a.onnx", b"a" * 3000), alias="prod")
    d = tmp_path / "dir"
    d.mkdir()
    (d / "model.xml").write_bytes(b"<x/>" * 100)
    (d / "model.bin").write_bytes(b"\1" * 5000)
    probe = Registry(tmp_path / "probe")
    probe.register("det", make_file(tmp_path, "z.onnx", b"z"))
    total = count_writes(monkeypatch, lambda: probe.register("det", d, alias="prod"))
    assert total >= 4  # two files, manifest, pointer, alias
    for fail_at in range(total):
        before = snapshot(reg.root)
        undo = fail_writes_after(monkeypatch, fail_at)
        try:
            reg.register("det", d, alias="prod")
        except RegistryError as caught:
            exc = caught
            assert "no space left" in str(exc)
        else:  # pragma: no cover
            pytest.fail("no error raised")
        finally:
            undo()
        after = snapshot(reg.root)
        if fail_at < total - 1:  # the version itself was never published
            assert after == before, f"write #{fail_at + 1} failed but the registry changed"
            assert "was registered" not in str(exc)
        else:  # only the alias move failed: a whole version, the alias unchanged, and the error says so
            assert "det:2 was registered" in str(exc) and "alias det@prod was not moved" in str(exc)
            assert exc.registered.version == "2" and reg.resolve("det:2") == exc.registered
            assert (reg.resolve("det:2").root / "model.bin").read_bytes() == b"\1" * 5000
            assert reg.aliases("det") == {"prod": "1"}
            assert [v.version for v in reg.list_versions("det")] == ["1", "2"]
        assert reg.verify().ok
        reg.gc(min_age_s=0)
        assert not list((reg.root / "tmp").iterdir())
    assert reg.resolve("det@prod").version == "1"


# ---------------------------------------------------------------- 7. integration
def test_default_root(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELSERVE_HOME", str(tmp_path / "home"))
    assert Registry().root == tmp_path / "home" == default_root()
    monkeypatch.delenv("MODELSERVE_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_root() == tmp_path / "xdg" / "modelserve"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert default_root() == tmp_path / "user" / ".cache" / "modelserve"


def test_resolve_for_load_uses_default_registry(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELSERVE_HOME", str(tmp_path / "home"))
    mv = Registry().register("det", make_file(tmp_path, "a.onnx", b"a"), alias="prod")
    assert resolve_for_load("det@prod") == mv
    assert resolve_for_load("det:1") == mv


def test_errors_exported_from_modelserve() -> None:
    for name in ("RegistryError", "ModelNotFoundError", "VersionConflictError", "IntegrityError",
                 "PinMismatchError", "InvalidNameError"):
        err = getattr(modelserve, name)
        assert issubclass(err, ModelserveError) and (name == "RegistryError" or issubclass(err, RegistryError))


def test_ms_load_registry_ref_with_lock(reg: Registry, tmp_path: Path) -> None:
    load = getattr(modelserve, "load", None)
    assert load is not None, "modelserve.load is missing"
    params = inspect.signature(load).parameters
    assert "registry" in params and "lock" in params, "modelserve.load must take registry= and lock="
    reg.register("det", NUDENET, alias="prod")
    lock = reg.write_lock(["det@prod"], tmp_path / "modelserve.lock")
    reg.register("det", make_file(tmp_path, "junk.onnx", b"not a model"), alias="prod")
    p = load("det@prod", registry=reg, lock=lock)  # the lock pins version 1, the real model
    try:
        import numpy as np

        r = p.predict(np.zeros((320, 320, 3), dtype=np.uint8))
        assert len(r.xyxy) >= 0
    finally:
        close = getattr(p, "close", None)
        if close:
            close()
    reg.delete_version("det:1", force=True)
    with pytest.raises(ModelNotFoundError):
        load("det@prod", registry=reg, lock=lock)


@pytest.mark.parametrize("step", ["blobs", "manifest", "tree", "pointer", "published"])
def test_registrar_restores_what_a_concurrent_gc_took(reg: Registry, tmp_path: Path, monkeypatch, step: str) -> None:
    """A gc that moves a blob or tree away mid-registration (the race gc's protocol allows) is repaired."""
    from modelserve._registry import _faults

    src = make_file(tmp_path, "a.onnx", b"a" * 5000)
    import hashlib

    hx = hashlib.sha256(src.read_bytes()).hexdigest()

    def steal(at: str) -> None:
        if at == step:
            _dirs.remove_path(reg.root / "blobs" / "sha256" / hx[:2] / hx)
            for t in (reg.root / "trees").iterdir() if (reg.root / "trees").exists() else []:
                _dirs.remove_path(t)

    monkeypatch.setattr(_faults, "hook", steal)
    mv = reg.register("det", src)
    monkeypatch.setattr(_faults, "hook", None)
    assert mv.path.read_bytes() == src.read_bytes()
    assert reg.verify().ok
