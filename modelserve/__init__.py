"""modelserve: embeddable, thread-safe inference for YOLO-style detectors.

    >>> import modelserve as ms
    >>> p = ms.load("yolov8n.onnx")          # ONNX Runtime on the CPU by default
    >>> r = p.predict("bus.jpg")             # path, bytes, PIL image or HxWx3 uint8 array (BGR)
    >>> r.xyxy, r.confidence, r.class_id, r.class_names
"""

from . import engines, ops  # type: ignore[attr-defined]  # engines/ is installed as modelserve.engines
from ._detections import Detection, Detections
from ._engine import Engine, TensorSpec
from ._engine_catalog import EngineInfo, list_engines
from ._errors import (
    BatcherClosedError,
    BatchResultError,
    DeadlineExceededError,
    EngineUnavailableError,
    IntegrityError,
    InvalidInputError,
    InvalidNameError,
    ModelLoadError,
    ModelNotFoundError,
    ModelserveError,
    PinMismatchError,
    QueueFullError,
    RegistryError,
    SourceError,
    VersionConflictError,
)
from ._job import JobSummary, batch_predict
from ._load import load
from ._options import PredictOptions
from ._predictor import Predictor
from ._registry import ModelVersion, Registry
from ._version import __version__
from .batching import BatcherStats, Batching, MicroBatcher
from .tasks import Classification

__all__ = [
    "load",
    "batch_predict",
    "JobSummary",
    "MicroBatcher",
    "Batching",
    "BatcherStats",
    "Predictor",
    "PredictOptions",
    "Detections",
    "Detection",
    "Classification",
    "Engine",
    "Registry",
    "ModelVersion",
    "TensorSpec",
    "EngineInfo",
    "list_engines",
    "engines",
    "ops",
    "ModelserveError",
    "ModelLoadError",
    "EngineUnavailableError",
    "InvalidInputError",
    "SourceError",
    "QueueFullError",
    "BatcherClosedError",
    "DeadlineExceededError",
    "BatchResultError",
    "RegistryError",
    "ModelNotFoundError",
    "VersionConflictError",
    "IntegrityError",
    "PinMismatchError",
    "InvalidNameError",
    "__version__",
]
