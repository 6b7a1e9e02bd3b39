"""Regenerate tests/goldens/plotting/*.txt: Ultralytics' own ``Results.save_txt`` label files.

Run in the reference environment (torch, ultralytics 8.4.190), from the repo root:

    YOLO_OFFLINE=1 PYTHONPATH=. python tests/goldens/plotting/make_goldens.py

Each case feeds ``YOLO(onnx, task=...).predict(array, ...)`` the very BGR array modelserve decodes from
the photo (``modelserve._images.load_image``), with ``retina_masks=True`` (full-resolution masks, as
modelserve gives them), and writes ``save_txt(..., save_conf=True)`` to ``<case>.txt``; ``cases.json``
lists the cases with modelserve's predict options. A small ``max_det`` keeps the random-weight
models' files small (their segmentation polygons run to thousands of points).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TESTS = HERE.parents[1]
sys.path.insert(0, str(TESTS.parent))  # the repository: tests/ itself on sys.path would shadow packages
from modelserve._images import load_image  # noqa: E402
from tests import assets  # noqa: E402

PHOTOS = ["bus.jpg", "zidane.jpg", "astronaut.png"]
# case model: (file, task, imgsz, modelserve predict options)
MODELS = {
    "detector": ("detector", "detect", 320, {}),
    "seg": ("tasks/models/seg.onnx", "segment", 320, {"max_det": 3}),
    "pose": ("tasks/models/pose.onnx", "pose", 320, {"max_det": 8}),
    "obb": ("tasks/models/obb.onnx", "obb", 320, {"max_det": 8}),
    "cls": ("tasks/models/cls.onnx", "classify", 224, {}),
}


def model_path(model: str) -> Path:
    """The ONNX file of a case model (the detector comes from its package)."""
    file = MODELS[model][0]
    return assets.detector_path() if file == "detector" else TESTS / "goldens" / file


def bgr_array(name: str) -> np.ndarray:
    img = load_image(str(assets.photo(name)))
    return np.ascontiguousarray(img.pixels[..., ::-1]) if not img.bgr else img.pixels


def main() -> None:
    import ultralytics
    from ultralytics import YOLO

    cases = []
    for model, (_, task, imgsz, options) in MODELS.items():
        yolo = YOLO(str(model_path(model)), task=task)
        for photo in PHOTOS:
            name = f"{model}-{Path(photo).stem}"
            out = HERE / f"{name}.txt"
            out.unlink(missing_ok=True)
            r = yolo.predict(bgr_array(photo), imgsz=imgsz, verbose=False, device="cpu", retina_masks=True,
                             max_det=options.get("max_det", 300))[0]
            r.save_txt(out, save_conf=True)
            lines = out.read_text().splitlines() if out.is_file() else []
            cases.append({"name": name, "model": model, "photo": photo, "options": options, "lines": len(lines)})
            print(name, len(lines))
    manifest = {"ultralytics_version": ultralytics.__version__, "cases": cases}
    (HERE / "cases.json").write_text(json.dumps(manifest, indent=1) + "\n")


if __name__ == "__main__":
    main()
