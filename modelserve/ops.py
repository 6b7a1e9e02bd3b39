"""Pre- and post-processing operations for YOLO-style detectors.

``letterbox`` turns an image into a model input tensor exactly as Ultralytics does;
``yolo_postprocess`` turns raw ``[B, 4+nc, N]`` outputs into detections exactly as Ultralytics'
``non_max_suppression`` does; ``nms`` / ``batched_nms`` follow ``torchvision.ops``.

The wrappers here validate and convert their inputs (raising :class:`InvalidInputError`), then call
the compiled Cython kernels (``modelserve/_kernels``), which release the GIL. When the extension is
not built, or the environment variable ``MODELSERVE_KERNELS=numpy`` is set (read at every call of
these functions; a Predictor reads it once, when it is loaded), the NumPy reference implementation
in ``modelserve._numpy_ops`` runs instead and a ``RuntimeWarning`` is issued once per process;
:func:`backend` says which one is active. Both give identical results, bit for bit, including the
order of exactly tied scores where torch sorts unstably (both follow libstdc++'s ``std::sort``).
The wrappers never modify their inputs, and refuse ``out`` buffers that overlap them.

Example::

    >>> import numpy as np, modelserve as ms
    >>> frame = np.zeros((720, 1280, 3), np.uint8)
    >>> tensor, info = ms.ops.letterbox(frame, (640, 640))
    >>> tensor.shape, info.resized_wh, info.pad_lt
    ((3, 640, 640), (640, 360), (0, 140))
"""

from __future__ import annotations

from ._backend import KERNELS_ENV, backend
from ._checks import MAX_IMGSZ
from ._letterbox import LetterboxInfo, letterbox, letterbox_geometry, scale_boxes
from ._nms import batched_nms, nms, yolo_postprocess
from ._rotated import batched_nms_rotated, nms_rotated, probiou

__all__ = [
    "LetterboxInfo",
    "letterbox_geometry",
    "letterbox",
    "yolo_postprocess",
    "nms",
    "batched_nms",
    "nms_rotated",
    "batched_nms_rotated",
    "probiou",
    "scale_boxes",
    "backend",
    "KERNELS_ENV",
    "MAX_IMGSZ",
]
