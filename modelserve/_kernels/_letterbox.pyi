import numpy as np

class Plan:
    def __init__(
        self,
        H: int,
        W: int,
        OH: int,
        OW: int,
        rw: int,
        rh: int,
        left: int,
        top: int,
        xo0: np.ndarray,
        xo1: np.ndarray,
        xa0: np.ndarray,
        xa1: np.ndarray,
        yo0: np.ndarray,
        yo1: np.ndarray,
        yb0: np.ndarray,
        yb1: np.ndarray,
        lut32: np.ndarray,
        lut16: np.ndarray,
    ) -> None: ...
    def run(self, image: np.ndarray, out: np.ndarray, otype: int, pad_value: int, rgb: bool) -> int: ...
