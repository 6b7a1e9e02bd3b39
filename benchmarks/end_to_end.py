"""End to end, side by side: modelserve's whole ``predict`` call vs Ultralytics' ``predict``, same model,
same ONNX Runtime, same photos, from JPEG bytes and from a file path (issue 16).

Run with the reference environment (ultralytics, torch, cv2; modelserve installed editable)::

    OMP_NUM_THREADS=1 YOLO_OFFLINE=1 .refenv/bin/python benchmarks/end_to_end.py [--runs N] [--threads T]

Model: nudenet's ``320n.onnx`` (``tests.assets.detector_path()``: a trained YOLOv8n export with
dynamic batch/height/width), at imgsz 320 and 640 (dynamic, so no re-export: both libraries pad each
image to the smallest stride multiple, e.g. bus.jpg 1080x810 -> 640x480). conf 0.25, iou 0.7.
Photos: Ultralytics' ``bus.jpg`` and ``zidane.jpg`` (``tests.assets.photo``).

What each side is given, inside the timed call:

* **bytes** -- modelserve: ``p.predict(data)`` (the JPEG bytes; decoded by libjpeg-turbo through
  simplejpeg). Ultralytics does not take bytes, so its timed call is
  ``yolo.predict(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), ...)``: the decode a
  service would write in front of it, then the ndarray path.
* **path** -- both ``predict("…/bus.jpg")``: modelserve reads and decodes the file; Ultralytics reads
  it with its ``imread`` (``np.fromfile`` + ``cv2.imdecode``) in its loader.

Threads: one engine thread on both sides. modelserve gets ``engine_options={"intra_op_threads": T,
"inter_op_threads": T}``. Ultralytics has no way to pass ONNX Runtime session options through
``YOLO(...)``/``predict`` (its ``ONNXBackend`` takes ``session_options`` but ``AutoBackend`` never
passes any), so after its first call this script replaces its backend's ``session`` with one built
from the same file with the same options (and prints the thread counts both sessions report).
``--threads 0`` keeps ONNX Runtime's defaults on both sides instead. torch and OpenCV: 1 thread.

Timing: wall clock around each whole call, median of ``--runs`` calls per cell after warm-up; the two
sides alternate call by call (A B B A ...), together with the two breakdown measurements below.
modelserve's breakdown, from the same run:

* ``decode``: its ``speed["preprocess"]`` on the bytes (or path) minus its ``speed["preprocess"]`` on
  the decoded ndarray (same pixels: simplejpeg's decode is bit-identical to ``cv2.imdecode``); for
  the path form this includes reading the file.
* ``letterbox``: ``speed["preprocess"]`` on the ndarray (geometry lookup + letterbox into the batch).
* ``engine.run``: ``p.engine.run(feeds)`` called directly on the very batch the Predictor built.
* ``post``: ``speed["postprocess"]`` (decode of the outputs, NMS, results).
* ``rest``: total - preprocess - inference - postprocess: what the call does outside its timed stages
  (argument checks, source dispatch, origins, observers). A difference of medians: it can be < 0.
* ``non-engine``: 1 - engine.run / total (target: <= 15%); ``paired``: the median over calls of
  1 - that call's ``speed["inference"]`` / its total, which does not mix two noisy medians.
* ``floor``: engine.run / Ultralytics' total: the ratio modelserve would reach if everything but
  ``engine.run`` cost nothing (both sides run sessions of the same file, options and batch shape).

Also printed: the letterbox ratio at 1080p, with ``benchmarks/kernels.py``'s own functions
(``bench``, ``ultralytics_preprocess``), with and without ``out=``.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.assets

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import ultralytics  # noqa: E402
from ultralytics import YOLO  # noqa: E402

import modelserve as ms  # noqa: E402
from modelserve import ops  # noqa: E402
from tests import assets  # noqa: E402

torch.set_num_threads(1)
cv2.setNumThreads(1)
CONF, IOU = 0.25, 0.7
TARGET_RATIO, TARGET_SHARE = 1 / 1.3, 0.15


def _now() -> float:
    return time.perf_counter()


class Side:
    """One library at one imgsz: a callable per input form, and its last result."""

    def __init__(self, path: Path, imgsz: int, threads: int) -> None:
        self.imgsz = imgsz
        opts = {"intra_op_threads": threads, "inter_op_threads": threads}
        self.p = ms.load(str(path), imgsz=imgsz, conf=CONF, iou=IOU, engine_options=opts)
        self.yolo = YOLO(str(path), task="detect")
        warm = np.zeros((64, 64, 3), np.uint8)
        self.yolo.predict(warm, imgsz=imgsz, conf=CONF, iou=IOU, verbose=False)  # builds its predictor
        if threads:
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = threads
            backend = self.yolo.predictor.model.backend
            backend.session = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            self.yolo.predict(warm, imgsz=imgsz, conf=CONF, iou=IOU, verbose=False)

    def session_threads(self) -> tuple[int, int]:
        """intra_op_num_threads of modelserve's and Ultralytics' sessions (0: ONNX Runtime's default)."""
        mine = getattr(self.p.engine, "_session", None)
        theirs = self.yolo.predictor.model.backend.session
        return (mine.get_session_options().intra_op_num_threads if mine is not None else -1,
                theirs.get_session_options().intra_op_num_threads)

    def ultralytics(self, form: str, data: bytes, path: str):
        if form == "bytes":
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            return self.yolo.predict(img, imgsz=self.imgsz, conf=CONF, iou=IOU, verbose=False)[0]
        return self.yolo.predict(path, imgsz=self.imgsz, conf=CONF, iou=IOU, verbose=False)[0]

    def feeds(self, image: np.ndarray) -> dict:
        """The feeds the Predictor hands its engine for ``image`` (recorded from one call)."""
        engine, seen = self.p.engine, {}
        run = engine.run

        def recording(feeds):
            seen.update(feeds)
            return run(feeds)

        engine.run = recording
        try:
            self.p.predict(image)
        finally:
            del engine.run  # back to the class's method
        return {k: np.array(v) for k, v in seen.items()}


def measure(side: Side, form: str, data: bytes, path: str, pixels: np.ndarray, runs: int) -> dict:
    """Median ms of every quantity, the four calls interleaved (order reversed every other round)."""
    src = data if form == "bytes" else path
    feeds = side.feeds(pixels)
    engine = side.p.engine
    t: dict = {k: [] for k in ("u", "m", "m_pre", "m_inf", "m_post", "m_share", "a_pre", "eng", "u_pre", "u_inf",
                               "u_post", "imdecode")}
    last: dict = {}

    def ultra():
        t0 = _now()
        r = side.ultralytics(form, data, path)
        t["u"].append(_now() - t0)
        for k in ("pre", "inf", "post"):
            t["u_" + k].append(r.speed[{"pre": "preprocess", "inf": "inference", "post": "postprocess"}[k]] / 1e3)
        last["u"] = r

    def mine():
        t0 = _now()
        d = side.p.predict(src)
        t["m"].append(_now() - t0)
        t["m_pre"].append(d.speed["preprocess"] / 1e3)
        t["m_inf"].append(d.speed["inference"] / 1e3)
        t["m_post"].append(d.speed["postprocess"] / 1e3)
        t["m_share"].append(1 - d.speed["inference"] / 1e3 / t["m"][-1])
        last["m"] = d

    def mine_array():
        t["a_pre"].append(side.p.predict(pixels).speed["preprocess"] / 1e3)

    def engine_run():
        t0 = _now()
        engine.run(feeds)
        t["eng"].append(_now() - t0)

    def imdecode():  # what the Ultralytics side pays to decode (its whole decode in the bytes form)
        t0 = _now()
        cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        t["imdecode"].append(_now() - t0)

    calls = [ultra, mine, mine_array, engine_run, imdecode]
    for _ in range(3):  # warm-up
        for f in calls:
            f()
    for v in t.values():
        v.clear()
    gc.collect()
    for i in range(runs):
        for f in calls if i % 2 == 0 else calls[::-1]:
            f()
    med = {k: 1e3 * statistics.median(v) for k, v in t.items()}
    med["m_share"] /= 1e3
    ub, d = last["u"].boxes.xyxy.numpy(), last["m"]
    med["n"] = len(d)
    med["same"] = len(d) == len(ub) and np.allclose(np.asarray(d.xyxy), ub, atol=1e-2)
    med["shape"] = "x".join(str(s) for s in next(iter(feeds.values())).shape[2:])
    return med


def letterbox_1080p(samples: int) -> list[tuple[str, float, float, float]]:
    """Ultralytics' preprocess vs ops.letterbox at 1920x1080 -> 640x640, with kernels.py's functions."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import kernels

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8), (5, 5), 0)
    batch = np.empty((1, 3, 640, 640), np.float32)
    res = kernels.bench(
        {
            "ultralytics fp32": lambda: kernels.ultralytics_preprocess(img),
            "ops.letterbox fp32, out=": lambda: ops.letterbox(img, out=batch[0]),
            "ops.letterbox fp32": lambda: ops.letterbox(img),
        },
        samples,
        5,
    )
    ref = res["ultralytics fp32"]
    return [(k, ref * 1e3, v * 1e3, ref / v) for k, v in res.items() if k != "ultralytics fp32"]


def machine_line(threads: int) -> str:
    import simplejpeg

    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpus} cores ({platform.processor() or platform.machine()}), load {load:.1f} at start; "
            f"Python {platform.python_version()}, onnxruntime {ort.__version__}, ultralytics "
            f"{ultralytics.__version__}, torch {torch.__version__}, cv2 {cv2.__version__}, numpy "
            f"{np.__version__}, simplejpeg {simplejpeg.__version__}, modelserve {ms.__version__} "
            f"(ops backend {ops.backend()}); ORT intra/inter-op threads {threads or 'default'} on both sides")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=31, help="timed calls per side and cell (median)")
    parser.add_argument("--threads", type=int, default=1, help="ORT intra/inter-op threads, both sides (0: defaults)")
    parser.add_argument("--no-letterbox", action="store_true", help="skip the 1080p letterbox ratio")
    args = parser.parse_args()
    started = time.time()
    print(machine_line(args.threads), flush=True)
    model = assets.detector_path()
    photos = {name: assets.photo(name) for name in ("bus.jpg", "zidane.jpg")}
    rows = []
    for imgsz in (320, 640):
        side = Side(model, imgsz, args.threads)
        print(f"imgsz {imgsz}: session intra_op threads (modelserve, ultralytics) = {side.session_threads()}",
              flush=True)
        for name, path in photos.items():
            data = path.read_bytes()
            pixels = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            for form in ("bytes", "path"):
                runs = args.runs if imgsz == 320 else max(5, (args.runs * 2) // 3)
                r = measure(side, form, data, str(path), pixels, runs)
                rows.append((name, pixels.shape, imgsz, form, runs, r))
                print(f"  {name} {form}: ultralytics {r['u']:.2f} ms, modelserve {r['m']:.2f} ms", flush=True)
        side.p.close()
    print("\n| photo | imgsz (input) | input | ultralytics ms | modelserve ms | ratio | decode | letterbox "
          "| engine.run | post | rest | non-engine share | paired share | floor |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, shape, imgsz, form, _, r in rows:
        ratio = r["m"] / r["u"]
        share = 1 - r["eng"] / r["m"]
        rest = r["m"] - r["m_pre"] - r["m_inf"] - r["m_post"]
        flag = "" if r["same"] else ", boxes differ"
        print(f"| {name} {shape[1]}x{shape[0]} ({r['n']} det{flag}) | {imgsz} ({r['shape']}) | {form} | "
              f"{r['u']:.2f} | {r['m']:.2f} | {ratio:.2f}{'' if form != 'bytes' or ratio <= TARGET_RATIO else ' ✗'} | "
              f"{r['m_pre'] - r['a_pre']:.2f} | {r['a_pre']:.2f} | {r['eng']:.2f} | {r['m_post']:.2f} | {rest:.2f} | "
              f"{100 * share:.1f}%{'' if share <= TARGET_SHARE else ' ✗'} | {100 * r['m_share']:.1f}%"
              f"{'' if r['m_share'] <= TARGET_SHARE else ' ✗'} | {r['eng'] / r['u']:.2f} |")
    print(f"\nTargets: ratio <= {TARGET_RATIO:.2f} for bytes; non-engine share <= {100 * TARGET_SHARE:.0f}%. "
          f"Median of {args.runs} calls at 320, {max(5, (args.runs * 2) // 3)} at 640. ✗: misses its target. "
          "floor: engine.run / ultralytics ms, the ratio modelserve would reach with nothing but engine.run. "
          "paired share: median over calls of 1 - that call's inference stage / its total (less noisy).")
    print("\nUltralytics' own stage medians (its Results.speed; decode of the bytes form, reading the file "
          "and the call's overhead are outside them):\n")
    print("| photo | imgsz | input | ultra pre | ultra inference | ultra post | ultra outside stages "
          "| cv2.imdecode alone | modelserve inference stage |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for name, _, imgsz, form, _, r in rows:
        outside = r["u"] - r["u_pre"] - r["u_inf"] - r["u_post"]
        print(f"| {name} | {imgsz} | {form} | {r['u_pre']:.2f} | {r['u_inf']:.2f} | {r['u_post']:.2f} | "
              f"{outside:.2f} | {r['imdecode']:.2f} | {r['m_inf']:.2f} |")
    if not args.no_letterbox:
        print("\nLetterbox 1920x1080 -> 640x640 fp32 (benchmarks/kernels.py's bench and ultralytics_preprocess):\n")
        print("| ours | ultralytics ms | ours ms | speed-up |")
        print("|---|---:|---:|---:|")
        for k, ref, ours, ratio in letterbox_1080p(41):
            print(f"| {k} | {ref:.3f} | {ours:.3f} | {ratio:.1f}x{'' if ratio >= 3 else ' ✗'} |")
    print(f"\n(whole run {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
