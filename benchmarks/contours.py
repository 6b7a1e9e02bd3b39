"""Segmentation polygons: modelserve._contours.mask_polygon vs Ultralytics' ops.masks2segments (what
Results.masks.xy runs: cv2.findContours + merge_multi_segment), on the same real retina masks: the
seeded YOLO11-seg / YOLO26-seg test models run by modelserve on real photos. Also cv2.findContours
alone against our kernel alone, our polygons from each detection's box crop (how a caller holding
per-box masks computes them), the pure-Python fallback, and exactness (identical polygons).
Run from the repo root with the reference env (torch, ultralytics, cv2, onnxruntime):

    OMP_NUM_THREADS=1 YOLO_OFFLINE=1 /work/refenv/bin/python benchmarks/contours.py
"""
import os
import sys
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
import assets
import numpy as np
from _timing import best  # noqa: E402

import modelserve as ms
from modelserve import _contours
from modelserve._backend import KERNELS_ENV, backend

PHOTOS = ("bus.jpg", "zidane.jpg", "astronaut.png", "coffee.png")
MODELS = ("seg", "seg26")

try:
    import cv2
    from ultralytics.utils import ops as uops
except ImportError:
    cv2 = uops = None


def polygons(masks):
    return [_contours.mask_polygon(m) for m in masks]


def crop_polygons(crops):
    return [_contours.mask_polygon(c, off) for c, off in crops]


def fallback_ms(masks):
    os.environ[KERNELS_ENV] = "numpy"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return best(lambda: polygons(masks), 1)
    finally:
        del os.environ[KERNELS_ENV]


def row(model, name, r):
    masks = r.masks
    crops = [r.mask_crop(i) for i in range(len(r))]
    ncont = sum(len(_contours.external_contours(m)) for m in masks)
    t_full = best(lambda: polygons(masks))
    t_crop = best(lambda: crop_polygons(crops))
    line = f"{model:>6} {name:>14} {len(r):>4} {ncont:>8} {t_full:>12.2f} {t_crop:>13.2f} {fallback_ms(masks):>11.1f}"
    if uops is None:
        return line
    u8 = masks.astype(np.uint8)
    t_u = best(lambda: uops.masks2segments(masks))
    t_cv = best(lambda: [cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE) for m in u8])
    t_k = best(lambda: [_contours.external_contours(m) for m in masks])
    same = sum(np.array_equal(a, b) for a, b in zip(crop_polygons(crops), uops.masks2segments(masks)))
    return line + f" {t_u:>14.2f} {t_u / t_crop:>6.1f}x {t_cv:>11.2f} {t_k:>14.2f} {same:>4}/{len(r):<4}"


def main():
    print("backend:", backend(), "| cv2", getattr(cv2, "__version__", "-"), "| OMP_NUM_THREADS =",
          os.environ["OMP_NUM_THREADS"])
    head = (f"{'model':>6} {'photo':>14} {'n':>4} {'contours':>8} {'ours full ms':>12} {'ours crops ms':>13}"
            f" {'fallback ms':>11}")
    if uops is not None:
        head += f" {'ultralytics ms':>14} {'speedup':>7} {'cv2 only ms':>11} {'kernel only ms':>14} {'identical':>9}"
    print(head)
    for model in MODELS:
        with ms.load(f"tests/goldens/tasks/models/{model}.onnx") as p:
            for name in PHOTOS:
                r = p.predict(str(assets.photo(name)))
                if len(r):
                    print(row(model, name, r), flush=True)


if __name__ == "__main__":
    main()
