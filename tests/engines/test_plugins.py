"""A third-party engine package, pip-installed, is found by name through its entry point."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import modelserve as ms
from modelserve import _engine_catalog as reg

PLUGIN_SRC = Path(__file__).resolve().parents[1] / "plugin_pkg"


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """Install tests/plugin_pkg into a temporary --target directory on sys.path; remove it after."""
    pytest.importorskip("onnxruntime")
    try:
        import pip  # noqa: F401
    except ImportError:
        pytest.skip("pip is not available in this environment")
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("setuptools is needed to build the plugin package (--no-build-isolation)")
    root = tmp_path_factory.mktemp("plugin")
    src, target = root / "src", root / "site"
    shutil.copytree(PLUGIN_SRC, src)  # build in a copy: no build/ or egg-info litter in tests/
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
           "--no-index", "--disable-pip-version-check", "--target", str(target), str(src)]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        pytest.fail(f"pip could not install the test plugin:\n{result.stdout}\n{result.stderr}")
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("modelserve_echo_engine", None)
        importlib.invalidate_caches()


def test_plugin_is_discovered_through_its_entry_point(plugin):
    eps = {ep.name: ep.value for ep in importlib.metadata.entry_points(group=reg.ENTRY_POINT_GROUP)}
    assert eps["echo"] == "modelserve_echo_engine:EchoEngine"
    info = {e.name: e for e in reg.list_engines()}["echo"]
    assert (info.available, info.version, info.devices, info.origin, info.reason) == (True, "0.1.0", ("cpu",), "plugin", None)
    assert "echo" in reg.engine_names()


def test_load_the_real_detector_with_the_plugin(plugin, detector_path, bgr):
    with ms.load(detector_path, engine="echo", engine_options={"tag": "t"}) as p:
        assert type(p.engine).__module__ == "modelserve_echo_engine" and p.engine.tag == "t"
        result = p.predict(bgr("bus.jpg"))
        assert p.engine.calls == 1
    with ms.load(detector_path, engine="onnxruntime") as ref:
        want = ref.predict(bgr("bus.jpg"))
    assert result.class_id.tolist() == want.class_id.tolist() and len(result) > 0


def test_plugin_errors_are_clear(plugin, detector_path):
    with pytest.raises(ms.EngineUnavailableError, match="modelserve_echo_engine:NotAnEngine is not a modelserve Engine subclass"):
        ms.load(detector_path, engine="broken")
    broken = {e.name: e for e in reg.list_engines()}["broken"]
    assert not broken.available and broken.origin == "plugin"
    with pytest.raises(ms.EngineUnavailableError, match="echo runs on the cpu only"):
        ms.load(detector_path, engine="echo", device="cuda")


def test_plugins_are_never_chosen_by_auto(plugin):
    for device, names in reg.AUTO_PREFERENCE.items():
        assert set(names) <= {"onnxruntime", "openvino", "tensorrt"}, device
