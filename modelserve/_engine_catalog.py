"""Finding engines by name, listing them, and choosing one for a model file.

Engines are found through the entry-point group ``modelserve.engines``: each entry point's name is
the engine name users pass as ``engine=`` and its value is an :class:`~modelserve.Engine` subclass
(``name = package.module:Class``). modelserve's own engines are declared in its ``setup.py`` the
same way as any plugin's; the ``_BUILTIN`` table below only backs them up when modelserve runs from
a source tree that was never installed. A plugin cannot take a built-in's name (the built-in
keeps it, and :func:`list_engines` reports the plugin as shadowed). Engine classes are imported
only when used, so importing modelserve never needs an engine runtime.

Writing a plugin engine::

    # my_engine.py
    import modelserve as ms

    class MyEngine(ms.Engine):
        name = "mine"
        def __init__(self, path, *, device="cpu", **options): ...   # see modelserve.Engine
        def run(self, feeds): ...                                   # thread-safe
        @classmethod
        def availability(cls): return True, "1.0"                   # or (False, "why + how to fix")
        @classmethod
        def available_devices(cls): return ("cpu",)                 # optional; default ("cpu",)

    # pyproject.toml
    [project.entry-points."modelserve.engines"]
    mine = "my_engine:MyEngine"

then ``modelserve.load("model.onnx", engine="mine")``.

``engine="auto"`` is deterministic and static (see :func:`explain_choice`): an explicit engine
wins; otherwise the file type decides (``.xml`` -> openvino, ``.engine``/``.plan`` -> tensorrt);
for ``.onnx`` the first engine in ``AUTO_PREFERENCE[device]`` that is installed, can use the
device and takes the given ``engine_options``. On the CPU ONNX Runtime comes first: in
``benchmarks/engines.py`` (``benchmarks/RESULTS.md``) OpenVINO did not beat it at the detector's
own size (320: ONNX Runtime ahead at batch 1 and 8, even at 32), only at 640 with batch 8, so
OpenVINO is the CPU fallback when ONNX Runtime is not installed, and is used first only when named.
On CUDA, TensorRT comes first (the fastest NVIDIA runtime; its first load builds a plan, cached
with ``cache_dir``). Plugins are used only by name.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping

from ._engine import Engine
from ._errors import EngineUnavailableError, InvalidInputError

__all__ = [
    "ENTRY_POINT_GROUP",
    "AUTO_PREFERENCE",
    "EngineInfo",
    "engine_class",
    "engine_names",
    "list_engines",
    "choose_engine",
    "explain_choice",
    "open_engine",
]

ENTRY_POINT_GROUP = "modelserve.engines"

_BUILTIN: dict[str, str] = {
    "onnxruntime": "modelserve.engines._onnxruntime:OnnxRuntimeEngine",
    "openvino": "modelserve.engines._openvino:OpenVINOEngine",
    "tensorrt": "modelserve.engines.tensorrt:TensorRTEngine",
}

_ALIASES = {"ort": "onnxruntime", "ov": "openvino", "trt": "tensorrt"}

#: Engines ``auto`` tries for an ONNX file, in order, by device family (the part before ``:``).
AUTO_PREFERENCE: dict[str, tuple[str, ...]] = {
    "cpu": ("onnxruntime", "openvino"),
    "cuda": ("tensorrt", "onnxruntime"),
    "gpu": ("openvino",),  # Intel GPU
    "npu": ("openvino",),
    "tensorrt": ("onnxruntime",),  # ONNX Runtime's TensorRT execution provider
    "openvino": ("onnxruntime",),  # ONNX Runtime's OpenVINO execution provider
}

#: File types that name their engine.
AUTO_BY_SUFFIX: dict[str, str] = {".xml": "openvino", ".engine": "tensorrt", ".plan": "tensorrt"}


@dataclass(frozen=True)
class EngineInfo:
    """One known engine, as :func:`list_engines` (``modelserve.list_engines()``) reports it.

    ``version`` is the runtime's version when it is usable here, ``devices`` the device names it can
    use on this machine, ``reason`` why it cannot be used (``None`` when it can), ``origin``
    ``"builtin"`` or ``"plugin"``, ``target`` the ``module:Class`` it is loaded from.
    """

    name: str
    version: str | None
    available: bool
    devices: tuple[str, ...]
    reason: str | None
    origin: str
    target: str


@dataclass(frozen=True)
class _Entry:
    name: str
    target: str
    origin: str
    shadowed_by: str | None = None


def _discover() -> tuple[dict[str, _Entry], list[_Entry]]:
    """Engines by name, plus plugin entries shadowed by a built-in of the same name."""
    found: dict[str, _Entry] = {}
    shadowed: list[_Entry] = []
    builtin_targets = set(_BUILTIN.values())
    try:
        eps = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    except Exception:  # noqa: BLE001 - a broken distribution must not stop built-in engines
        eps = []
    for ep in eps:
        name = ep.name.strip().lower()
        origin = "builtin" if ep.value.replace(" ", "") in builtin_targets else "plugin"
        entry = _Entry(name, ep.value.replace(" ", ""), origin)
        current = found.get(name)
        if current is None:
            found[name] = entry
        elif current.target != entry.target:
            if current.origin == "builtin" or entry.origin != "builtin":
                shadowed.append(_Entry(name, entry.target, entry.origin, current.target))
            else:
                shadowed.append(_Entry(name, current.target, current.origin, entry.target))
                found[name] = entry
    for name, target in _BUILTIN.items():
        current = found.get(name)
        if current is None:
            found[name] = _Entry(name, target, "builtin")
        elif current.origin != "builtin":
            shadowed.append(_Entry(name, current.target, current.origin, target))
            found[name] = _Entry(name, target, "builtin")
    return found, shadowed


def _load_target(target: str) -> type[Engine]:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        cls: Any = module
        for part in attr.split("."):
            cls = getattr(cls, part)
    except Exception as exc:  # noqa: BLE001 - a plugin's import can fail any way
        raise EngineUnavailableError(f"cannot import engine {target}: {type(exc).__name__}: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise EngineUnavailableError(f"{target} is not a modelserve Engine subclass")
    return cls


def _canonical(name: str) -> str:
    key = str(name).strip().lower()
    return _ALIASES.get(key, key)


def engine_names() -> list[str]:
    """Names of every known engine (built-in first, then plugins), sorted within each group."""
    found, _ = _discover()
    return sorted(found, key=lambda n: (found[n].origin != "builtin", n))


def engine_class(name: str) -> type[Engine]:
    """The engine class registered under ``name`` (``"onnxruntime"``, ``"openvino"``, ``"tensorrt"``,
    a plugin's name; aliases ``ort``, ``ov``, ``trt``)."""
    key = _canonical(name)
    found, _ = _discover()
    if key not in found:
        raise EngineUnavailableError(f"unknown engine {name!r}; known engines: {engine_names()}")
    return _load_target(found[key].target)


def _devices(cls: type[Engine]) -> tuple[str, ...]:
    fn = getattr(cls, "available_devices", None)
    if fn is None:
        return ("cpu",)
    try:
        return tuple(str(d) for d in fn())
    except Exception:  # noqa: BLE001
        return ()


def _info(entry: _Entry) -> EngineInfo:
    if entry.shadowed_by is not None:
        reason: str | None = f"name {entry.name!r} is taken by {entry.shadowed_by}"
        return EngineInfo(entry.name, None, False, (), reason, entry.origin, entry.target)
    try:
        cls = _load_target(entry.target)
        ok, detail = cls.availability()
    except EngineUnavailableError as exc:
        return EngineInfo(entry.name, None, False, (), str(exc), entry.origin, entry.target)
    except Exception as exc:  # noqa: BLE001 - a plugin's availability() must not break the listing
        return EngineInfo(entry.name, None, False, (), f"availability() failed: {exc}", entry.origin, entry.target)
    if not ok:
        return EngineInfo(entry.name, None, False, (), str(detail), entry.origin, entry.target)
    devices = _devices(cls)
    reason = None if devices else "installed, but no device it can use was found on this machine"
    return EngineInfo(entry.name, str(detail) or None, bool(devices), devices, reason, entry.origin, entry.target)


def list_engines() -> list[EngineInfo]:
    """Every known engine: version, the devices it can use here, or why it cannot be used.

    Built-ins come first (onnxruntime, openvino, tensorrt), then plugins by name, then plugins
    shadowed by a built-in of the same name. Importing an engine's runtime is the only side effect.
    """
    found, shadowed = _discover()
    builtin_rank = {name: i for i, name in enumerate(_BUILTIN)}
    order = sorted(found.values(), key=lambda e: (e.origin != "builtin", builtin_rank.get(e.name, 0), e.name))
    return [_info(e) for e in order] + [_info(e) for e in shadowed]


def _device_family(device: str) -> str:
    return str(device).strip().lower().split(":")[0]


def _serves(info: EngineInfo, device: str) -> bool:
    dev = str(device).strip().lower()
    if dev in info.devices:
        return True
    # "cuda" in devices stands for every CUDA device the engine checks at load time
    return _device_family(dev) in info.devices and ":" in dev


def _accepts(cls: type[Engine], options: Collection[str]) -> bool:
    names = getattr(cls, "option_names", None)
    return names is None or set(options) <= set(names)


def _choose(
    path: str, engine: str | type[Engine], device: str, options: Collection[str] = ()
) -> tuple[type[Engine], str, list[str]]:
    """``(engine class, why, refusals)``; non-empty refusals mean no candidate fitted and the class
    is the last candidate, returned so that its constructor can say precisely what is missing."""
    if isinstance(engine, type):
        if not issubclass(engine, Engine):
            raise InvalidInputError(f"engine must be a name or an Engine subclass, got {engine!r}")
        return engine, f"engine class {engine.__name__} was passed explicitly", []
    if not isinstance(engine, str):
        raise InvalidInputError(f"engine must be a name or an Engine subclass, got {engine!r}")
    if engine.strip().lower() != "auto":
        return engine_class(engine), f"engine {engine!r} was named explicitly", []
    suffix = os.path.splitext(str(path))[1].lower()
    if suffix in AUTO_BY_SUFFIX:
        name = AUTO_BY_SUFFIX[suffix]
        return engine_class(name), f"{suffix} files are {name} models", []
    if suffix not in ("", ".onnx"):
        raise EngineUnavailableError(
            f"no engine handles {suffix!r} files automatically (auto knows .onnx, {', '.join(AUTO_BY_SUFFIX)}); "
            "pass engine= explicitly"
        )
    family = _device_family(device)
    candidates = AUTO_PREFERENCE.get(family)
    if candidates is None:
        raise InvalidInputError(
            f"device must be one of {sorted(AUTO_PREFERENCE)} (or 'cuda:N', 'gpu:N') for engine='auto', got {device!r}"
        )
    found, _ = _discover()
    refusals: list[str] = []
    installed: list[str] = []
    for name in candidates:
        info = _info(found[name])
        if not info.available:
            refusals.append(f"{name}: {info.reason}")
            continue
        installed.append(name)
        cls = engine_class(name)
        if not _serves(info, device):
            refusals.append(f"{name}: cannot use {device!r} here (devices {list(info.devices)})")
        elif not _accepts(cls, options):
            unknown = sorted(set(options) - set(getattr(cls, "option_names", ())))
            refusals.append(f"{name}: does not take engine_options {unknown}")
        else:
            why = f"first engine in the {family!r} preference {list(candidates)} that can use {device!r}"
            if options:
                why += f" and takes engine_options {sorted(options)}"
            return cls, why + (f" (skipped {'; '.join(refusals)})" if refusals else ""), []
    # Nothing fits: hand back the first installed candidate, whose constructor says precisely
    # what is missing (e.g. onnxruntime: "needs the CUDAExecutionProvider ..."); open_engine adds
    # why the others were skipped.
    pick = (installed or list(candidates))[0]
    others = [r for r in refusals if not r.startswith(pick + ":")]
    return engine_class(pick), "no engine fitted", others or ["(no other candidates)"]


def choose_engine(
    path: str, engine: str | type[Engine] = "auto", device: str = "cpu", options: Collection[str] = ()
) -> type[Engine]:
    """Pick the engine class for ``path`` (see the module docstring for how ``auto`` decides).

    ``options``: the names of the engine options the caller will pass; ``auto`` skips engines
    that do not take them (engines declare theirs in an ``option_names`` class attribute).
    When no engine fits, the last engine of the preference is returned so that constructing it
    raises its own precise error (:func:`open_engine` adds why the others were skipped).
    """
    return _choose(path, engine, device, options)[0]


def explain_choice(
    path: str, engine: str | type[Engine] = "auto", device: str = "cpu", options: Collection[str] = ()
) -> str:
    """One sentence saying which engine ``engine``/``device`` resolve to for ``path`` and why."""
    cls, why, refusals = _choose(path, engine, device, options)
    if refusals:
        return f"no engine fits; {cls.name} will say why it cannot, others: {'; '.join(refusals)}"
    return f"{cls.name or cls.__name__}: {why}"


def open_engine(
    path: str,
    *,
    engine: str | type[Engine] = "auto",
    device: str = "cpu",
    cache_dir_for: Callable[[type[Engine]], str | os.PathLike[str] | None] | None = None,
    hints: Mapping[str, Any] | None = None,
    **options: Any,
) -> Engine:
    """Choose and construct the engine for ``path``; ``options`` go to the engine's constructor.

    ``cache_dir_for(engine_class)``: where the chosen engine should keep compiled artifacts, asked
    only when the engine uses a ``cache_dir`` on ``device`` and the caller did not set one.
    ``hints``: options passed only to an engine that lists them in ``option_names`` and only when
    the caller did not set them (e.g. the Predictor's ``imgsz``, which TensorRT builds its profile for).
    """
    cls, _, refusals = _choose(path, engine, device, tuple(options))
    for key, value in (hints or {}).items():
        if value is not None and options.get(key) is None and cls.option_names and key in cls.option_names:
            options[key] = value
    if cache_dir_for is not None and options.get("cache_dir") is None and cls.uses_cache_dir(device):
        cache_dir = cache_dir_for(cls)
        if cache_dir is not None:
            options["cache_dir"] = os.fspath(cache_dir)
    try:
        return cls(os.fspath(path), device=device, **options)
    except (EngineUnavailableError, InvalidInputError) as exc:
        others = [r for r in refusals if not r.startswith("(")]
        if not others:
            raise
        raise type(exc)(f"{exc} (engine='auto' also tried {'; '.join(others)})") from exc
