"""Retina-mask assembly: modelserve._masks.process_masks (Cython kernel, per box crop) vs Ultralytics'
torch ops.process_mask_native, same inputs (random coefficients/prototypes, realistic boxes), plus
exactness (worst IoU, identical masks). Run from the repo root with the reference env:
OMP_NUM_THREADS=1 YOLO_OFFLINE=1 /work/refenv/bin/python benchmarks/masks.py"""
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the repository root: tests.* helpers
import numpy as np  # noqa: E402
from _timing import best  # noqa: E402

from modelserve import ops  # noqa: E402
from modelserve._masks import process_masks  # noqa: E402
from tests.ops.test_masks import _case  # noqa: E402

try:
    import torch
    from ultralytics.utils import ops as uops
    torch.set_num_threads(1)
except ImportError:
    torch = None

print("backend:", ops.backend(), "| OMP_NUM_THREADS =", os.environ["OMP_NUM_THREADS"])
print(f"{'image':>10} {'n':>4} {'modelserve ms':>14} {'+full() ms':>11} {'ultralytics ms':>15} {'ratio':>7}"
      f" {'identical':>10} {'worst IoU':>10}")
for (h, w) in [(1080, 810), (2160, 3840)]:
    g = min(640 / h, 640 / w)
    mh, mw = 160, 160
    for n in (10, 50, 300):
        rng = np.random.default_rng(n)
        coeffs, protos, boxes = _case(rng, (mh, mw), (h, w), n)
        boxes[:, 2:] = np.minimum(boxes[:, :2] + (boxes[:, 2:] - boxes[:, :2]) * 0.5, [w, h])  # typical sizes
        reps = 3 if n == 300 and h > 2000 else 5
        t_ms = best(lambda: process_masks(coeffs, protos, boxes, (640, 640), (h, w)), reps)
        t_full = best(lambda: process_masks(coeffs, protos, boxes, (640, 640), (h, w)).full(), reps)
        line = f"{h}x{w:>5} {n:>4} {t_ms:>14.2f} {t_full:>11.2f}"
        if torch is not None:
            tp, tc, tb = torch.from_numpy(protos), torch.from_numpy(coeffs), torch.from_numpy(boxes)
            t_u = best(lambda: uops.process_mask_native(tp, tc, tb.clone(), (h, w)), reps)
            ref = uops.process_mask_native(tp, tc, tb.clone(), (h, w)).numpy().astype(bool)
            got = process_masks(coeffs, protos, boxes, (640, 640), (h, w)).full()
            same = sum(np.array_equal(a, b) for a, b in zip(got, ref))
            ious = [1.0 if not (a | b).any() else (a & b).sum() / (a | b).sum() for a, b in zip(got, ref)]
            line += f" {t_u:>15.2f} {t_u / t_ms:>6.1f}x {same:>5}/{n:<4} {min(ious):>10.6f}"
        print(line, flush=True)
