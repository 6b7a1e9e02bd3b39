"""Engine adapters shipped with modelserve (installed as ``modelserve.engines``).

Each adapter imports its runtime only when an engine is created, so this package imports on any
machine. See :class:`modelserve.Engine` for the interface a third-party engine implements.
"""

from __future__ import annotations

from ._onnxruntime import OnnxRuntimeEngine

__all__ = ["OnnxRuntimeEngine"]
