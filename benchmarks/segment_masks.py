"""Segmentation post-processing (NMS + retina masks) on the random-weight YOLO11-seg test model, bus.jpg
(126 detections): modelserve vs Ultralytics, same ONNX file. Run from the repo root:
OMP_NUM_THREADS=1 YOLO_OFFLINE=1 PYTHONPATH=. python benchmarks/segment_masks.py"""
import sys

import numpy as np

import modelserve as ms
from modelserve._images import load_image

sys.path.insert(0, "tests")
import assets  # noqa: E402

img = load_image(str(assets.photo("bus.jpg")))
bgr = np.ascontiguousarray(img.pixels[..., ::-1])
p = ms.load("tests/goldens/tasks/models/seg.onnx")
for _ in range(3):
    p.predict(bgr)
ts = [p.predict(bgr).speed["postprocess"] for _ in range(10)]
print("modelserve seg post ms (126 dets, 1080x810): median", np.median(ts))
try:
    from ultralytics import YOLO
    y = YOLO("tests/goldens/tasks/models/seg.onnx", task="segment")
    for _ in range(3):
        y.predict(bgr, imgsz=320, retina_masks=True, verbose=False)
    us = [y.predict(bgr, imgsz=320, retina_masks=True, verbose=False)[0].speed["postprocess"] for _ in range(10)]
    print("ultralytics seg post ms: median", np.median(us))
except ImportError:
    pass
