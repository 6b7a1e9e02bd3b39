"""The main job: a real detector on a real photo, through the default registry and engine.

    make demo            # or: python examples/demo.py [IMAGE]

The detector is the trained Ultralytics YOLOv8n export that the ``nudenet`` package ships
(18 classes: faces and clothing regions); the photo defaults to Ultralytics' bus.jpg. The model is
registered in the default registry ($MODELSERVE_HOME, else the user cache dir) as
``detector`` with alias ``demo`` (registering the same bytes again reuses the version), then loaded
by reference, as an application would.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import assets  # noqa: E402

import modelserve as ms  # noqa: E402


def main(argv: list[str]) -> int:
    image = Path(argv[0]) if argv else assets.photo("bus.jpg")
    registry = ms.Registry()
    version = registry.register("detector", assets.detector_path(), alias="demo")
    print(f"registry {registry.root}: detector:{version.version} {version.digest[:19]}... (alias demo)")
    predictor = ms.load("detector@demo")
    print(predictor)
    result = predictor.predict(image, conf=0.25)
    print(f"{image.name}: {len(result)} detections, image {result.orig_shape[1]}x{result.orig_shape[0]}")
    for det in result:
        x1, y1, x2, y2 = (round(float(v), 1) for v in det.xyxy)
        print(f"  {det.class_name:<22} {det.confidence:.3f}  [{x1}, {y1}, {x2}, {y2}]")
    speed = ", ".join(f"{k} {v:.1f} ms" for k, v in result.speed.items())
    print(f"speed: {speed}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
