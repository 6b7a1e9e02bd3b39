import numpy as np

def probiou(a: np.ndarray, b: np.ndarray, out: np.ndarray) -> int: ...
def nms_rotated(
    xywhr: np.ndarray,
    scores: np.ndarray,
    offsets: np.ndarray,
    use_offsets: bool,
    thr: float,
    out: np.ndarray,
) -> int: ...
