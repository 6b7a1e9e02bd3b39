"""Drawing results: modelserve.plotting.plot (Pillow) vs Ultralytics' Results.plot() (OpenCV, torch for
masks) on the same model and picture, milliseconds per picture (best of several runs), plus
modelserve's save() to JPEG. Pictures: bus.jpg (1080x810) and the same photo resized to a 1920x1080
frame. Models: the real detector (tests/assets.py) and the random-weight task models of
tests/goldens/tasks/models (their masks are large and many: a hard case). Run from the repo root with
the reference env:

    OMP_NUM_THREADS=1 YOLO_OFFLINE=1 /work/refenv/bin/python benchmarks/plotting.py [--quick]
"""
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import assets  # noqa: E402
import numpy as np  # noqa: E402
from _timing import best  # noqa: E402
from PIL import Image  # noqa: E402

import modelserve as ms  # noqa: E402
from modelserve import plotting  # noqa: E402
from modelserve._images import load_image  # noqa: E402

MODELS = ROOT / "tests" / "goldens" / "tasks" / "models"
# name: (model file, task, imgsz, predict options)
CASES = {
    "detect": (None, "detect", 320, {"conf": 0.05}),
    "segment": (MODELS / "seg.onnx", "segment", 320, {}),
    "segment max_det=20": (MODELS / "seg.onnx", "segment", 320, {"max_det": 20}),
    "pose": (MODELS / "pose.onnx", "pose", 320, {}),
    "obb": (MODELS / "obb.onnx", "obb", 320, {}),
    "classify": (MODELS / "cls.onnx", "classify", 224, {}),
}


def pictures():
    img = load_image(str(assets.photo("bus.jpg")))
    bus = np.ascontiguousarray(img.pixels[..., ::-1])
    frame = np.asarray(Image.fromarray(img.pixels).resize((1920, 1080), Image.Resampling.BILINEAR))[..., ::-1]
    return {"bus 1080x810": bus, "frame 1920x1080": np.ascontiguousarray(frame)}


def main() -> None:
    quick = "--quick" in sys.argv
    reps = 3 if quick else 10
    try:
        import torch
        from ultralytics import YOLO

        torch.set_num_threads(1)
    except ImportError:
        YOLO = None
    out_dir = Path(tempfile.mkdtemp(prefix="plotting-bench-"))
    print(f"{'case':<20} {'picture':<16} {'n':>4} {'plot ms':>8} {'save jpg ms':>12} {'ultralytics ms':>15} {'ratio':>6}")
    for case, (model, task, imgsz, options) in CASES.items():
        path = assets.detector_path() if model is None else model
        predictor = ms.load(path)
        yolo = YOLO(str(path), task=task) if YOLO is not None else None
        for pic_name, pic in pictures().items():
            r = predictor.predict(pic, **options)
            n = len(r) if task != "classify" else 5
            t_plot = best(lambda: plotting.plot(r, pic), reps)
            t_save = best(lambda: plotting.save(r, pic, out_dir / "out.jpg"), reps)
            line = f"{case:<20} {pic_name:<16} {n:>4} {t_plot:>8.1f} {t_save:>12.1f}"
            if yolo is not None:
                u = yolo.predict(pic, imgsz=imgsz, verbose=False, device="cpu",
                                 max_det=options.get("max_det", 300), conf=options.get("conf", 0.25))[0]
                t_u = best(lambda: u.plot(), reps)
                line += f" {t_u:>15.1f} {t_u / t_plot:>5.1f}x"
            print(line, flush=True)
        predictor.close()


if __name__ == "__main__":
    main()
