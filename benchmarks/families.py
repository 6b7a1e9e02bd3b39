"""Post-processing of the other YOLO families, side by side: modelserve's decoders vs each family's own code,
on the same raw outputs (no engine in the timed calls).

Run with the reference environment (torch, torchvision, onnxruntime, opencv, ``yolov5==7.0.14``,
``ddddocr==1.6.1``; modelserve installed editable)::

    OMP_NUM_THREADS=1 YOLO_OFFLINE=1 .refenv/bin/python benchmarks/families.py [--runs N] [--quick]

What is compared (one image per call, the time from the raw output to the final rows):

* **YOLOv5** -- modelserve: ``objectness_nms(rows, conf, iou, max_det, None, False, multi_label)`` then
  ``scale_with(det[:, :4], yolov5_scale_row(tensor_hw, photo_hw))``. YOLOv5: its own
  ``utils.general.non_max_suppression(torch.from_numpy(raw), ...)`` then ``scale_boxes`` (torch, 1 thread),
  ending in ``.numpy()``. detect.py's defaults: conf 0.25, iou 0.45, max_det 1000, class-aware;
  also ``multi_label=True``. Inputs: the stored ONNX outputs of ``tests/goldens/families/yolov5.npz``
  ([1, 6300, 10], nc=5, 320x320; bus.jpg and zidane.jpg) and a seeded YOLOv5s-sized synthetic
  [1, 25200, 85] (640x640 for a 1920x1080 photo, 80 classes: background objectness sigmoid(N(-6, 2))
  kept below conf, ~320 rows clustered into overlapping boxes around 40 objects, class scores
  sigmoid(N(-4, 2)) with one strong class per clustered row).
* **YOLOX** -- modelserve: ``yolox_detections(rows, input_hw, ratio, conf, iou)`` (class-agnostic, as
  ddddocr and YOLOX's demo) then clipping to the image. ddddocr: its ``DetectionEngine``'s own
  ``demo_postprocess`` + the x1y1x2y2 conversion and ``/= ratio`` of its ``get_bbox`` +
  ``multiclass_nms`` (conf 0.1, iou 0.45), then the same clipping. Inputs: ddddocr's ``common_det.onnx``
  outputs for bus.jpg and skimage's page.png (dozens of boxes; ORT run once per photo, outside the timing),
  and a seeded synthetic 80-class YOLOX at 640 ([1, 8400, 85]) against
  ``tests/tasks/yolox_reference.postprocess`` (YOLOX's published code rewritten; its ``decode`` copies the
  raw rows, ddddocr's decodes in place) and against ddddocr's engine methods (the same code, on a copy
  made outside the timing, since ``demo_postprocess`` writes into its input).

Every case first checks that both sides give the same rows (``np.array_equal`` of the float32 (n, 6)
rows after the same clipping) and the script exits without printing any timing otherwise.

Timing: each sample times ``--inner`` calls of one side; samples of the sides alternate (A B, B A, ...);
the table reports the median per call over ``--runs`` samples per side and the ratio of those medians,
all from the same run. torch, OpenCV and OMP: 1 thread.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.assets, tests.tasks.yolox_reference

# yolov5 7.0.14 does `import pkg_resources` (only for parse_version); setuptools>=81 no longer ships it.
try:
    import pkg_resources  # noqa: F401
except ImportError:
    import packaging.version

    _shim = types.ModuleType("pkg_resources")
    _shim.parse_version = packaging.version.parse
    sys.modules["pkg_resources"] = _shim

import cv2  # noqa: E402
import ddddocr  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402,F401  (yolov5's NMS calls torchvision.ops.nms)
from yolov5.utils.general import non_max_suppression, scale_boxes  # noqa: E402

from modelserve import ops  # noqa: E402
from modelserve._letterbox import scale_with  # noqa: E402
from modelserve.tasks.yolov5 import objectness_nms, yolov5_scale_row  # noqa: E402
from modelserve.tasks.yolox import yolox_detections  # noqa: E402
from tests import assets  # noqa: E402
from tests.goldens.families.make_ddddocr import postprocess as ddddocr_postprocess  # noqa: E402
from tests.tasks import yolox_reference as yref  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)

V5_CONF, V5_IOU, V5_MAX_DET = 0.25, 0.45, 1000  # YOLOv5 detect.py
X_CONF, X_IOU = 0.1, 0.45  # YOLOX demo / ddddocr get_bbox
GOLDEN_V5 = ROOT / "tests" / "goldens" / "families" / "yolov5.npz"


def bench(sides: dict, runs: int, inner: int) -> dict:
    """Median seconds per call of each side. ``sides``: name -> (prepare, call); ``prepare()`` builds the
    arguments of one sample's ``inner`` calls outside the timing (copies for in-place code)."""
    names = list(sides)
    times: dict = {k: [] for k in names}
    for prepare, call in sides.values():  # warm up
        for args in prepare(2):
            call(*args)
    for s in range(runs):
        for name in names if s % 2 == 0 else names[::-1]:
            prepare, call = sides[name]
            batch = prepare(inner)
            t0 = time.perf_counter()
            for args in batch:
                call(*args)
            times[name].append((time.perf_counter() - t0) / inner)
    return {k: statistics.median(v) for k, v in times.items()}


def same(a: np.ndarray) -> callable:
    """prepare() for code that does not write into its input: the same array every call."""
    return lambda n: [(a,)] * n


def copies(a: np.ndarray) -> callable:
    """prepare() for code that writes into its input: a fresh copy per call, made before the timing."""
    return lambda n: [(a.copy(),) for _ in range(n)]


# --- YOLOv5 -----------------------------------------------------------------------------------------------

def v5_ours(raw: np.ndarray, tensor_hw, photo_hw, multi_label: bool) -> np.ndarray:
    det = objectness_nms(raw[0], V5_CONF, V5_IOU, V5_MAX_DET, None, False, multi_label)
    det[:, :4] = scale_with(det[:, :4].copy(), yolov5_scale_row(tensor_hw, photo_hw))
    return det


def v5_theirs(raw: np.ndarray, tensor_hw, photo_hw, multi_label: bool) -> np.ndarray:
    det = non_max_suppression(torch.from_numpy(raw), V5_CONF, V5_IOU, None, False, multi_label,
                              max_det=V5_MAX_DET)[0]
    det[:, :4] = scale_boxes(tensor_hw, det[:, :4], photo_hw)
    return det.numpy()


def synth_v5(seed: int = 0, n: int = 25200, nc: int = 80, img: int = 640, objects: int = 40,
             clustered: int = 320) -> np.ndarray:
    """A YOLOv5s-like [1, n, 5 + nc] output: cx, cy, w, h pixels, objectness, class scores (post-sigmoid)."""
    rng = np.random.default_rng(seed)
    sig = lambda z: (1 / (1 + np.exp(-z))).astype(np.float32)  # noqa: E731
    raw = np.empty((1, n, 5 + nc), np.float32)
    raw[0, :, 0:2] = rng.uniform(0, img, (n, 2))
    raw[0, :, 2:4] = rng.uniform(8, 200, (n, 2))
    raw[0, :, 4] = sig(np.minimum(rng.normal(-6, 2, n), -1.2))  # background: objectness < 0.25
    raw[0, :, 5:] = sig(rng.normal(-4, 2, (n, nc)))
    centers = rng.uniform(40, img - 40, (objects, 2))
    sizes = rng.uniform(24, 240, (objects, 2))
    labels = rng.integers(0, nc, objects)
    rows = rng.choice(n, clustered, replace=False)
    k = rng.integers(0, objects, clustered)
    raw[0, rows, 0:2] = centers[k] + rng.normal(0, 4, (clustered, 2))
    raw[0, rows, 2:4] = sizes[k] * rng.uniform(0.85, 1.15, (clustered, 2))
    raw[0, rows, 4] = sig(rng.normal(1.5, 1.5, clustered))
    raw[0, rows, 5 + labels[k]] = sig(rng.normal(2.5, 1.0, clustered))
    return raw


# --- YOLOX ------------------------------------------------------------------------------------------------

def clip_rows(det: np.ndarray, photo_hw) -> np.ndarray:
    """float32 (n, 6) rows with x1, y1, x2, y2 clipped to the photo (as YOLOXHead.decode clips)."""
    out = np.ascontiguousarray(det, dtype=np.float32)
    h, w = photo_hw
    np.clip(out[:, :4], 0, np.array([w, h, w, h], np.float32), out=out[:, :4])
    return out


def x_ours(raw: np.ndarray, input_hw, ratio: float, photo_hw) -> np.ndarray:
    det = yolox_detections(raw[0], input_hw, ratio, X_CONF, X_IOU)
    xyxy = np.ascontiguousarray(det[:, :4])
    np.clip(xyxy, 0, np.array([photo_hw[1], photo_hw[0], photo_hw[1], photo_hw[0]], np.float32), out=xyxy)
    det[:, :4] = xyxy
    return det


def x_ddddocr(engine, raw: np.ndarray, input_hw, ratio: float, photo_hw) -> np.ndarray:
    """ddddocr's get_bbox after session.run, with its own methods (``raw`` is decoded in place)."""
    dets = ddddocr_postprocess(engine, raw, input_hw, ratio, X_IOU, X_CONF)[3]
    if dets is None:
        return np.zeros((0, 6), np.float32)
    return clip_rows(dets, photo_hw)


def x_reference(raw: np.ndarray, input_hw, ratio: float, photo_hw) -> np.ndarray:
    return clip_rows(yref.postprocess(raw, input_hw, ratio, X_IOU, X_CONF), photo_hw)


def synth_yolox(seed: int = 0, input_hw=(640, 640), nc: int = 80, objects: int = 40, clustered: int = 320
                ) -> np.ndarray:
    """A YOLOX-s-like raw [1, 8400, 5 + nc] head: grid offsets and log-sizes, sigmoided objectness and
    class scores; a few hundred cells near ~40 objects regress overlapping boxes with high scores."""
    rng = np.random.default_rng(seed)
    sig = lambda z: (1 / (1 + np.exp(-z))).astype(np.float32)  # noqa: E731
    grid, stride = yref._grid_and_strides(input_hw)
    grid, stride = grid[0].astype(np.float64), stride[0].astype(np.float64)
    n = len(grid)
    raw = np.empty((1, n, 5 + nc), np.float32)
    raw[0, :, 0:2] = rng.normal(0.5, 0.3, (n, 2))
    raw[0, :, 2:4] = rng.normal(1.0, 0.8, (n, 2))
    raw[0, :, 4] = sig(np.minimum(rng.normal(-6, 2, n), -2.3))  # background: objectness < 0.1
    raw[0, :, 5:] = sig(rng.normal(-4, 2, (n, nc)))
    centers = rng.uniform(40, input_hw[1] - 40, (objects, 2))
    sizes = rng.uniform(24, 240, (objects, 2))
    labels = rng.integers(0, nc, objects)
    rows = rng.choice(n, clustered, replace=False)
    k = rng.integers(0, objects, clustered)
    s = stride[rows]
    raw[0, rows, 0:2] = (centers[k] + rng.normal(0, 4, (clustered, 2))) / s - grid[rows]
    raw[0, rows, 2:4] = np.log(sizes[k] * rng.uniform(0.85, 1.15, (clustered, 2)) / s)
    raw[0, rows, 4] = sig(rng.normal(1.5, 1.5, clustered))
    raw[0, rows, 5 + labels[k]] = sig(rng.normal(2.5, 1.0, clustered))
    return raw


def ddddocr_outputs(engine, names):
    """(name, raw [1, 3549, 6], ratio, photo_hw) from one ORT run of ddddocr's detector per photo."""
    out = []
    input_hw = (416, 416)
    name_in = engine.session.get_inputs()[0].name
    for name in names:
        data = assets.photo(name).read_bytes()
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        tensor, ratio = engine.preproc(img, input_hw)
        raw = engine.session.run(None, {name_in: tensor[None]})[0]
        out.append((name, np.ascontiguousarray(raw, np.float32), ratio, img.shape[:2]))
    return out


# --- main -------------------------------------------------------------------------------------------------

def check(case: str, a: np.ndarray, b: np.ndarray) -> int:
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    if a.shape != b.shape or not np.array_equal(a, b):
        sys.exit(f"MISMATCH in {case}: modelserve {a.shape} vs reference {b.shape}; no timings printed")
    return len(a)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=101, help="samples per side (default 101)")
    parser.add_argument("--inner", type=int, default=5, help="calls per sample (default 5)")
    parser.add_argument("--quick", action="store_true", help="9 samples of 3 calls")
    args = parser.parse_args()
    runs, inner = (9, 3) if args.quick else (args.runs, args.inner)
    rows: list = []
    cases: list = []  # (family, input, 'candidates / kept', {side: (prepare, call)}: reference first)

    # YOLOv5: stored ONNX outputs and a YOLOv5s-sized synthetic.
    golden = np.load(GOLDEN_V5)
    sizes = {"bus.jpg": (1080, 810), "zidane.jpg": (720, 1280)}
    v5_inputs = [(f"{p} [1,6300,10]", golden[f"raw:{p}"], (320, 320), hw) for p, hw in sizes.items()]
    v5_inputs.append(("synthetic [1,25200,85]", synth_v5(), (640, 640), (1080, 1920)))
    for label, raw, thw, phw in v5_inputs:
        raw = np.ascontiguousarray(raw, np.float32)
        for ml in (False, True):
            a = v5_ours(raw, thw, phw, ml)
            b = v5_theirs(raw.copy(), thw, phw, ml)
            case = f"yolov5 {label}{' multi_label' if ml else ''}"
            n = check(case, a, b)
            cand = int((raw[0, :, 4] > V5_CONF).sum())
            theirs = (same(raw), lambda r, t=thw, p=phw, m=ml: v5_theirs(r, t, p, m))
            ours = (same(raw), lambda r, t=thw, p=phw, m=ml: v5_ours(r, t, p, m))
            cases.append(("YOLOv5", f"{label}{', multi_label' if ml else ''}", f"{cand} / {n}",
                          {"yolov5 NMS+scale_boxes": theirs, "objectness_nms+scale_with": ours}))

    # YOLOX: ddddocr's real detector on two photos, and a synthetic 80-class head at 640.
    ocr = ddddocr.DdddOcr(det=True, ocr=False, show_ad=False)  # kept alive: the engine's session lives in it
    engine = ocr.detection_engine
    for name, raw, ratio, phw in ddddocr_outputs(engine, ["bus.jpg", "page.png"]):
        ihw = (416, 416)
        a = x_ours(raw, ihw, float(np.float32(ratio)), phw)
        b = x_ddddocr(engine, raw.copy(), ihw, ratio, phw)
        n = check(f"yolox ddddocr {name}", a, b)
        cand = int((raw[0, :, 4] * raw[0, :, 5:].max(1) > X_CONF).sum())
        r32 = float(np.float32(ratio))  # YOLOXHead passes float(np.float32(r))
        theirs = (copies(raw), lambda r, i=ihw, q=ratio, p=phw: x_ddddocr(engine, r, i, q, p))
        ours = (same(raw), lambda r, i=ihw, q=r32, p=phw: x_ours(r, i, q, p))
        cases.append(("YOLOX", f"ddddocr {name} [1,3549,6]", f"{cand} / {n}",
                      {"ddddocr engine": theirs, "yolox_detections": ours}))
    raw = synth_yolox()
    ihw, ratio, phw = (640, 640), 640 / 1920, (1080, 1920)
    a = x_ours(raw, ihw, float(np.float32(ratio)), phw)
    n = check("yolox synthetic (reference)", a, x_reference(raw.copy(), ihw, ratio, phw))
    check("yolox synthetic (ddddocr engine)", a, x_ddddocr(engine, raw.copy(), ihw, ratio, phw))
    cand = int((raw[0, :, 4:5] * raw[0, :, 5:] > X_CONF).any(1).sum())
    ours = (same(raw), lambda r: x_ours(r, ihw, float(np.float32(ratio)), phw))
    cases.append(("YOLOX", "synthetic 80-class [1,8400,85]", f"{cand} / {n}",
                  {"yolox_reference": (same(raw), lambda r: x_reference(r, ihw, ratio, phw)),
                   "yolox_detections": ours}))
    cases.append(("YOLOX", "synthetic 80-class [1,8400,85]", f"{cand} / {n}",
                  {"ddddocr engine": (copies(raw), lambda r: x_ddddocr(engine, r, ihw, ratio, phw)),
                   "yolox_detections": ours}))

    t_start = time.perf_counter()
    for family, label, counts, sides in cases:
        res = bench(sides, runs, inner)
        (rn, rt), (on, ot) = res.items()
        rows.append((family, label, counts, rn, rt * 1e3, on, ot * 1e3, rt / ot))

    print(f"\nPython {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__} "
          f"({torch.get_num_threads()} thread), torchvision {torchvision.__version__}, onnxruntime {ort.__version__}, "
          f"modelserve.ops backend {ops.backend()}; {runs} samples x {inner} calls per side, interleaved "
          f"({time.perf_counter() - t_start:.0f} s)")
    print("All cases: both sides gave identical float32 rows (np.array_equal, after the same clipping).\n")
    print("| family | input | candidates / kept | reference | ref ms | modelserve | ours ms | speed-up |")
    print("|---|---|---:|---|---:|---|---:|---:|")
    for family, label, counts, rn, rt, on, ot, ratio_ in rows:
        print(f"| {family} | {label} | {counts} | {rn} | {rt:.3f} | {on} | {ot:.3f} | {ratio_:.2f}x |")
    print("\ncandidates: YOLOv5 rows with objectness > conf; YOLOX rows with a class confidence > conf. "
          "speed-up: reference median / modelserve median (> 1: modelserve faster).")


if __name__ == "__main__":
    main()
