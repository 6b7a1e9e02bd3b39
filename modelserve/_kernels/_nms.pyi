import numpy as np

def nms(boxes: np.ndarray, scores: np.ndarray, thr: float, max_keep: int, out: np.ndarray) -> int: ...
def batched_nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    offsets: np.ndarray,
    dense: np.ndarray,
    ncls: int,
    use_offsets: bool,
    thr: float,
    max_keep: int,
    out: np.ndarray,
) -> int: ...
def yolo_postprocess(
    raw: np.ndarray,
    conf: float,
    thr: float,
    max_det: int,
    allowed: np.ndarray,
    agnostic: bool,
    max_nms: int,
    max_wh: float,
    det: np.ndarray,
    counts: np.ndarray,
    nc: int = -1,
    anchors: np.ndarray | None = None,
    xyxy: bool = False,
) -> int: ...
def yolo_detections(
    raw: np.ndarray,
    conf: float,
    thr: float,
    max_det: int,
    allowed: np.ndarray,
    agnostic: bool,
    max_nms: int,
    max_wh: float,
    scale: np.ndarray,
    xyxy: bool = False,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]: ...
def torch_sort_order(scores: np.ndarray, out: np.ndarray) -> int: ...
def nms_plus_one(boxes: np.ndarray, order: np.ndarray, thr: float, keep: np.ndarray) -> int: ...
