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
plugins; see :mod:`modelserve._engine_catalog` for how engines are found and how ``auto``
chooses, and :class:`modelserve.Engine` for the interface a plugin implements.

``modelserve.list_engines()`` lists every known engine. For compatibility the package is also
callable, ``modelserve.engines()`` giving the same list: a plain function of that name in
``modelserve/__init__.py`` would be replaced by this subpackage as soon as any engine is imported,
hence the module class below. New code should call ``list_engines``.
"""

from __future__ import annotations

import sys
import types
from typing import Any

from ._onnxruntime import OnnxRuntimeEngine
from ._openvino import OpenVINOEngine
from .tensorrt import TensorRTEngine

__all__ = ["OnnxRuntimeEngine", "OpenVINOEngine", "TensorRTEngine"]


class _CallableModule(types.ModuleType):
    def __call__(self) -> Any:
        """Every known engine: name, version, devices usable here, or why it is unavailable."""
        from .._engine_catalog import list_engines

        return list_engines()


sys.modules[__name__].__class__ = _CallableModule
