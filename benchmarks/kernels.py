"""Side-by-side timings: modelserve.ops kernels vs the Ultralytics / torchvision code they replace.

Run with the reference environment (it needs torch, torchvision, ultralytics and cv2)::

    OMP_NUM_THREADS=1 PYTHONPATH=. /work/refenv/bin/python benchmarks/kernels.py [--quick]

Same process, same inputs, one thread each (torch, OpenCV and OMP limited to 1 thread). Each
sample times a few calls; samples of the reference and of ours alternate, and the table reports
medians per call and the ratio of medians (reference / ours). Before timing, every case checks
that both sides give identical results.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402,F401  (Ultralytics uses torchvision.ops.nms when imported)
from ultralytics.data.augment import LetterBox  # noqa: E402
from ultralytics.utils.nms import non_max_suppression  # noqa: E402

from modelserve import ops  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)


def bench(fns: dict, samples: int, inner: int) -> dict:
    """Median seconds per call of each function, samples interleaved (order alternating)."""
    times: dict = {k: [] for k in fns}
    names = list(fns)
    for f in fns.values():  # warm up
        f()
    for s in range(samples):
        for name in names if s % 2 == 0 else names[::-1]:
            f = fns[name]
            t0 = time.perf_counter()
            for _ in range(inner):
                f()
            times[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def ultralytics_preprocess(img: np.ndarray, half: bool = False) -> torch.Tensor:
    """Ultralytics' BasePredictor.preprocess for one BGR uint8 image (CPU, auto=False)."""
    im = [LetterBox((640, 640), auto=False, stride=32)(image=img)]
    t = torch.from_numpy(im[0]).unsqueeze(0)
    t = t.permute(0, 3, 1, 2).contiguous()
    t = t.flip(1)
    return (t.half() if half else t.float()).div_(255)


def synth_raw(rng: np.random.Generator, nc: int, n: int, ncand: int, img: int = 640) -> np.ndarray:
    """A [1, 4+nc, n] output with exactly ``ncand`` boxes whose best score is > 0.25, clustered
    around ncand/8 objects (overlapping boxes, so NMS has work); other scores in [0, 0.2)."""
    raw = np.zeros((1, 4 + nc, n), np.float32)
    centers = rng.uniform(0, img, (max(1, ncand // 8), 2))
    k = rng.integers(0, len(centers), n)
    raw[0, 0:2] = (centers[k] + rng.normal(0, 6, (n, 2))).T
    raw[0, 2:4] = (rng.uniform(20, 160, (n, 2))).T
    scores = rng.random((nc, n)).astype(np.float32) * np.float32(0.2)
    idx = rng.choice(n, ncand, replace=False)
    scores[rng.integers(0, nc, ncand), idx] = rng.uniform(0.26, 0.95, ncand)
    raw[0, 4:] = scores
    return raw


def synth_boxes(rng: np.random.Generator, n: int, nclass: int = 10):
    centers = rng.uniform(0, 640, (max(1, n // 10), 2))
    c = centers[rng.integers(0, len(centers), n)] + rng.normal(0, 8, (n, 2))
    wh = rng.uniform(20, 120, (n, 2))
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)
    scores = rng.random(n).astype(np.float32)
    classes = rng.integers(0, nclass, n)
    return boxes, scores, classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    args = parser.parse_args()
    samples = 11 if args.quick else 41
    assert ops.backend() == "cython", "build the kernels first: python setup.py build_ext --inplace"
    rng = np.random.default_rng(0)
    rows = []

    def row(group, case, ref_name, ours_name, res):
        ref, ours = res[ref_name], res[ours_name]
        rows.append((group, case, ref_name, ref * 1e3, ours_name, ours * 1e3, ref / ours))

    # --- letterbox ---------------------------------------------------------------------------
    for h, w in [(480, 640), (720, 1280), (1080, 1920), (2160, 3840)]:
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        img = cv2.GaussianBlur(img, (5, 5), 0)  # photo-like, not that it matters for speed
        ref = ultralytics_preprocess(img)[0].numpy()
        ours, _ = ops.letterbox(img)
        if not np.array_equal(ref.view(np.uint32), ours.view(np.uint32)):
            sys.exit(f"letterbox mismatch at {w}x{h}")
        ref16 = ultralytics_preprocess(img, half=True)[0].numpy()
        if not np.array_equal(ref16.view(np.uint16), ops.letterbox(img, dtype=np.float16)[0].view(np.uint16)):
            sys.exit(f"letterbox fp16 mismatch at {w}x{h}")
        batch = np.empty((1, 3, 640, 640), np.float32)
        res = bench(
            {
                "ultralytics fp32": lambda: ultralytics_preprocess(img),
                "ops.letterbox fp32": lambda: ops.letterbox(img, out=batch[0]),
                "ultralytics fp16": lambda: ultralytics_preprocess(img, half=True),
                "ops.letterbox fp16": lambda: ops.letterbox(img, dtype=np.float16),
            },
            samples,
            3 if h >= 1080 else 5,
        )
        row("letterbox", f"{w}x{h} -> 640x640", "ultralytics fp32", "ops.letterbox fp32", res)
        row("letterbox", f"{w}x{h} -> 640x640", "ultralytics fp32", "ops.letterbox fp16", res)
        row("letterbox", f"{w}x{h} -> 640x640", "ultralytics fp16", "ops.letterbox fp16", res)

    # --- yolo_postprocess --------------------------------------------------------------------
    cases = [(300, 0.25), (1000, 0.25), (2000, 0.25), (5000, 0.25), (8400, 0.001)]
    for ncand, conf in cases:
        raw = synth_raw(rng, 80, 8400, ncand if conf > 0.1 else 300)
        traw = torch.from_numpy(raw)
        ref = non_max_suppression(traw, conf, 0.7, max_det=300)[0].numpy()
        ours = ops.yolo_postprocess(raw, conf=conf, iou=0.7, max_det=300)[0]
        if not np.array_equal(ref, ours):
            sys.exit(f"yolo_postprocess mismatch ({ncand}, {conf})")
        res = bench(
            {
                "ultralytics NMS": lambda: non_max_suppression(traw, conf, 0.7, max_det=300),
                "ops.yolo_postprocess": lambda: ops.yolo_postprocess(raw, conf=conf, iou=0.7, max_det=300),
            },
            samples,
            2 if conf < 0.01 else 5,
        )
        label = f"[1,84,8400] {ncand} cand, conf {conf}, {len(ours)} kept"
        row("yolo_postprocess", label, "ultralytics NMS", "ops.yolo_postprocess", res)

    # A real detector's output: nudenet's YOLOv8n (320n.onnx) on scikit-image photos, if present.
    try:
        import nudenet
        import onnxruntime as ort
        from skimage import data as skdata

        path = os.path.join(os.path.dirname(nudenet.__file__), "320n.onnx")
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        photo = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
        x, _ = ops.letterbox(photo, (320, 320))
        raw = sess.run(None, {sess.get_inputs()[0].name: x[None]})[0]
        traw = torch.from_numpy(raw)
        for conf in (0.25, 0.001):
            ref = non_max_suppression(traw, conf, 0.7, max_det=300)[0].numpy()
            ours = ops.yolo_postprocess(raw, conf=conf, iou=0.7, max_det=300)[0]
            if not np.array_equal(ref, ours):
                sys.exit("yolo_postprocess mismatch on nudenet output")
            res = bench(
                {
                    "ultralytics NMS": lambda: non_max_suppression(traw, conf, 0.7, max_det=300),
                    "ops.yolo_postprocess": lambda: ops.yolo_postprocess(raw, conf=conf, iou=0.7, max_det=300),
                },
                samples,
                5,
            )
            n_cand = int((raw[0, 4:].max(0) > conf).sum())
            label = f"nudenet 320n {list(raw.shape)} astronaut, {n_cand} cand, conf {conf}, {len(ours)} kept"
            row("yolo_postprocess", label, "ultralytics NMS", "ops.yolo_postprocess", res)
    except ImportError as exc:
        print(f"(skipping the nudenet case: {exc})")

    # --- batched_nms -------------------------------------------------------------------------
    for n in [100, 500, 1000, 2000, 4000]:
        boxes, scores, classes = synth_boxes(rng, n)
        tb, ts, tc = torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(classes)
        ref = torchvision.ops.batched_nms(tb, ts, tc, 0.5).numpy()
        ours = ops.batched_nms(boxes, scores, classes, 0.5)
        if not np.array_equal(ref, ours):
            sys.exit(f"batched_nms mismatch at {n}")
        res = bench(
            {
                "torchvision.ops.batched_nms": lambda: torchvision.ops.batched_nms(tb, ts, tc, 0.5),
                "ops.batched_nms": lambda: ops.batched_nms(boxes, scores, classes, 0.5),
            },
            samples,
            10 if n <= 1000 else 3,
        )
        row("batched_nms", f"{n} boxes, 10 classes, iou 0.5, {len(ours)} kept", "torchvision.ops.batched_nms",
            "ops.batched_nms", res)

    print(f"\nmodelserve.ops backend: {ops.backend()}; torch {torch.__version__}, torchvision "
          f"{torchvision.__version__}, cv2 {cv2.__version__}, numpy {np.__version__}; {samples} samples\n")
    print("| op | case | reference | ref ms | ours | ours ms | speed-up |")
    print("|---|---|---|---:|---|---:|---:|")
    for group, case, rn, rt, on, ot, ratio in rows:
        print(f"| {group} | {case} | {rn} | {rt:.3f} | {on} | {ot:.3f} | {ratio:.1f}x |")


if __name__ == "__main__":
    main()
