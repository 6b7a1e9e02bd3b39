"""Crash and race safety: kill -9 at every registration step, many writers, readers during flips, gc races."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from modelserve._registry import Registry
from modelserve._registry._faults import GC_STEPS, STEPS

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, random, sys
from modelserve._errors import VersionConflictError
from modelserve._registry import Registry
mode, root = sys.argv[1], sys.argv[2]
reg = Registry(root)
if mode == "register":           # register argv[3] under det (auto label), alias prod, move prod around
    mv = reg.register("det", sys.argv[3], alias="prod" if len(sys.argv) > 4 else None)
    for _ in range(int(sys.argv[4]) if len(sys.argv) > 4 else 0):
        reg.set_alias("det", "prod", mv.version)
    print(json.dumps({"version": mv.version, "digest": mv.digest}))
elif mode == "label":            # register argv[3] under the fixed label argv[4]
    try:
        mv = reg.register("det", sys.argv[3], version=sys.argv[4])
        print(json.dumps({"version": mv.version, "digest": mv.digest}))
    except VersionConflictError:
        print(json.dumps({"conflict": True}))
elif mode == "flip":             # move det@prod between the given labels
    rnd = random.Random(int(sys.argv[3]))
    labels = sys.argv[5].split(",")
    for _ in range(int(sys.argv[4])):
        reg.set_alias("det", "prod", rnd.choice(labels))
elif mode == "aliasrace":        # set or roll back det@prod at random, locks off, a pause in the race window
    import os, time
    from modelserve._errors import RegistryError
    from modelserve._registry import _aliases, _faults
    _aliases.USE_LOCKS = False
    rnd = random.Random(int(sys.argv[3]))
    _faults.hook = lambda step: time.sleep(rnd.random() * 0.004) if step == "alias" else None
    labels = sys.argv[5].split(",")
    done = []
    for _ in range(int(sys.argv[4])):
        if rnd.random() < 0.45:
            try:
                done.append(["rollback", reg.rollback("det", "prod").version])
            except RegistryError as exc:
                assert "no previous target" in str(exc), exc
        else:
            done.append(["set", reg.set_alias("det", "prod", rnd.choice(labels)).version])
    print(json.dumps({"pid": os.getpid(), "moves": done}))
elif mode == "gcreuse":          # gc; right after it planned, register argv[3] (reusing a blob gc planned to remove)
    from modelserve._registry import _faults
    _faults.hook = lambda step: (setattr(_faults, "hook", None), reg.register("det", sys.argv[3])) if step == "gc-planned" else None
    reg.gc(min_age_s=0)
    print(json.dumps({"survived": True}))
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("MODELSERVE_REGISTRY_FAULT", None)
    env.update(extra)
    return env


def _spawn(*args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *args], env=_env(**env), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen) -> dict:
    out, err = p.communicate(timeout=60)
    assert p.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def _no_garbage(reg: Registry) -> None:
    reg.gc(min_age_s=0)
    assert len(reg.gc(dry_run=True, min_age_s=0)) == 0
    tmp = reg.root / "tmp"
    assert not tmp.exists() or not list(tmp.iterdir())


@pytest.mark.parametrize("step", STEPS)
def test_kill_9_at_each_registration_step(tmp_path: Path, step: str) -> None:
    reg = Registry(tmp_path / "reg")
    first = tmp_path / "first.onnx"
    first.write_bytes(b"first" * 100)
    reg.register("det", first, alias="prod")
    src = tmp_path / "big.onnx"
    src.write_bytes(os.urandom(3 << 20))  # several copy chunks: 'copy' dies mid-file
    p = _spawn("register", str(reg.root), str(src), "0", MODELSERVE_REGISTRY_FAULT=step)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, f"the process was not killed at {step!r}"
    versions = reg.list_versions("det")
    published = STEPS.index(step) >= STEPS.index("published")
    assert [v.version for v in versions] == (["1", "2"] if published else ["1"])
    if published:
        assert versions[1].path.read_bytes() == src.read_bytes()  # whole
    assert reg.aliases("det") == {"prod": "1"}  # died before (or while) moving the alias
    assert reg.verify().ok
    plan = reg.gc(min_age_s=0)
    if step in ("copy", "staged", "blobs", "manifest", "tree", "pointer"):
        assert plan.staging, "the dead process's staging area should be collected"
    _no_garbage(reg)
    again = reg.register("det", src, alias="prod")
    assert again.version == "2" and reg.resolve("det@prod") == again
    assert reg.verify().ok


@pytest.mark.parametrize("step", GC_STEPS)
def test_kill_9_of_gc_never_loses_a_blob_a_version_reuses(tmp_path: Path, step: str) -> None:
    reg = Registry(tmp_path / "reg")
    keep = tmp_path / "keep.onnx"
    keep.write_bytes(b"keep" * 100)
    reg.register("det", keep)
    src = tmp_path / "m.onnx"
    src.write_bytes(os.urandom(5000))
    reg.register("det", src, version="old")
    reg.delete_version("det:old")  # its blob is garbage now: gc plans to remove it
    p = _spawn("gcreuse", str(reg.root), str(src), MODELSERVE_REGISTRY_FAULT=step)
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL, f"gc was not killed at {step!r}"
    reused = reg.list_versions("det")[-1]
    if step == "gc-trashed":  # killed after moving the blob a new version reuses into its trash
        assert [v.version for v in reg.list_versions("det")] == ["1", "2"]
        assert any((reg.root / "tmp").glob("gc-*")), "gc's trash should be left behind"
    reg.gc(min_age_s=0)  # finds the dead gc's trash and puts back what is referenced
    assert reg.verify().ok, reg.verify().problems
    assert reused.path.read_bytes() == src.read_bytes()
    blob = reg.root / "blobs" / "sha256" / reused.files[0].hex[:2] / reused.files[0].hex
    assert blob.read_bytes() == src.read_bytes()
    _no_garbage(reg)
    assert reg.verify().ok


def test_gc_trash_is_drained_not_deleted(tmp_path: Path) -> None:
    """A dead gc's trash holding a referenced blob and tree: both come back, the garbage goes."""
    reg = Registry(tmp_path / "reg")
    src = tmp_path / "a.onnx"
    src.write_bytes(b"a" * 4000)
    mv = reg.register("det", src)
    hx, mhex = mv.files[0].hex, mv.digest[7:]
    trash = reg.root / "tmp" / "gc-otherhost-1-1-abcd"  # another host's: dead once old enough
    trash.mkdir(parents=True)
    os.rename(reg.root / "blobs" / "sha256" / hx[:2] / hx, trash / f"b-0-{hx}")
    os.rename(reg.root / "trees" / mhex, trash / f"1-{mhex}")  # the older naming
    (trash / ("b-2-" + "e" * 64)).write_bytes(b"garbage")
    old = 1_000_000_000
    os.utime(trash, (old, old))
    plan = reg.gc(min_age_s=0)
    assert trash in plan.staging and not trash.exists()
    assert reg.verify().ok and (mv.root / "a.onnx").read_bytes() == src.read_bytes()
    assert os.path.samefile(mv.path, reg.root / "blobs" / "sha256" / hx[:2] / hx)
    assert not list((reg.root / "blobs" / "sha256").glob("ee/*"))


def test_eight_processes_register_at_once_while_gc_runs(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    srcs = []
    for i in range(8):
        d = tmp_path / f"m{i}"
        d.mkdir()
        (d / "model.onnx").write_bytes(os.urandom(20000) + bytes([i]))
        (d / "shared.bin").write_bytes(b"shared" * 1000)  # one blob shared by every version
        srcs.append(d)
    stop = threading.Event()
    gc_errors: list[BaseException] = []

    def collect() -> None:
        while not stop.is_set():
            try:
                Registry(reg.root).gc(min_age_s=0)
            except BaseException as exc:  # pragma: no cover
                gc_errors.append(exc)

    t = threading.Thread(target=collect)
    t.start()
    try:
        procs = [_spawn("register", str(reg.root), str(s), "5") for s in srcs]
        results = [_finish(p) for p in procs]
    finally:
        stop.set()
        t.join()
    assert not gc_errors
    assert sorted(int(r["version"]) for r in results) == list(range(1, 9))
    assert len({r["digest"] for r in results}) == 8
    for r, s in zip(results, srcs):
        mv = reg.resolve(f"det:{r['version']}")
        assert mv.digest == r["digest"]
        assert (mv.root / "model.onnx").read_bytes() == (s / "model.onnx").read_bytes()
    assert len(reg.alias_history("det", "prod")) == 8 * 6
    assert reg.resolve("det@prod").version in {r["version"] for r in results}
    assert reg.verify().ok
    _no_garbage(reg)
    assert reg.verify().ok and len(reg.list_versions("det")) == 8


def test_processes_racing_for_one_label(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    same = tmp_path / "same.onnx"
    same.write_bytes(b"same" * 1000)
    procs = [_spawn("label", str(reg.root), str(same), "v1") for _ in range(4)]
    diffs = []
    for i in range(4):
        f = tmp_path / f"d{i}.onnx"
        f.write_bytes(bytes([i]) * 1000)
        diffs.append(f)
    procs += [_spawn("label", str(reg.root), str(f), "v2") for f in diffs]
    results = [_finish(p) for p in procs]
    same_results = results[:4]
    assert all("conflict" not in r for r in same_results) and len({r["digest"] for r in same_results}) == 1
    v2 = results[4:]
    winners = [r for r in v2 if "conflict" not in r]
    assert len(winners) == 1, "exactly one writer owns a label"
    assert reg.resolve("det:v2").digest == winners[0]["digest"]
    assert reg.verify().ok


def test_concurrent_set_alias_and_rollback_agree_with_history(tmp_path: Path) -> None:
    """Without locks, every rollback returns what its move made the alias point to."""
    reg = Registry(tmp_path / "reg")
    for i in range(4):
        f = tmp_path / f"m{i}.onnx"
        f.write_bytes(bytes([i]) * 300)
        reg.register("det", f)
    reg.set_alias("det", "prod", "1")
    procs = [_spawn("aliasrace", str(reg.root), str(seed), "30", "1,2,3,4") for seed in range(4)]
    results = [_finish(p) for p in procs]
    history = reg.alias_history("det", "prod")
    # each process's returned targets are exactly its moves in the history, in order
    for r in results:
        mine = [[m.op, m.version] for m in history if m.pid == r["pid"]]
        assert mine == r["moves"]
    assert sum(len(r["moves"]) for r in results) + 1 == len(history)
    # replaying as a plain stack: each rollback's recorded target is the target it popped back to
    stack: list[tuple[str, str]] = []
    for i, m in enumerate(history):
        if m.op == "set":
            stack.append((m.version, m.digest))
        else:
            assert len(stack) > 1, f"move #{i} rolled back past the first target"
            stack.pop()
            assert stack[-1] == (m.version, m.digest), f"move #{i}: rollback returned {m.version}, alias is {stack[-1][0]}"
        if i:
            assert m.previous == history[i - 1].version
    assert reg.resolve("det@prod").version == stack[-1][0] == reg.aliases("det")["prod"]
    assert reg.verify().ok


def _three_versions(reg: Registry, tmp_path: Path, size: int) -> dict[str, str]:
    """Register versions 1, 2, 3 of "det" (files of ``size`` bytes); returns {version: digest}."""
    digests = {}
    for i in range(3):
        f = tmp_path / f"m{i}.onnx"
        f.write_bytes(bytes([i]) * size)
        mv = reg.register("det", f)
        digests[mv.version] = mv.digest
    return digests


def test_old_history_files_still_replay(tmp_path: Path) -> None:
    """Lines written before moves were conditional (no seq, bare rollbacks) keep their meaning."""
    reg = Registry(tmp_path / "reg")
    digests = _three_versions(reg, tmp_path, 300)
    hist = reg.root / "models" / "det" / "aliases" / "prod.jsonl"
    hist.parent.mkdir(parents=True, exist_ok=True)
    old = [("set", "1", None), ("set", "2", "1"), ("set", "3", "2"), ("rollback", "2", "3")]
    hist.write_text("".join(
        json.dumps({"digest": digests[v], "op": op, "pid": 1, "previous": prev, "time_ns": 1, "version": v},
                   sort_keys=True, separators=(",", ":")) + "\n"
        for op, v, prev in old
    ))
    assert reg.resolve("det@prod").version == "2"
    assert reg.rollback("det", "prod").version == "1" == reg.resolve("det@prod").version
    assert [m.op for m in reg.alias_history("det", "prod")] == ["set", "set", "set", "rollback", "rollback"]
    reg.set_alias("det", "prod", "3")
    assert reg.rollback("det", "prod").version == "1"
    assert reg.verify().ok


def test_reader_during_alias_flips(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    digests = _three_versions(reg, tmp_path, 500)
    reg.set_alias("det", "prod", "1")
    stop = threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []

    def read() -> None:
        r = Registry(reg.root, read_only=True)
        while not stop.is_set():
            try:
                mv = r.resolve("det@prod")
                assert digests[mv.version] == mv.digest
                seen.append(mv.version)
            except BaseException as exc:
                errors.append(exc)

    t = threading.Thread(target=read)
    t.start()
    try:
        procs = [_spawn("flip", str(reg.root), str(seed), "40", "1,2,3") for seed in range(4)]
        for p in procs:
            p.communicate(timeout=60)
            assert p.returncode == 0
    finally:
        stop.set()
        t.join()
    assert not errors, errors[:3]
    assert len(seen) > 10 and set(seen) <= {"1", "2", "3"}
    assert len(reg.alias_history("det", "prod")) == 1 + 4 * 40
    assert reg.verify().ok
