"""Goldens for the ``yolov7`` layout: YOLOv7's ``non_max_suppression`` on YOLOv5's raw outputs.

YOLOv7 ships no package, so its NMS is reproduced here in torch and torchvision from the published
source (WongKinYiu/yolov7, ``utils/general.py``), step for step, and run on the raw outputs that
``make_yolov5.py`` stored (the two families' rows have the same layout). What differs from YOLOv5:

- one class: confidence = objectness alone (``x[:, 5:] = x[:, 4:5]``), not objectness x class;
- the class offset ``max_wh`` is 4096 (YOLOv5: 7680);
- candidates are sorted only when there are more than ``max_nms`` = 30000 (YOLOv5: always);
- ``max_det`` is fixed at 300 inside the function.

Run in the reference environment (torch, torchvision):
``cd /work/main && .refenv/bin/python tests/goldens/families/make_yolov7.py``
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torchvision

HERE = Path(__file__).resolve().parent
OPTIONS = {
    "default": {"conf_thres": 0.25, "iou_thres": 0.45, "classes": None, "agnostic": False, "multi_label": False},
    "multi_label": {"conf_thres": 0.25, "iou_thres": 0.45, "classes": None, "agnostic": False, "multi_label": True},
    "agnostic": {"conf_thres": 0.25, "iou_thres": 0.45, "classes": None, "agnostic": True, "multi_label": False},
    "classes": {"conf_thres": 0.25, "iou_thres": 0.45, "classes": [0, 2], "agnostic": False, "multi_label": False},
    "low": {"conf_thres": 0.01, "iou_thres": 0.6, "classes": None, "agnostic": False, "multi_label": False},
}


def _xywh2xyxy(x: torch.Tensor) -> torch.Tensor:
    y = x.clone()
    y[:, 0] = x[:, 0] - x[:, 2] / 2
    y[:, 1] = x[:, 1] - x[:, 3] / 2
    y[:, 2] = x[:, 0] + x[:, 2] / 2
    y[:, 3] = x[:, 1] + x[:, 3] / 2
    return y


def yolov7_nms(prediction: torch.Tensor, conf_thres: float, iou_thres: float, classes=None, agnostic=False,
               multi_label=False) -> list[torch.Tensor]:
    nc = prediction.shape[2] - 5
    xc = prediction[..., 4] > conf_thres
    max_wh, max_det, max_nms = 4096, 300, 30000
    multi_label &= nc > 1
    output = [torch.zeros((0, 6))] * prediction.shape[0]
    for xi, x in enumerate(prediction):
        x = x[xc[xi]]
        if not x.shape[0]:
            continue
        if nc == 1:
            x[:, 5:] = x[:, 4:5]
        else:
            x[:, 5:] *= x[:, 4:5]
        box = _xywh2xyxy(x[:, :4])
        if multi_label:
            i, j = (x[:, 5:] > conf_thres).nonzero(as_tuple=False).T
            x = torch.cat((box[i], x[i, j + 5, None], j[:, None].float()), 1)
        else:
            conf, j = x[:, 5:].max(1, keepdim=True)
            x = torch.cat((box, conf, j.float()), 1)[conf.view(-1) > conf_thres]
        if classes is not None:
            x = x[(x[:, 5:6] == torch.tensor(classes)).any(1)]
        n = x.shape[0]
        if not n:
            continue
        elif n > max_nms:
            x = x[x[:, 4].argsort(descending=True)[:max_nms]]
        c = x[:, 5:6] * (0 if agnostic else max_wh)
        boxes, scores = x[:, :4] + c, x[:, 4]
        i = torchvision.ops.nms(boxes, scores, iou_thres)
        if i.shape[0] > max_det:
            i = i[:max_det]
        output[xi] = x[i]
    return output


def main() -> None:
    raw = np.load(HERE / "yolov5.npz")
    photos = sorted(k.split(":", 1)[1] for k in raw.files if k.startswith("raw:"))
    out, counts = {}, {}
    for name in photos:
        rows = raw[f"raw:{name}"]
        variants = {"": rows, "1cls:": np.ascontiguousarray(rows[..., :6])}  # one class: the first class column
        for tag, r in variants.items():
            for key, o in OPTIONS.items():
                det = yolov7_nms(torch.from_numpy(r.copy()), o["conf_thres"], o["iou_thres"], o["classes"],
                                 o["agnostic"], o["multi_label"])[0]
                out[f"nms:{tag}{key}:{name}"] = det.numpy().astype(np.float32)
                counts[f"{tag}{key}:{name}"] = len(det)
    np.savez_compressed(HERE / "yolov7.npz", **out)
    meta = {"generator": "tests/goldens/families/make_yolov7.py", "raw": "yolov5.npz raw:<photo>",
            "one_class": "1cls: the raw rows' first 6 columns (cx, cy, w, h, objectness, class 0)",
            "options": OPTIONS, "photos": photos, "counts": counts,
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__, "numpy": np.__version__}}
    (HERE / "yolov7.json").write_text(json.dumps(meta, indent=1) + "\n")
    print(json.dumps(counts))


if __name__ == "__main__":
    main()
