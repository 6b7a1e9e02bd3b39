"""Regenerate tests/goldens/tasks/*.npz and goldens.json with Ultralytics' own predictor.

Run in a dev environment that has ultralytics (and torch), from the repo root, after make_models.py:

    YOLO_OFFLINE=1 PYTHONPATH=. python tests/goldens/tasks/make_goldens.py

Each case feeds Ultralytics ``YOLO(onnx, task=...).predict(array, ...)`` the very BGR array modelserve decodes
from the photo (``modelserve._images.load_image``), so the comparison tests the task pipelines, not two decoders.

Keys of ``<model>.npz``, per case key ``K`` (the photo name, or ``"bus.jpg|conf=0.1,iou=0.5,max_det=5,agnostic"``):
``K:xyxy`` (n,4) float32 (not for obb), ``K:conf`` (n,) float32, ``K:cls`` (n,) int64; obb: ``K:xywhr`` (n,5),
``K:corners`` (n,4,2); seg: ``K:masks`` np.packbits of the bool (n,H,W) masks (retina_masks=True, so H,W is the
photo's size) and ``K:masks_shape``; pose: ``K:keypoints`` (n,K,3); cls: ``K:probs`` (nc,), ``K:top5`` (5,) int64.

The result views (``tests/results/``): ``K:xywh``, ``K:xyxyn``, ``K:xywhn`` (n,4) (not for obb); obb:
``K:corners_n`` (``obb.xyxyxyxyn``) and ``K:obb_xyxy``; seg: ``K:polygons_n`` (``masks.xyn``, sized as
``K:polygon_sizes``); pose: ``K:keypoints_xyn``; cls: ``K:top1``, ``K:top1conf``, ``K:top5conf``; every task, for
the ``SUMMARY_KEYS`` cases (every cls case): ``K:summary`` and ``K:summary_n``, ``json.dumps`` of
``Results.summary()`` and of ``summary(normalize=True)`` (a unicode string array: no pickle; Ultralytics'
``to_json()`` parses to the same list).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))  # the repository: tests/ itself on sys.path would shadow packages
from modelserve._images import load_image  # noqa: E402
from tests import assets  # noqa: E402

PHOTOS = ["bus.jpg", "zidane.jpg", "astronaut.png", "chelsea.png"]
# model: (task, imgsz)
MODELS = {
    "seg": ("segment", 320),
    "pose": ("pose", 320),
    "obb": ("obb", 320),
    "cls": ("classify", 224),
    "rtdetr": ("detect", 320),
    "seg26": ("segment", 320),
    "pose26": ("pose", 320),
    "obb26": ("obb", 320),
}
DEFAULT = {"conf": 0.25, "iou": 0.7}
EXTRA_PHOTO = "bus.jpg"
EXTRA_KEY = "bus.jpg|conf=0.1,iou=0.5,max_det=5,agnostic"
EXTRA = {"conf": 0.1, "iou": 0.5, "max_det": 5, "agnostic": True}  # modelserve's names (agnostic, not agnostic_nms)
SUMMARY_KEYS = {"zidane.jpg", "chelsea.png", EXTRA_KEY}  # summaries of a few cases (polygons make them large)


def bgr_array(name: str) -> np.ndarray:
    img = load_image(str(assets.photo(name)))
    return np.ascontiguousarray(img.pixels[..., ::-1]) if not img.bgr else img.pixels


def _f32(t, *shape: int) -> np.ndarray:
    return t.numpy().astype(np.float32).reshape(shape)


def store(arrays: dict, key: str, task: str, r) -> int:
    """Put one Results' arrays under ``key``; return its number of detections (classes for cls)."""
    if task == "classify" or key in SUMMARY_KEYS:
        arrays[f"{key}:summary"] = np.asarray(json.dumps(r.summary()))
        arrays[f"{key}:summary_n"] = np.asarray(json.dumps(r.summary(normalize=True)))
    if task == "classify":
        arrays[f"{key}:probs"] = r.probs.data.numpy().astype(np.float32)
        arrays[f"{key}:top5"] = np.asarray(r.probs.top5, dtype=np.int64)
        arrays[f"{key}:top1"] = np.asarray(r.probs.top1, dtype=np.int64)
        arrays[f"{key}:top1conf"] = _f32(r.probs.top1conf)
        arrays[f"{key}:top5conf"] = _f32(r.probs.top5conf, -1)
        return int(r.probs.data.numel())
    boxes = r.obb if task == "obb" else r.boxes
    n = len(boxes)
    if task == "obb":
        arrays[f"{key}:xywhr"] = boxes.xywhr.numpy().astype(np.float32).reshape(n, 5)
        arrays[f"{key}:corners"] = boxes.xyxyxyxy.numpy().astype(np.float32).reshape(n, 4, 2)
        arrays[f"{key}:corners_n"] = _f32(boxes.xyxyxyxyn, n, 4, 2)
        arrays[f"{key}:obb_xyxy"] = _f32(boxes.xyxy, n, 4)
    else:
        arrays[f"{key}:xyxy"] = boxes.xyxy.numpy().astype(np.float32).reshape(n, 4)
        for name in ("xywh", "xyxyn", "xywhn"):
            arrays[f"{key}:{name}"] = _f32(getattr(boxes, name), n, 4)
    arrays[f"{key}:conf"] = boxes.conf.numpy().astype(np.float32).reshape(n)
    arrays[f"{key}:cls"] = boxes.cls.numpy().astype(np.int64).reshape(n)
    if task == "segment":
        h, w = r.orig_shape
        masks = r.masks.data.numpy().astype(bool) if r.masks is not None else np.zeros((0, h, w), bool)
        arrays[f"{key}:masks"] = np.packbits(masks)
        arrays[f"{key}:masks_shape"] = np.asarray(masks.shape, dtype=np.int64)
        polygons = [np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in (r.masks.xy if r.masks is not None else [])]
        arrays[f"{key}:polygons"] = np.concatenate(polygons) if polygons else np.zeros((0, 2), np.float32)
        arrays[f"{key}:polygon_sizes"] = np.asarray([len(p) for p in polygons], dtype=np.int64)
        normed = [np.asarray(p, dtype=np.float32).reshape(-1, 2) for p in (r.masks.xyn if r.masks is not None else [])]
        arrays[f"{key}:polygons_n"] = np.concatenate(normed) if normed else np.zeros((0, 2), np.float32)
    if task == "pose":
        kpts = r.keypoints.data.numpy().astype(np.float32) if r.keypoints is not None else np.zeros((0, 17, 3), np.float32)
        arrays[f"{key}:keypoints"] = kpts
        xyn = r.keypoints.xyn.numpy().astype(np.float32) if r.keypoints is not None else np.zeros((0, 17, 2), np.float32)
        arrays[f"{key}:keypoints_xyn"] = xyn
    return n


def main(names: list[str]) -> None:
    import torch
    import ultralytics
    from ultralytics import YOLO

    summary = {"ultralytics_version": ultralytics.__version__, "torch_version": torch.__version__, "photos": PHOTOS,
               "models": {}}
    path = HERE / "goldens.json"
    if names and path.is_file():  # regenerate only some models: keep the others' entries
        summary["models"] = json.loads(path.read_text()).get("models", {})
    for name in names or list(MODELS):
        task, imgsz = MODELS[name]
        onnx_path = HERE / "models" / f"{name}.onnx"
        if not onnx_path.is_file():
            print(f"!! {name}: {onnx_path} missing, skipped")
            continue
        model = YOLO(str(onnx_path), task=task)
        extra = {"retina_masks": True} if task == "segment" else {}
        cases = [(p, p, DEFAULT) for p in PHOTOS]
        if task != "classify":
            cases.append((EXTRA_KEY, EXTRA_PHOTO, EXTRA))
        arrays, entry = {}, {"task": task, "imgsz": imgsz, "names": len(model.names), "cases": {}}
        for key, photo, options in cases:
            kwargs = {
                "imgsz": imgsz,
                "conf": options["conf"],
                "iou": options["iou"],
                "max_det": options.get("max_det", 300),
                "agnostic_nms": options.get("agnostic", False),
            }
            r = model.predict(bgr_array(photo), verbose=False, device="cpu", **kwargs, **extra)[0]
            n = store(arrays, key, task, r)
            entry["cases"][key] = {"photo": photo, "options": {**kwargs, **extra}, "n": n}
            print(name, key, n)
        np.savez_compressed(HERE / f"{name}.npz", **arrays)
        summary["models"][name] = entry
    path.write_text(json.dumps(summary, indent=1) + "\n")
    print("wrote", path)


if __name__ == "__main__":
    main(sys.argv[1:])
