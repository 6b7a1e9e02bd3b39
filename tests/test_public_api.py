"""The public API is pinned: ``modelserve.__all__``, ``modelserve.ops.__all__``, the public members
of every exported class and the parameters (names, kinds, defaults) of what users call.

A change here is a change for users: make it on purpose, then refresh the pin with
``python tests/test_public_api.py --write`` and say why in the commit.
"""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path

import modelserve as ms

PIN = Path(__file__).resolve().parent / "public_api.json"
CLASSES = [ms.Predictor, ms.MicroBatcher, ms.Registry, ms.Detections, ms.Detection, ms.Classification, ms.Batching,
           ms.PredictOptions, ms.BatcherStats, ms.ModelVersion, ms.Engine, ms.TensorSpec, ms.EngineInfo]


def _params(func) -> list[list]:
    out = []
    for p in inspect.signature(func).parameters.values():
        default = None if p.default is inspect.Parameter.empty else repr(p.default)
        out.append([p.name, p.kind.name, default])
    return out


def current_api() -> dict:
    api: dict = {"__all__": sorted(ms.__all__), "ops.__all__": sorted(ms.ops.__all__), "members": {},
                 "signatures": {"load": _params(ms.load), "list_engines": _params(ms.list_engines)}}
    for cls in CLASSES:
        members = sorted(m for m in dir(cls) if not m.startswith("_"))
        api["members"][cls.__name__] = members
        for name in ["__init__", "__call__", *members]:
            attr = inspect.getattr_static(cls, name, None)
            if isinstance(attr, (staticmethod, classmethod)):
                attr = getattr(cls, name)
            if not (inspect.isfunction(attr) or inspect.ismethod(attr)):
                continue
            if name.startswith("__") and attr.__qualname__.split(".")[0] != cls.__name__:
                continue  # inherited dunder (object's, a dataclass base's)
            api["signatures"][f"{cls.__name__}.{name}"] = _params(attr)
    for name in ms.ops.__all__:
        func = getattr(ms.ops, name)
        if inspect.isfunction(func):
            api["signatures"][f"ops.{name}"] = _params(func)
    return api


def test_public_api_is_pinned():
    pinned = json.loads(PIN.read_text())
    now = current_api()
    for key in ("__all__", "ops.__all__"):
        assert now[key] == pinned[key], key
    assert now["members"] == pinned["members"]
    changed = {k for k in pinned["signatures"].keys() | now["signatures"].keys()
               if pinned["signatures"].get(k) != now["signatures"].get(k)}
    assert not changed, f"signatures changed: {sorted(changed)}"


def test_every_public_name_is_importable_and_documented():
    for name in ms.__all__:
        obj = getattr(ms, name)
        if name != "__version__":
            assert (getattr(obj, "__doc__", None) or "").strip(), f"modelserve.{name} has no docstring"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        PIN.write_text(json.dumps(current_api(), indent=1) + "\n")
        print("wrote", PIN)
