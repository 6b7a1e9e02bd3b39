"""Engine adapters shipped with modelserve (installed as ``modelserve.engines``).

==============  =====================================  ==================================================
engine          install                                devices
==============  =====================================  ==================================================
``onnxruntime`` ``pip install modelserve[onnxruntime]``  ``cpu``, ``cuda[:N]``, ``tensorrt[:N]``,
                                                       ``openvino[:CPU|GPU|NPU]`` (execution providers)
``openvino``    ``pip install modelserve[openvino]``   ``cpu``, ``gpu[:N]``, ``npu``, ``auto``
``tensorrt``    ``pip install modelserve[tensorrt]``   ``cuda[:N]``
==============  =====================================  ==================================================

Each adapter imports its runtime only when an engine is created, so this package imports on any
machine. All are registered in the ``modelserve.engines`` entry-point group, like third-party
plugins; see :mod:`modelserve._engines_registry` for how engines are found and how ``auto``
chooses, and :class:`modelserve.Engine` for the interface a plugin implements.
"""

from __future__ import annotations

from ._onnxruntime import OnnxRuntimeEngine
from ._openvino import OpenVINOEngine
from ._tensorrt import TensorRTEngine

__all__ = ["OnnxRuntimeEngine", "OpenVINOEngine", "TensorRTEngine"]
