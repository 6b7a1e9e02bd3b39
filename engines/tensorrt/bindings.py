"""The I/O tensors of a deserialised TensorRT engine and the checks on what is fed to them.

Everything here reads TensorRT 10's named-tensor API (``num_io_tensors``,
``get_tensor_name/mode/shape/dtype``, ``get_tensor_profile_shape``) from the objects it is given,
so it runs, and is tested, without TensorRT or a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from ..._errors import InvalidInputError, ModelLoadError
from .profiles import Shape

__all__ = ["Binding", "binding_layout", "identical_profiles", "max_batch_of", "unresolved_outputs", "check_feed"]


@dataclass(frozen=True)
class Binding:
    """One I/O tensor of a TensorRT engine: shape has None for dynamic dims; ``profile`` is
    ``(min, opt, max)`` of the optimisation profile it was read from for inputs (the shape three
    times for a static input), None for outputs."""

    name: str
    is_input: bool
    dtype: np.dtype
    shape: tuple[int | None, ...]
    profile: tuple[Shape, Shape, Shape] | None


def _profile_of(engine: Any, name: str, index: int) -> tuple[Shape, Shape, Shape]:
    mn, op, mx = engine.get_tensor_profile_shape(name, index)
    return tuple(int(d) for d in mn), tuple(int(d) for d in op), tuple(int(d) for d in mx)


def binding_layout(engine: Any, trt: Any, profile_index: int = 0) -> tuple[list[Binding], list[Binding]]:
    """Inputs and outputs of a deserialised engine, through TensorRT 10's named-tensor API
    (``num_io_tensors``, ``get_tensor_name/mode/shape/dtype``, ``get_tensor_profile_shape``);
    dynamic inputs carry the shapes of optimisation profile ``profile_index``."""
    inputs: list[Binding] = []
    outputs: list[Binding] = []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
        shape = tuple(None if int(d) < 0 else int(d) for d in engine.get_tensor_shape(name))
        dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
        profile = None
        if is_input:
            if any(d is None for d in shape):
                profile = _profile_of(engine, name, profile_index)
            else:
                fixed = tuple(int(d) for d in shape if d is not None)
                profile = (fixed, fixed, fixed)
        (inputs if is_input else outputs).append(Binding(name, is_input, dtype, shape, profile))
    return inputs, outputs


def identical_profiles(engine: Any, inputs: Sequence[Binding]) -> list[int] | None:
    """Indices of the engine's optimisation profiles that equal profile 0 for every dynamic input:
    the profiles concurrently running contexts can take, one each, and accept the same shapes.
    None when no input is dynamic (then contexts may all share profile 0).

    TensorRT requires, for dynamic shapes, that every execution context in concurrent use has an
    optimisation profile of its own.
    """
    names = [b.name for b in inputs if any(d is None for d in b.shape)]
    if not names:
        return None
    first = {n: _profile_of(engine, n, 0) for n in names}
    count = int(engine.num_optimization_profiles)
    return [p for p in range(count) if all(_profile_of(engine, n, p) == first[n] for n in names)]


def max_batch_of(inputs: Sequence[Binding]) -> int | None:
    """The largest batch (axis 0) every input accepts: its profile's maximum (a static dimension's
    value). None for an engine without inputs or with only scalar inputs.

    >>> profile = ((1, 3, 32, 32), (8, 3, 320, 320), (32, 3, 320, 320))
    >>> b = Binding("images", True, np.dtype("float32"), (None, 3, None, None), profile)
    >>> max_batch_of([b])
    32
    """
    limits = [b.profile[2][0] for b in inputs if b.profile is not None and len(b.profile[2]) > 0]
    return min(limits) if limits else None


def unresolved_outputs(context: Any, inputs: Sequence[Binding], outputs: Sequence[Binding]) -> list[str]:
    """Outputs whose shape stays unknown (a ``-1``) once every input shape is set (to its profile's
    optimum): data-dependent shapes, which TensorRT only knows after running and which this adapter
    cannot size buffers for."""
    for b in inputs:
        opt = b.profile[1] if b.profile is not None else tuple(d or 1 for d in b.shape)
        if not context.set_input_shape(b.name, opt):
            raise ModelLoadError(f"tensorrt refused its own profile shape {list(opt)} for input {b.name!r}")
    return [b.name for b in outputs if any(int(d) < 0 for d in context.get_tensor_shape(b.name))]


def check_feed(b: Binding, arr: Any) -> None:
    """Refuse (:class:`InvalidInputError`) an input array of another dtype or rank than ``b``, or
    with a shape outside ``b``'s optimisation profile, before anything reaches TensorRT."""
    shape = getattr(arr, "shape", None)
    if getattr(arr, "dtype", None) != b.dtype or shape is None or len(shape) != len(b.shape):
        raise InvalidInputError(
            f"tensorrt rejected input {b.name!r}: expected {b.dtype} with shape {list(b.shape)}, "
            f"got {getattr(arr, 'dtype', type(arr).__name__)} with shape {shape}"
        )
    if b.profile is not None:
        mn, _, mx = b.profile
        if not all(lo <= d <= hi for lo, d, hi in zip(mn, shape, mx)):
            raise InvalidInputError(
                f"tensorrt input {b.name!r} shape {list(shape)} is outside the engine's profile "
                f"{list(mn)}..{list(mx)}; rebuild with larger engine_options max_batch/imgsz (or profile=)"
            )
