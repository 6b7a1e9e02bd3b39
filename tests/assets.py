"""Real models and photos for tests, examples and benchmarks, all shipped inside PyPI packages.

* The detector: ``nudenet==3.4.2`` ships ``nudenet/320n.onnx``, a trained Ultralytics YOLOv8n export
  (dynamic batch/height/width, 18 classes, metadata imgsz [320, 320]).
* A fixed-shape variant (batch 1, 640x640) is derived from it with the ``onnx`` package.
* Photos: scikit-image's ``skimage/data`` and Ultralytics' ``bus.jpg`` / ``zidane.jpg``, taken from
  the ultralytics wheel (``pip download --no-deps``, cached under ``tests/.data``), never imported.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".data"
ULTRALYTICS_WHEEL_VERSION = "8.4.190"
SKIMAGE_PHOTOS = ("astronaut.png", "coffee.png", "chelsea.png", "motorcycle_left.png", "rocket.jpg")
GRAY_PHOTO = "camera.png"


class AssetUnavailable(RuntimeError):
    """A test asset's package is not installed (install the dev extras)."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise AssetUnavailable(f"package {name!r} is not installed: pip install -e .[dev]")
    return Path(spec.origin).parent


def detector_path() -> Path:
    """The trained YOLOv8n detector shipped by nudenet (dynamic shapes)."""
    path = _package_dir("nudenet") / "320n.onnx"
    if not path.is_file():
        raise AssetUnavailable(f"{path} is missing; reinstall nudenet==3.4.2")
    return path


def fixed_detector_path() -> Path:
    """The same detector with its input fixed to [1, 3, 640, 640] and metadata imgsz [640, 640],
    as a static Ultralytics export at 640 would have it. Built once into ``tests/.data``."""
    out = CACHE / "320n_fixed640.onnx"
    if out.is_file():
        return out
    import onnx

    model = onnx.load(str(detector_path()))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    for dim, value in zip(dims, (1, 3, 640, 640)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    out_dims = model.graph.output[0].type.tensor_type.shape.dim
    for dim, value in zip(out_dims, (1, 22, 8400)):
        dim.ClearField("dim_param")
        dim.dim_value = value
    for prop in model.metadata_props:
        if prop.key == "imgsz":
            prop.value = "[640, 640]"
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    onnx.save(model, str(tmp))
    os.replace(tmp, out)
    return out


def skimage_photo(name: str) -> Path:
    path = _package_dir("skimage") / "data" / name
    if not path.is_file():
        raise AssetUnavailable(f"{path} is missing from scikit-image")
    return path


def ultralytics_asset(name: str) -> Path:
    """``bus.jpg`` or ``zidane.jpg`` from the ultralytics wheel (downloaded from PyPI once, no deps)."""
    out = CACHE / name
    if out.is_file():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = list(CACHE.glob(f"ultralytics-{ULTRALYTICS_WHEEL_VERSION}-*.whl"))
    if not wheels:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(CACHE),
               f"ultralytics=={ULTRALYTICS_WHEEL_VERSION}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(CACHE.glob(f"ultralytics-{ULTRALYTICS_WHEEL_VERSION}-*.whl"))
        if result.returncode != 0 or not wheels:
            raise AssetUnavailable(f"could not download the ultralytics wheel: {result.stderr.strip()[-300:]}")
    with zipfile.ZipFile(wheels[0]) as zf:
        data = zf.read(f"ultralytics/assets/{name}")
    tmp = out.with_suffix(f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, out)
    return out


def photo(name: str) -> Path:
    """Any photo by file name, from whichever package ships it."""
    if name in ("bus.jpg", "zidane.jpg"):
        return ultralytics_asset(name)
    return skimage_photo(name)
