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
from modelserve._registry._faults import STEPS

ROOT = Path(__file__).resolve().parents[1]

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
                Registry(reg.root).gc()
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


def test_reader_during_alias_flips(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    digests = {}
    for i in range(3):
        f = tmp_path / f"m{i}.onnx"
        f.write_bytes(bytes([i]) * 500)
        mv = reg.register("det", f)
        digests[mv.version] = mv.digest
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
