"""Registry naming rules, reference parsing and the path-vs-reference rule of ``load``."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelserve._errors import InvalidNameError
from modelserve._registry import Registry, is_registry_ref, parse_ref
from modelserve._registry._names import validate_alias, validate_label, validate_name, validate_relpath

HOSTILE = [
    "", "a", "../x", "..", "a..b", "a/b", "a\\b", "det\x00", "c:", "C:det", "con", "NUL", "nul.onnx", "com1",
    "lpt9.txt", "Det", "det ", " det", "det.", ".det", "-det", "x" * 65, "dét", "a:b", "a@b", "a*b", "a\nb",
]


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_model_names_refused(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError):
        validate_name(name)
    src = tmp_path / "m.onnx"
    src.write_bytes(b"m")
    with pytest.raises(InvalidNameError):
        Registry(tmp_path / "r").register(name, src)
    assert not (tmp_path / "r" / "models").exists() or not any((tmp_path / "r" / "models").iterdir())


@pytest.mark.parametrize("label", ["", "../1", "1/2", "con", "v1.", "V1", "x" * 65, "1\x00", "a b"])
def test_hostile_labels_and_aliases_refused(label: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidNameError):
        validate_label(label)
    with pytest.raises(InvalidNameError):
        validate_alias(label)
    src = tmp_path / "m.onnx"
    src.write_bytes(b"m")
    with pytest.raises(InvalidNameError):
        Registry(tmp_path / "r").register("det", src, version=label)


@pytest.mark.parametrize("good", ["det", "yolov8n", "det-2.1_x", "a1", "x" * 64])
def test_good_names(good: str) -> None:
    assert validate_name(good) == good
    assert validate_label("3") == "3" and validate_alias("prod") == "prod"


def test_sha256_alias_reserved() -> None:
    with pytest.raises(InvalidNameError, match="reserved"):
        validate_alias("sha256")


@pytest.mark.parametrize(
    "path", ["/etc/passwd", "../x", "a/../b", "a//b", "./a", "a\\b", "c:x", "a/con", "aux.txt", "x.", "a\x01", "a|b", ""]
)
def test_hostile_relpaths(path: str) -> None:
    with pytest.raises(InvalidNameError):
        validate_relpath(path)


@pytest.mark.parametrize(
    "ref, expected",
    [
        ("det", ("det", None, None, None)),
        ("det:3", ("det", "3", None, None)),
        ("det@prod", ("det", None, "prod", None)),
        ("det@sha256:ABCDEF0123", ("det", None, None, "sha256:abcdef0123")),
    ],
)
def test_parse_ref(ref: str, expected: tuple) -> None:
    r = parse_ref(ref)
    assert (r.name, r.label, r.alias, r.digest) == expected
    assert parse_ref(str(r)) == r


@pytest.mark.parametrize("ref", ["det:", "det@", ":3", "@prod", "det@sha256:xyz", "det@sha256:1234", "det:3:4", "det@a@b"])
def test_bad_refs(ref: str) -> None:
    with pytest.raises(InvalidNameError):
        parse_ref(ref)


@pytest.mark.parametrize(
    "source, is_ref",
    [
        ("det", True), ("det:3", True), ("det@prod", True), ("det@sha256:" + "a" * 64, True),
        ("yolov8n.onnx", False), ("model.XML", False), ("m.engine", False), ("m.plan", False),
        ("models/det", False), ("C:det", False), ("c:3", False), ("..\\det", False), ("Det", False), ("", False),
    ],
)
def test_is_registry_ref(source: str, is_ref: bool) -> None:
    assert is_registry_ref(source) is is_ref


def test_existing_path_is_never_a_ref(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "det").write_bytes(b"x")
    assert not is_registry_ref("det")
    assert not is_registry_ref(tmp_path / "det")  # PathLike: always a path
