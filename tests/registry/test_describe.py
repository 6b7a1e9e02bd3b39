"""Model descriptions are injected into the registry (``Registry(describe=...)`` or the default
modelserve installs), and the storage layer never imports the engine layer."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import modelserve
from modelserve._registry import Registry, _describe

PACKAGE = Path(modelserve.__file__).resolve().parent


def make_file(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / "src" / name
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return p


def test_describe_callable_gives_model_info_from_the_primary_file(tmp_path: Path) -> None:
    seen: list[tuple[str, bytes]] = []

    def describe(path: Path) -> dict:
        seen.append((path.name, path.read_bytes()))
        return {"names": {"0": "cat"}, "size": path.stat().st_size}

    reg = Registry(tmp_path / "reg", describe=describe)
    mv = reg.register("det", make_file(tmp_path, "m.onnx", b"x" * 10))
    assert seen == [("m.onnx", b"x" * 10)]
    assert mv.model_info == {"names": {"0": "cat"}, "size": 10}
    assert reg.resolve("det:1").model_info == mv.model_info  # stored in the manifest
    assert Registry(tmp_path / "reg").resolve("det:1").model_info == mv.model_info


def test_directory_models_describe_their_single_top_level_model_file(tmp_path: Path) -> None:
    seen: list[str] = []
    reg = Registry(tmp_path / "reg", describe=lambda p: seen.append(p.name) or {"file": p.name})
    d = tmp_path / "ov"
    (d / "sub").mkdir(parents=True)
    (d / "model.xml").write_text("<net/>")
    (d / "model.bin").write_bytes(b"\0" * 16)
    (d / "sub" / "notes.txt").write_text("hello")
    assert reg.register("ov", d).model_info == {"file": "model.xml"}
    two = tmp_path / "two"
    two.mkdir()
    (two / "a.onnx").write_bytes(b"a")
    (two / "b.onnx").write_bytes(b"b")
    assert reg.register("two", two).model_info is None  # no single primary file: nothing to describe
    assert seen == ["model.xml"]


@pytest.mark.parametrize("describe", [
    lambda p: 1 / 0,                       # a describer bug
    lambda p: {"bad": float("nan")},       # not JSON
    lambda p: {"obj": object()},           # not JSON
    lambda p: None,                        # nothing to say
], ids=["raises", "nan", "object", "none"])
def test_a_failing_describer_never_blocks_registration(tmp_path: Path, describe) -> None:
    reg = Registry(tmp_path / "reg", describe=describe)
    mv = reg.register("det", make_file(tmp_path, "m.onnx", b"y" * 10))
    assert mv.model_info is None and mv.path.read_bytes() == b"y" * 10
    assert reg.verify().ok


def test_default_describer_is_installed_by_modelserve_and_replaceable(tmp_path: Path) -> None:
    installed = _describe.default_describer()
    assert installed is not None, "importing modelserve installs its engine-based describer"
    assert installed(make_file(tmp_path, "notes.txt", b"text")) is None  # only ONNX models are loaded
    previous = _describe.set_default_describer(lambda p: {"by": "default"})
    try:
        assert previous is installed
        mv = Registry(tmp_path / "reg").register("det", make_file(tmp_path, "m.onnx", b"z"))
        assert mv.model_info == {"by": "default"}
        own = Registry(tmp_path / "reg2", describe=lambda p: {"by": "own"})
        assert own.register("det", make_file(tmp_path, "n.onnx", b"z")).model_info == {"by": "own"}
    finally:
        _describe.set_default_describer(installed)
    assert _describe.default_describer() is installed


def _imports(path: Path) -> set[str]:
    """Absolute names of the modelserve modules ``path`` imports (at any level, lazily too)."""
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    package = list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            if node.module:  # from .x import name
                out.add(".".join(base + [node.module]))
            else:  # from . import module
                out.update(".".join(base + [a.name]) for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return {m for m in out if m.startswith("modelserve")}


def test_the_storage_layer_imports_no_engine_code() -> None:
    allowed = {"modelserve._errors", "modelserve._files", "modelserve"}
    files = sorted((PACKAGE / "_registry").glob("*.py"))
    assert len(files) > 10
    for f in files:
        outside = {m for m in _imports(f) if not m.startswith("modelserve._registry")} - allowed
        assert not outside, f"{f.name} imports {sorted(outside)}"
