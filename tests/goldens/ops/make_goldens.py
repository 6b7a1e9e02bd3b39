"""Regenerate the golden fixtures for tests/test_ops_*.py from the real reference libraries.

Needs torch, torchvision, ultralytics and OpenCV (not needed by the tests themselves)::

    PYTHONPATH=. /work/refenv/bin/python tests/goldens/ops/make_goldens.py

Writes, next to this script:

* ``nms.npz``: random box sets (clustered, with ties, NaN/inf, negative and huge class ids) and the
  indices ``torchvision.ops.nms`` / ``torchvision.ops.batched_nms`` keep.
* ``postprocess.npz``: raw ``[B, 4+nc, N]`` outputs (synthetic, plus nudenet's YOLOv8n on
  scikit-image's astronaut when available) and what Ultralytics' ``non_max_suppression`` keeps.
* ``letterbox.json``: SHA-256 of Ultralytics' preprocess output (``LetterBox`` + BGR->RGB + CHW +
  ``float()/255`` or ``half()/255``) for deterministic random images of many sizes.
"""

from __future__ import annotations

import hashlib
import json
import os

import cv2
import numpy as np
import torch
import torchvision
import ultralytics
from ultralytics.data.augment import LetterBox
from ultralytics.utils.nms import non_max_suppression

HERE = os.path.dirname(os.path.abspath(__file__))
torch.set_num_threads(1)


def clustered_boxes(rng, n, spread, nanp=0.0):
    centers = rng.uniform(0, spread, (max(1, n // 8), 2))
    c = centers[rng.integers(0, len(centers), n)] + rng.normal(0, spread / 60, (n, 2))
    wh = rng.uniform(spread / 50, spread / 4, (n, 2))
    b = np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)
    if nanp:
        m = rng.random(b.shape) < nanp
        b[m] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), m.sum())
    return b


def make_nms(rng):
    cases = {}
    k = 0
    sizes = [0, 1, 2, 3, 7, 50, 200, 999, 1000, 1001, 1500, 3000]
    for n in sizes:
        for variant in range(5):
            spread = float(rng.choice([10.0, 640.0, 5000.0]))
            boxes = clustered_boxes(rng, n, spread, nanp=0.01 if variant == 3 else 0.0)
            scores = rng.random(n).astype(np.float32)
            if variant in (1, 3):
                scores = (np.round(scores * 8) / 8).astype(np.float32)  # many ties
            if variant == 3 and n:
                scores[rng.integers(0, n, max(1, n // 20))] = np.nan
                scores[rng.integers(0, n, max(1, n // 50))] = -0.0
            nclass = int(rng.choice([1, 3, 80]))
            classes = rng.integers(0, nclass, n).astype(np.int64)
            if variant == 4:
                classes = classes * 100_003 - 7  # negative and sparse ids
            thr = float(rng.choice([0.0, 0.3, 0.45, 0.5, 0.7, 1.0]))
            if variant == 2:
                thr = float(rng.choice([-0.5, 0.3]))
            tb, ts, tc = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
            cases[f"c{k}_boxes"] = boxes
            cases[f"c{k}_scores"] = scores
            cases[f"c{k}_classes"] = classes
            cases[f"c{k}_thr"] = np.float64(thr)
            cases[f"c{k}_nms"] = torchvision.ops.nms(tb, ts, thr).numpy()
            cases[f"c{k}_batched"] = torchvision.ops.batched_nms(tb, ts, tc, thr).numpy()
            k += 1
    # IoU exactly float32(0.3) > 0.3 (double): torchvision suppresses.
    boxes = np.array([[0, 0, 1, 1], [0, 0, 1, np.float32(0.3)]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    cases[f"c{k}_boxes"], cases[f"c{k}_scores"] = boxes, scores
    cases[f"c{k}_classes"], cases[f"c{k}_thr"] = np.zeros(2, np.int64), np.float64(0.3)
    cases[f"c{k}_nms"] = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.3).numpy()
    cases[f"c{k}_batched"] = cases[f"c{k}_nms"]
    k += 1
    cases["count"] = np.int64(k)
    return cases


def synth_raw(rng, batch, nc, n, ncand, img=640, nanp=0.0, ties=False):
    raw = np.zeros((batch, 4 + nc, n), np.float32)
    for b in range(batch):
        centers = rng.uniform(0, img, (max(1, ncand // 8), 2))
        k = rng.integers(0, len(centers), n)
        raw[b, 0:2] = (centers[k] + rng.normal(0, 6, (n, 2))).T
        raw[b, 2:4] = rng.uniform(8, 160, (n, 2)).T
        scores = rng.random((nc, n)).astype(np.float32) * np.float32(0.2)
        idx = rng.choice(n, min(ncand, n), replace=False)
        scores[rng.integers(0, nc, len(idx)), idx] = rng.uniform(0.26, 0.95, len(idx))
        if ties:
            scores = np.round(scores * 40) / 40
        raw[b, 4:] = scores
        if nanp:
            m = rng.random(raw[b].shape) < nanp
            raw[b][m] = rng.choice(np.array([np.nan, np.inf, -np.inf], np.float32), m.sum())
    return raw


def make_postprocess(rng):
    out = {}
    specs = [
        # batch, nc, N, ncand, kwargs, nanp, ties
        (1, 80, 1000, 300, {}, 0.0, False),
        (1, 80, 1000, 1000, {"conf": 0.001}, 0.0, False),
        (1, 80, 1000, 600, {"iou": 0.45, "max_det": 50}, 0.0, True),
        (2, 3, 2100, 800, {}, 0.0, False),
        (2, 3, 2100, 800, {"agnostic": True, "iou": 0.5}, 0.0, True),
        (1, 3, 2100, 2100, {"conf": 0.001, "max_nms": 100}, 0.0, True),
        (1, 3, 2100, 500, {"classes": [0, 2]}, 0.0, False),
        (1, 1, 2100, 900, {}, 0.0, False),
        (1, 1, 2100, 900, {"max_det": 0}, 0.0, False),
        (1, 5, 500, 200, {}, 0.002, False),
        (1, 5, 500, 500, {"conf": 0.001, "iou": 0.0}, 0.002, True),
        (1, 5, 500, 500, {"conf": 0.001, "iou": 1.0, "max_det": 1000}, 0.0, True),
        (1, 5, 1, 1, {}, 0.0, False),
        (1, 5, 0, 0, {}, 0.0, False),
        (3, 2, 64, 10, {"max_det": 3}, 0.0, False),
    ]
    for k, (batch, nc, n, ncand, kw, nanp, ties) in enumerate(specs):
        raw = synth_raw(rng, batch, nc, n, ncand, nanp=nanp, ties=ties)
        kwargs = {"conf": 0.25, "iou": 0.7, "max_det": 300, "classes": None, "agnostic": False, "max_nms": 30000}
        kwargs.update(kw)
        res = non_max_suppression(
            torch.from_numpy(raw), kwargs["conf"], kwargs["iou"], classes=kwargs["classes"],
            agnostic=kwargs["agnostic"], max_det=kwargs["max_det"], max_nms=kwargs["max_nms"],
        )
        out[f"p{k}_raw"] = raw
        out[f"p{k}_kwargs"] = np.array(json.dumps(kwargs))
        for b, r in enumerate(res):
            out[f"p{k}_det{b}"] = r.numpy().astype(np.float32).reshape(-1, 6)
    k = len(specs)
    try:  # a real detector's output
        import nudenet
        import onnxruntime as ort
        from skimage import data as skdata

        sess = ort.InferenceSession(os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx"),
                                    providers=["CPUExecutionProvider"])
        img = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
        x = LetterBox((320, 320), auto=False)(image=img)[..., ::-1].transpose(2, 0, 1)[None]
        x = np.ascontiguousarray(x).astype(np.float32) / np.float32(255)
        raw = sess.run(None, {sess.get_inputs()[0].name: x})[0]
        for conf in (0.25, 0.001):
            kwargs = {"conf": conf, "iou": 0.7, "max_det": 300, "classes": None, "agnostic": False, "max_nms": 30000}
            r = non_max_suppression(torch.from_numpy(raw), conf, 0.7, max_det=300)[0]
            out[f"p{k}_raw"] = raw
            out[f"p{k}_kwargs"] = np.array(json.dumps(kwargs))
            out[f"p{k}_det0"] = r.numpy().astype(np.float32).reshape(-1, 6)
            k += 1
    except ImportError as exc:
        print("skipping nudenet case:", exc)
    out["count"] = np.int64(k)
    return out


LETTERBOX_SIZES = [
    (480, 640), (720, 1280), (1080, 1920), (2160, 3840), (1080, 810), (810, 1080), (1, 1), (1, 2),
    (2, 1), (3, 1000), (1000, 3), (1, 4000), (37, 101), (333, 517), (639, 641), (640, 640),
    (641, 639), (100, 100), (7, 5), (1079, 1921),
]
LETTERBOX_SHAPES = [((640, 640), False), ((640, 640), True), ((320, 320), False), ((384, 640), True), ((100, 60), False)]


def letterbox_image(h, w):
    """The deterministic test image of size h x w (also built by the tests)."""
    return np.random.default_rng(h * 100003 + w).integers(0, 256, (h, w, 3), dtype=np.uint8)


def ultralytics_preprocess(img, shape, auto, half):
    x = LetterBox(shape, auto=auto, stride=32)(image=img)
    t = torch.from_numpy(x).unsqueeze(0).permute(0, 3, 1, 2).contiguous().flip(1)
    return (t.half() if half else t.float()).div_(255)[0].numpy()


def make_letterbox():
    entries = []
    for h, w in LETTERBOX_SIZES:
        img = letterbox_image(h, w)
        for shape, auto in LETTERBOX_SHAPES:
            for half in (False, True):
                t = np.ascontiguousarray(ultralytics_preprocess(img, shape, auto, half))
                entries.append({
                    "hw": [h, w], "new_shape": list(shape), "auto": auto,
                    "dtype": "float16" if half else "float32", "shape": list(t.shape),
                    "sha256": hashlib.sha256(t.tobytes()).hexdigest(),
                })
    return entries


def main():
    rng = np.random.default_rng(20260525)
    np.savez_compressed(os.path.join(HERE, "nms.npz"), **make_nms(rng))
    np.savez_compressed(os.path.join(HERE, "postprocess.npz"), **make_postprocess(rng))
    meta = {
        "generated_with": {
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "ultralytics": ultralytics.__version__, "cv2": cv2.__version__, "numpy": np.__version__,
        },
        "cases": make_letterbox(),
    }
    with open(os.path.join(HERE, "letterbox.json"), "w", encoding="utf-8") as fh:
        json.dump(meta, fh, indent=0)
        fh.write("\n")
    for name in ("nms.npz", "postprocess.npz", "letterbox.json"):
        print(name, os.path.getsize(os.path.join(HERE, name)), "bytes")


if __name__ == "__main__":
    main()
