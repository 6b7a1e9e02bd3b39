"""Which implementation the operations run: the compiled Cython kernels or the NumPy versions.

The kernels (``modelserve/_kernels``) are used when they are built, unless the environment variable
``MODELSERVE_KERNELS=numpy`` is set (read at every call of :func:`use_kernels`; a Predictor reads it
once, when it is loaded). The NumPy versions (:mod:`modelserve._numpy_ops` and each wrapper's
fallback) give identical results, bit for bit; using them issues a ``RuntimeWarning`` once per
process.
"""

from __future__ import annotations

import os
import warnings

try:
    from ._kernels import _nms as _probe  # any kernel: they are built together
except ImportError as _exc:  # extension not built
    KERNELS_IMPORT_ERROR: str | None = str(_exc)
else:
    KERNELS_IMPORT_ERROR = None
    del _probe

__all__ = ["KERNELS_ENV", "KERNELS_IMPORT_ERROR", "backend", "use_kernels"]

#: Environment variable that, set to ``numpy``, forces the NumPy implementations (read at call time).
KERNELS_ENV = "MODELSERVE_KERNELS"
_warned_fallback = False


def backend() -> str:
    """The implementation the operations use right now: ``"cython"`` or ``"numpy"``."""
    if KERNELS_IMPORT_ERROR is not None or os.environ.get(KERNELS_ENV, "").strip().lower() == "numpy":
        return "numpy"
    return "cython"


def use_kernels() -> bool:
    """True when the compiled kernels should run; warns once per process when they will not."""
    global _warned_fallback
    if backend() == "cython":
        return True
    if not _warned_fallback:
        _warned_fallback = True
        if KERNELS_IMPORT_ERROR is not None:
            why = (
                f"the compiled kernels are not available ({KERNELS_IMPORT_ERROR}); build them with "
                "`python setup.py build_ext --inplace` or `pip install .`"
            )
        else:
            why = f"{KERNELS_ENV}=numpy is set"
        warnings.warn(
            f"modelserve.ops is using the slow NumPy reference implementation: {why}",
            RuntimeWarning,
            stacklevel=3,
        )
    return False
