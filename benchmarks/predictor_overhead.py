"""Preprocess + postprocess time: modelserve's Predictor vs Ultralytics' predictor, same model.

Run with the reference environment (ultralytics, torch, cv2, onnxruntime, nudenet)::

    OMP_NUM_THREADS=1 PYTHONPATH=. /work/refenv/bin/python benchmarks/predictor_overhead.py

Model: nudenet's ``320n.onnx`` (a trained YOLOv8n export, output ``[1, 22, 2100]``), loaded by both
``modelserve.load`` and ``ultralytics.YOLO(path, task="detect")``, imgsz 320, conf 0.25, iou 0.7.
Images: Ultralytics' ``bus.jpg`` (1080x810, BGR from cv2.imread) and two scikit-image photos
resized to the same size. Both report per-stage milliseconds (``Detections.speed`` and
``Results.speed``); the table shows medians over the runs. Two interleavings: blocks of calls
(each library in its steady state, the first calls of each block dropped) and every call
alternating (each library starts where the other left the caches); see :func:`_measure`.
"""

from __future__ import annotations

import os
import statistics

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import ultralytics  # noqa: E402
from ultralytics import YOLO  # noqa: E402

import modelserve as ms  # noqa: E402
from modelserve import ops  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)
RUNS = 120  # calls of each library per image and interleaving
BLOCK, WARM = 12, 2


def images() -> dict:
    import nudenet  # noqa: F401
    from skimage import data as skdata

    bus = cv2.imread(os.path.join(os.path.dirname(ultralytics.__file__), "assets", "bus.jpg"))
    out = {"bus.jpg": bus}
    for name in ("astronaut", "coffee"):
        rgb = getattr(skdata, name)()
        out[f"{name} (resized)"] = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (bus.shape[1], bus.shape[0]))
    return out


def _measure(yolo, predictor, img, interleave: str) -> tuple:
    """Per-stage ms of both libraries on ``img``: ``interleave="blocks"`` alternates blocks of
    BLOCK calls and drops each block's first WARM calls (each library in its steady state, as in a
    service that runs only one of them); ``"calls"`` alternates every call (each library runs
    right after the other one, so both start with caches the other has used)."""
    u_pre, u_post, m_pre, m_post = [], [], [], []
    block, warm = (BLOCK, WARM) if interleave == "blocks" else (1, 0)
    for _ in range(RUNS // block):
        for k in range(block):
            r = yolo.predict(img, imgsz=320, conf=0.25, iou=0.7, verbose=False)[0]
            if k >= warm:
                u_pre.append(r.speed["preprocess"])
                u_post.append(r.speed["postprocess"])
        for k in range(block):
            d = predictor.predict(img)
            if k >= warm:
                m_pre.append(d.speed["preprocess"])
                m_post.append(d.speed["postprocess"])
    ub = r.boxes.xyxy.numpy()
    same = len(d) == len(ub) and np.allclose(np.asarray(d.xyxy), ub, atol=1e-3)
    return [statistics.median(v) for v in (u_pre, u_post, m_pre, m_post)], len(d), same


def main() -> None:
    import nudenet

    path = os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx")
    predictor = ms.load(path, imgsz=320, conf=0.25, iou=0.7)
    yolo = YOLO(path, task="detect")
    print(f"modelserve.ops backend: {ops.backend()}; ultralytics {ultralytics.__version__}, torch {torch.__version__}")
    print("\n| image | interleave | ultralytics pre ms | post ms | pre+post | modelserve pre ms | post ms | pre+post | ratio |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, img in images().items():
        for _ in range(5):  # warm up
            yolo.predict(img, imgsz=320, conf=0.25, iou=0.7, verbose=False)
            predictor.predict(img)
        for interleave in ("blocks", "calls"):
            (up, uq, mp, mq), n, same = _measure(yolo, predictor, img, interleave)
            print(f"| {name} {img.shape[1]}x{img.shape[0]} ({n} det{'' if same else ', boxes differ'}) | {interleave} | "
                  f"{up:.3f} | {uq:.3f} | {up + uq:.3f} | {mp:.3f} | {mq:.3f} | {mp + mq:.3f} | "
                  f"{(mp + mq) / (up + uq):.2f} |")


if __name__ == "__main__":
    main()
