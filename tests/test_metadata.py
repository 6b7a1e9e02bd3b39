"""Ultralytics metadata is parsed safely, and user overrides win."""

from __future__ import annotations

import pytest

import modelserve as ms
from modelserve._metadata import describe_model, parse_metadata

ULTRA = {
    "names": "{0: 'person', 1: 'bicycle'}",
    "stride": "32",
    "imgsz": "[640, 480]",
    "task": "detect",
    "batch": "1",
}


def test_parses_ultralytics_fields():
    info = parse_metadata(ULTRA)
    assert info.names == {0: "person", 1: "bicycle"}
    assert (info.stride, info.imgsz, info.task, info.batch, info.end2end) == (32, (640, 480), "detect", 1, False)


@pytest.mark.parametrize("meta", [{"end2end": "True"}, {"args": "{'nms': True, 'batch': 1}"}])
def test_end2end_flags(meta):
    assert parse_metadata({**ULTRA, **meta}).end2end


@pytest.mark.parametrize(
    "key, value",
    [
        ("names", "__import__('os').system('echo pwned')"),
        ("names", "[1, 2"),
        ("names", "{'a': 'person'}"),
        ("imgsz", "[0, 640]"),
        ("imgsz", "open('/etc/passwd').read()"),
        ("stride", "thirty-two"),
        ("end2end", "exec('1')"),
    ],
)
def test_malformed_or_hostile_metadata_is_refused(key, value):
    with pytest.raises(ms.ModelLoadError, match=key):
        parse_metadata({**ULTRA, key: value})


def test_overrides_and_defaults():
    info = parse_metadata(ULTRA, names=["a", "b", "c"], imgsz=320)
    assert info.names == {0: "a", 1: "b", 2: "c"} and info.imgsz == (320, 320)
    bare = parse_metadata({}, num_classes=3)
    assert bare.names == {0: "0", 1: "1", 2: "2"} and bare.imgsz is None and bare.stride == 32
    # A user override also rescues a model whose own metadata is broken.
    assert parse_metadata({**ULTRA, "names": "{bad"}, names={0: "x"}).names == {0: "x"}


def test_describe_real_model(detector_path):
    d = describe_model(str(detector_path))
    assert d["names"]["1"] == "FACE_FEMALE" and len(d["names"]) == 18
    assert d["imgsz"] == [320, 320] and d["stride"] == 32 and d["task"] == "detect"
    assert d["inputs"] == [{"name": "images", "shape": [None, 3, None, None], "dtype": "float32"}]
    assert d["outputs"][0]["shape"][:2] == [None, 22]
