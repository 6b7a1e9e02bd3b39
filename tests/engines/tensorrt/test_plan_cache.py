"""The plan cache: keys, digests, atomic plan files, and Ultralytics' .engine header (no GPU)."""

from __future__ import annotations

import json
import struct

import pytest

import modelserve as ms
from modelserve.engines.tensorrt.plan_cache import (
    as_metadata,
    builder_precision,
    cache_key,
    find_plan,
    key_digest,
    split_ultralytics_engine,
    write_plan,
)


def _key(**over):
    args = dict(onnx_sha256="ab" * 32, tensorrt_version="10.3.0", gpu_name="NVIDIA H100 80GB HBM3",
                compute_capability=(9, 0), precision="fp32", builder_flags=(),
                profile={"images": ((1, 3, 32, 32), (8, 3, 640, 640), (32, 3, 640, 640))}, num_profiles=2)
    args.update(over)
    return cache_key(**args)


def test_cache_key_covers_everything_that_makes_a_plan_valid():
    base = _key()
    assert base["compute_capability"] == "9.0" and base["profile"]["images"][2] == [32, 3, 640, 640]
    assert base["builder_flags"] == [] and base["num_profiles"] == 2
    assert json.loads(json.dumps(base)) == base  # plain JSON
    variants = [_key(onnx_sha256="cd" * 32), _key(tensorrt_version="10.4.0"), _key(gpu_name="NVIDIA L4"),
                _key(compute_capability=(8, 9)), _key(precision="fp16"), _key(builder_flags=("TF32",)),
                _key(profile={"images": ((1, 3, 32, 32), (8, 3, 640, 640), (16, 3, 640, 640))}),
                _key(num_profiles=1)]
    digests = {key_digest(k) for k in [base, *variants]}
    assert len(digests) == 1 + len(variants)
    assert key_digest(_key()) == key_digest(base) and len(key_digest(base)) == 64  # deterministic
    assert _key(builder_flags=("TF32", "FP16")) == _key(builder_flags=("FP16", "TF32"))  # order-free
    with pytest.raises(ms.InvalidInputError, match="num_profiles"):
        _key(num_profiles=0)


def test_precision_is_precise():
    # FP32 means TF32 off (TensorRT enables it by default); FP16 keeps TF32 for the FP32 layers
    assert builder_precision(False) == ("fp32", ())
    assert builder_precision(True) == ("fp16", ("FP16", "TF32"))
    p32, f32 = builder_precision(False)
    p16, f16 = builder_precision(True)
    assert key_digest(_key(precision=p32, builder_flags=f32)) != key_digest(_key(precision=p16, builder_flags=f16))


def test_plan_cache_round_trip_and_atomicity(tmp_path):
    key = _key()
    assert find_plan(str(tmp_path), key) is None
    path = write_plan(str(tmp_path), key, b"PLANBYTES", {"metadata": {"stride": "32"}})
    assert path.endswith(key_digest(key) + ".plan") and open(path, "rb").read() == b"PLANBYTES"  # no header
    hit = find_plan(str(tmp_path), key)
    assert hit is not None and hit[0] == path
    sidecar = hit[1]
    assert sidecar["format"] == "modelserve-tensorrt-plan/1" and sidecar["key"] == key
    assert sidecar["key_digest"] == key_digest(key) and sidecar["metadata"] == {"stride": "32"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([key_digest(key) + ".plan", key_digest(key) + ".json"])
    assert find_plan(str(tmp_path), _key(precision="fp16")) is None
    # a plan without its sidecar (a crash between the two writes) is never used
    (tmp_path / (key_digest(key) + ".json")).unlink()
    assert find_plan(str(tmp_path), key) is None
    # a sidecar whose key differs (a digest collision or a hand-edited file) is not trusted
    write_plan(str(tmp_path), key, b"P", {})
    side = tmp_path / (key_digest(key) + ".json")
    side.write_text(json.dumps({**json.loads(side.read_text()), "key": _key(gpu_name="other")}))
    assert find_plan(str(tmp_path), key) is None


def test_split_ultralytics_engine():
    meta = {"stride": 32, "names": {"0": "person", "1": "bus"}, "imgsz": [640, 640], "batch": 1}
    blob = json.dumps(meta).encode()
    got_meta, plan = split_ultralytics_engine(struct.pack("<i", len(blob)) + blob + b"\x00PLAN")
    assert got_meta == meta and plan == b"\x00PLAN"
    raw = b"ftrt\x00\x00\x00\x00" + b"x" * 100  # a plain plan
    assert split_ultralytics_engine(raw) == (None, raw)
    from modelserve._metadata import parse_metadata

    info = parse_metadata(as_metadata(meta))
    assert info.names == {0: "person", 1: "bus"} and info.imgsz == (640, 640) and info.stride == 32


def test_a_sidecar_that_is_not_an_object_is_a_miss(tmp_path):
    key = _key()
    write_plan(str(tmp_path), key, b"P", {})
    (tmp_path / (key_digest(key) + ".json")).write_text("[1, 2]")
    assert find_plan(str(tmp_path), key) is None


def test_header_names_with_non_ascii_digits_stay_text():
    # "\u00b2".isdigit() is True, but int("\u00b2") fails: such a key is kept as a string
    assert as_metadata({"names": {"0": "a", "\u00b2": "b"}}) == {"names": "{0: 'a', '\u00b2': 'b'}"}
