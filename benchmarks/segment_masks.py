"""Segmentation post-processing (NMS + retina masks) on the random-weight YOLO11-seg test model, bus.jpg
(126 detections): modelserve vs Ultralytics, same ONNX file. Run from the repo root:
OMP_NUM_THREADS=1 YOLO_OFFLINE=1 PYTHONPATH=. python benchmarks/segment_masks.py"""
import sys, time, numpy as np
sys.path.insert(0, "tests"); import assets
from modelserve._images import load_image
import modelserve as ms
img = load_image(str(assets.photo("bus.jpg"))); bgr = np.ascontiguousarray(img.pixels[..., ::-1])
p = ms.load("tests/goldens/tasks/models/seg.onnx")
for _ in range(3): r = p.predict(bgr)
ts = [p.predict(bgr).speed["postprocess"] for _ in range(10)]
print("modelserve seg post ms (126 dets, 1080x810): median", np.median(ts))
try:
    from ultralytics import YOLO
    y = YOLO("tests/goldens/tasks/models/seg.onnx", task="segment")
    for _ in range(3): u = y.predict(bgr, imgsz=320, retina_masks=True, verbose=False)
    us = [y.predict(bgr, imgsz=320, retina_masks=True, verbose=False)[0].speed["postprocess"] for _ in range(10)]
    print("ultralytics seg post ms: median", np.median(us))
except ImportError:
    pass
