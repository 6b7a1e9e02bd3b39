"""Regenerate the "yolov5" layout goldens with the original YOLOv5 code (the ``yolov5==7.0.14`` pip package).

Run from the repo root in the reference environment (torch, onnx, onnxruntime, opencv and
``pip install --no-deps yolov5==7.0.14`` plus pandas, seaborn, tqdm so that its modules import):

    cd /work/main && YOLO_OFFLINE=1 .refenv/bin/python tests/goldens/families/make_yolov5.py

Writes, next to this file:

* ``yolov5-tiny.onnx``: a tiny YOLOv5 detector built by ``yolov5.models.yolo.Model`` from
  ``yolov5-tiny.yaml`` (yolov5n layout, nc=5, width 0.0625), exported like YOLOv5's ``export.py``
  (fused, Detect in export mode, opset 12, fixed 1x3x320x320, one output ``output0`` [1, 6300, 10]),
  with every ``metadata_props`` entry removed.
* ``yolov5.npz``: per photo the raw ONNX output (``raw:<photo>``) and, per option set, the rows
  kept by YOLOv5's ``non_max_suppression`` before (``nms:<key>:<photo>``, tensor pixels) and after
  (``det:<key>:<photo>``, photo pixels, not rounded) ``scale_boxes``; float32 (n, 6) x1,y1,x2,y2,conf,cls.
* ``yolov5.json``: option sets, versions, photo sizes, letterbox ratio/pad, input tensor hashes, counts.

The random model is made to give varied scores: BatchNorm running statistics are recomputed on the
four photos, then the three Detect 1x1 convs are fitted (a few hundred seeded Adam steps) so that
each output channel's pre-sigmoid value has a chosen mean and spread within every photo.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("YOLO_OFFLINE", "1")

# yolov5 7.0.14 does `import pkg_resources` (only for parse_version); setuptools>=81 no longer ships it.
try:
    import pkg_resources  # noqa: F401
except ImportError:
    import packaging.version

    _shim = types.ModuleType("pkg_resources")
    _shim.parse_version = packaging.version.parse
    sys.modules["pkg_resources"] = _shim

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
import yaml  # noqa: E402
import yolov5  # noqa: E402
from yolov5.models.yolo import Detect, Model  # noqa: E402
from yolov5.utils.augmentations import letterbox  # noqa: E402
from yolov5.utils.general import non_max_suppression, scale_boxes  # noqa: E402

from tests.assets import photo  # noqa: E402

PHOTOS = ["bus.jpg", "zidane.jpg", "astronaut.png", "chelsea.png"]
IMGSZ = 320
OPSET = 12  # YOLOv5 export.py default
NC = 5
# detect.py defaults: conf 0.25, iou 0.45, max_det 1000, classes None, agnostic False (multi_label False).
DEFAULT = {"conf_thres": 0.25, "iou_thres": 0.45, "classes": None, "agnostic": False,
           "multi_label": False, "max_det": 1000}
OPTIONS = {
    "default": {},
    "multi_label": {"multi_label": True},
    "agnostic": {"agnostic": True},
    "classes": {"classes": [0, 2]},
    "low": {"conf_thres": 0.01, "iou_thres": 0.6, "max_det": 50},
    "maxdet": {"max_det": 3},
}
# Wanted (mean, std) of each Detect output channel's pre-sigmoid value within one photo.
TARGET = {"xy": (0.0, 1.0), "wh": (1.5, 0.7), "obj": (-3.3, 1.5), "cls": (0.0, 2.5)}
FIT_STEPS = 1500


def preprocess(im0: np.ndarray):
    """YOLOv5 detect.py/LoadImages preprocessing: letterbox (auto=False), BGR->RGB, HWC->CHW, /255."""
    im, ratio, pad = letterbox(im0, IMGSZ, stride=32, auto=False)
    x = np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC to CHW, BGR to RGB
    x = (x.astype(np.float32) / 255.0)[None]
    return im, np.ascontiguousarray(x), ratio, pad


def build_model(inputs: torch.Tensor) -> Model:
    cfg = yaml.safe_load((HERE / "yolov5-tiny.yaml").read_text())
    torch.manual_seed(0)
    model = Model(cfg, ch=3, nc=NC)
    det = model.model[-1]
    assert isinstance(det, Detect)

    # 1) BatchNorm running statistics from the photos (random convs otherwise shrink the signal to ~1e-9).
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        model(inputs)
    model.eval()

    # 2) Fit the Detect convs so each channel spreads the same way in every photo.
    feats = []
    hooks = [c.register_forward_pre_hook(lambda m, a: feats.append(a[0].detach().clone())) for c in det.m]
    with torch.no_grad():
        model(inputs)
    for h in hooks:
        h.remove()
    tmean, tstd = torch.zeros(det.na, det.no), torch.ones(det.na, det.no)
    for sl, key in ((slice(0, 2), "xy"), (slice(2, 4), "wh"), (slice(4, 5), "obj"), (slice(5, None), "cls")):
        tmean[:, sl], tstd[:, sl] = TARGET[key]
    tmean, tstd = tmean.view(-1, 1), tstd.view(-1, 1)
    for conv, f in zip(det.m, feats):
        w = conv.weight.detach().clone().requires_grad_(True)
        b = conv.bias.detach().clone().requires_grad_(True)
        opt = torch.optim.Adam([w, b], lr=0.05)
        for _ in range(FIT_STEPS):
            o = torch.nn.functional.conv2d(f, w, b).flatten(2)  # (photos, channels, HW)
            loss = ((o.mean(2) - tmean.T) ** 2 + (o.std(2) - tstd.T) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            conv.weight.copy_(w)
            conv.bias.copy_(b)
        ob = o.view(len(f), det.na, det.no, -1)[:, :, 4]
        print(f"head fit {tuple(f.shape)} loss {loss.item():.4f} obj mean/std per photo",
              ob.mean((1, 2)).tolist(), ob.std(2).mean(1).tolist())
    return model


def export(model: Model, path: Path) -> None:
    """As YOLOv5 export.py: fuse, eval, Detect export mode, two dry runs, torch.onnx.export opset 12."""
    model.fuse().eval()
    for m in model.modules():
        if isinstance(m, Detect):
            m.inplace = True
            m.dynamic = False
            m.export = True
    im = torch.zeros(1, 3, IMGSZ, IMGSZ)
    for _ in range(2):
        y = model(im)
    assert tuple(y[0].shape) == (1, 6300, 5 + NC), y[0].shape
    kwargs = dict(verbose=False, opset_version=OPSET, do_constant_folding=True,
                  input_names=["images"], output_names=["output0"], dynamic_axes=None)
    try:
        torch.onnx.export(model, im, str(path), dynamo=False, **kwargs)  # TorchScript exporter, as in 7.0
    except TypeError:  # torch without the dynamo argument
        torch.onnx.export(model, im, str(path), **kwargs)
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    del m.metadata_props[:]  # export.py adds stride/names; the "yolov5" layout must work without them
    onnx.save(m, str(path))


def main() -> None:
    images = {p: cv2.imread(str(photo(p))) for p in PHOTOS}
    prep = {p: preprocess(im0) for p, im0 in images.items()}
    model = build_model(torch.from_numpy(np.concatenate([prep[p][1] for p in PHOTOS])))
    onnx_path = HERE / "yolov5-tiny.onnx"
    export(model, onnx_path)

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    (inp,), (out,) = sess.get_inputs(), sess.get_outputs()
    arrays, meta_photos, counts = {}, {}, {}
    for p in PHOTOS:
        im0 = images[p]
        lb, x, ratio, pad = prep[p]
        raw = sess.run(None, {inp.name: x})[0].astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x))[0].numpy()
        arrays[f"raw:{p}"] = raw
        meta_photos[p] = {
            "shape_hw": list(im0.shape[:2]),
            "letterbox_ratio": [float(r) for r in ratio],
            "letterbox_pad_wh": [float(v) for v in pad],
            "letterboxed_hw": list(lb.shape[:2]),
            "input_sha256": hashlib.sha256(x.tobytes()).hexdigest(),  # float32 (1,3,320,320) C-order
            "letterboxed_bgr_uint8_sha256": hashlib.sha256(np.ascontiguousarray(lb).tobytes()).hexdigest(),
            "raw_shape": list(raw.shape),
            "onnx_vs_torch_max_abs_diff_per_column": np.abs(raw - ref)[0].max(0).round(7).tolist(),
            "candidates_obj_gt_0.25": int((raw[0, :, 4] > 0.25).sum()),
        }
        for key, opts in OPTIONS.items():
            kw = {**DEFAULT, **opts}
            det = non_max_suppression(torch.from_numpy(raw.copy()), **kw)[0]
            arrays[f"nms:{key}:{p}"] = det.numpy().astype(np.float32).copy()
            det = det.clone()
            det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], im0.shape)  # no .round() (detect.py rounds)
            arrays[f"det:{key}:{p}"] = det.numpy().astype(np.float32)
            counts[f"{key}:{p}"] = int(det.shape[0])
    np.savez_compressed(HERE / "yolov5.npz", **arrays)

    meta = {
        "generator": "tests/goldens/families/make_yolov5.py",
        "model": {"file": onnx_path.name, "cfg": "yolov5-tiny.yaml", "nc": NC, "imgsz": IMGSZ,
                  "opset": OPSET, "input": [inp.name, inp.shape], "output": [out.name, out.shape],
                  "metadata_props": len(onnx.load(str(onnx_path)).metadata_props),
                  "head_targets": TARGET, "seed": 0},
        "row_order": "per level P3(40x40), P4(20x20), P5(10x10); within a level anchor-major, then y, then x",
        "columns": "cx, cy, w, h (input pixels), objectness, class scores (all post-sigmoid)",
        "preprocess": "cv2.imread BGR; yolov5 letterbox(im, 320, stride=32, auto=False) color 114; "
                      "BGR->RGB; HWC->CHW; float32 /255",
        "nms_defaults": DEFAULT,
        "options": {k: {**DEFAULT, **v} for k, v in OPTIONS.items()},
        "keys": {"raw:<photo>": "(1, 6300, 10) float32 ONNX output",
                 "nms:<key>:<photo>": "(n, 6) non_max_suppression rows, letterboxed-tensor pixels",
                 "det:<key>:<photo>": "(n, 6) after scale_boxes (clipped, not rounded), photo pixels"},
        "versions": {"yolov5": yolov5.__version__, "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "onnxruntime": ort.__version__,
                     "onnx": onnx.__version__, "opencv": cv2.__version__, "numpy": np.__version__},
        "photos": meta_photos,
        "counts": counts,
    }
    (HERE / "yolov5.json").write_text(json.dumps(meta, indent=1) + "\n")
    for k, v in counts.items():
        print(k, v)
    print("npz bytes", (HERE / "yolov5.npz").stat().st_size, "onnx bytes", onnx_path.stat().st_size)


if __name__ == "__main__":
    main()
