"""Regenerate tests/goldens/detector.json with Ultralytics' own predictor.

Run once in a dev environment that has ultralytics (and torch) installed, from the repo root:

    PYTHONPATH=. python tests/goldens/make_goldens.py

Each case feeds Ultralytics ``YOLO(model).predict(array, ...)`` the very BGR array modelserve
decodes from the photo (``modelserve._images.load_image``), so the comparison tests the detector
pipeline, not two JPEG decoders. Grayscale photos are given as three equal channels.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, not tests/ (it would shadow packages)
from modelserve._images import load_image  # noqa: E402
from tests import assets  # noqa: E402

PHOTOS = ["bus.jpg", "zidane.jpg", *assets.SKIMAGE_PHOTOS, assets.GRAY_PHOTO]

# (model, photos, options); options use modelserve's names (agnostic, not agnostic_nms).
CASES = [
    ("dynamic", PHOTOS, {}),
    ("dynamic", ["bus.jpg", "zidane.jpg", "astronaut.png"], {"imgsz": 640}),
    ("dynamic", ["bus.jpg", "astronaut.png"], {"conf": 0.1, "iou": 0.5, "max_det": 3}),
    ("dynamic", ["zidane.jpg", "bus.jpg"], {"imgsz": 640, "classes": [12]}),
    ("dynamic", ["bus.jpg", "chelsea.png"], {"conf": 0.05, "classes": [1, 16]}),
    ("dynamic", ["bus.jpg", "astronaut.png", "zidane.jpg"], {"conf": 0.05, "agnostic": True}),
    ("dynamic", ["bus.jpg", "chelsea.png"], {"conf": 0.01, "iou": 0.9}),
    ("fixed640", ["bus.jpg", "zidane.jpg", "astronaut.png", "camera.png"], {}),
    ("fixed640", ["bus.jpg"], {"conf": 0.1, "agnostic": True}),
]


def bgr_array(name: str) -> np.ndarray:
    img = load_image(str(assets.photo(name)))
    return np.ascontiguousarray(img.pixels[..., ::-1]) if not img.bgr else img.pixels


def main() -> None:
    import ultralytics
    from ultralytics import YOLO

    models = {"dynamic": assets.detector_path(), "fixed640": assets.fixed_detector_path()}
    out = {"ultralytics_version": ultralytics.__version__, "cases": []}
    for model_key, photos, options in CASES:
        model = YOLO(str(models[model_key]), task="detect")
        kwargs = {
            "imgsz": options.get("imgsz", 320 if model_key == "dynamic" else 640),
            "conf": options.get("conf", 0.25),
            "iou": options.get("iou", 0.7),
            "max_det": options.get("max_det", 300),
            "classes": options.get("classes"),
            "agnostic_nms": options.get("agnostic", False),
        }
        for name in photos:
            res = model.predict(bgr_array(name), verbose=False, device="cpu", **kwargs)[0]
            boxes = res.boxes
            out["cases"].append(
                {
                    "model": model_key,
                    "photo": name,
                    "options": options,
                    "xyxy": boxes.xyxy.numpy().round(4).tolist(),
                    "confidence": boxes.conf.numpy().round(6).tolist(),
                    "class_id": boxes.cls.numpy().astype(int).tolist(),
                }
            )
            print(model_key, name, options, len(boxes))
    path = Path(__file__).with_name("detector.json")
    path.write_text(json.dumps(out, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main()
