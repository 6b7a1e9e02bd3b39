"""Optimisation profiles: the input shapes a TensorRT plan is built for.

A plan built from an ONNX model with dynamic dimensions accepts only the shapes of its
optimisation profiles (``min <= shape <= max`` on every axis, tuned for ``opt``). For a detector
input ``[batch, 3, height, width]`` :func:`profile_shapes` covers what the Predictor sends: batch
``1..max_batch`` and height/width from one stride up to ``imgsz`` rounded up to the stride (the
Predictor letterboxes dynamic models to at most that). Models that are not plain detectors pass
their own profile, checked by :func:`check_profile`.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from ..._checks import is_int, pair, positive_int, round_up
from ..._errors import InvalidInputError
from .._onnxinfo import OnnxTensor

__all__ = ["Shape", "Profile", "DEFAULT_MAX_BATCH", "profile_shapes", "check_profile"]

Shape = tuple[int, ...]
#: ``{input name: (min shape, opt shape, max shape)}``
Profile = dict[str, tuple[Shape, Shape, Shape]]

DEFAULT_MAX_BATCH = 32  # the micro-batcher's default max_batch_size
DEFAULT_OPT_BATCH = 8


def profile_shapes(
    inputs: Sequence[OnnxTensor],
    *,
    imgsz: int | Sequence[int] = 640,
    stride: int = 32,
    max_batch: int = DEFAULT_MAX_BATCH,
    opt_batch: int | None = None,
    min_imgsz: int | Sequence[int] | None = None,
) -> Profile:
    """The optimisation profile ``{input: (min, opt, max)}`` covering what the Predictor sends.

    A 4-D ``[batch, channels, height, width]`` input: a dynamic batch spans ``1..max_batch``
    (optimum ``opt_batch``, default ``min(8, max_batch)``); a dynamic height/width spans
    ``min_imgsz..imgsz`` rounded up to the stride (optimum ``imgsz``). Static dimensions keep their
    value. Any other dynamic dimension cannot be guessed and raises :class:`InvalidInputError`
    asking for ``profile=``.

    >>> import numpy as np
    >>> t = OnnxTensor("images", np.dtype("float32"), ("batch", 3, "height", "width"))
    >>> profile_shapes([t], imgsz=320)["images"]
    ((1, 3, 32, 32), (8, 3, 320, 320), (32, 3, 320, 320))
    >>> profile_shapes([t], imgsz=320, max_batch=4)["images"]
    ((1, 3, 32, 32), (4, 3, 320, 320), (4, 3, 320, 320))
    """
    max_batch = positive_int(max_batch, "max_batch")
    opt_batch = min(DEFAULT_OPT_BATCH, max_batch) if opt_batch is None else positive_int(opt_batch, "opt_batch")
    stride = positive_int(stride, "stride")
    if opt_batch > max_batch:
        raise InvalidInputError(f"opt_batch ({opt_batch}) must be <= max_batch ({max_batch})")
    hi = tuple(round_up(v, stride) for v in pair(imgsz, "imgsz"))
    lo = tuple(round_up(v, stride) for v in pair(min_imgsz if min_imgsz is not None else stride, "min_imgsz"))
    if lo[0] > hi[0] or lo[1] > hi[1]:
        raise InvalidInputError(f"min_imgsz {lo} must not exceed imgsz {hi}")
    profile: Profile = {}
    for t in inputs:
        shape = t.shape
        if all(d is not None for d in shape):
            fixed = tuple(int(d) for d in shape if d is not None)
            profile[t.name] = (fixed, fixed, fixed)
            continue
        if len(shape) != 4 or shape[1] is None:
            raise InvalidInputError(
                f"cannot infer an optimisation profile for input {t.name!r} with dims {list(t.dims)}; "
                "pass engine_options={'profile': {name: (min_shape, opt_shape, max_shape)}}"
            )
        triples: list[tuple[int, int, int]] = []
        for axis, dim in enumerate(shape):
            if dim is not None:
                triples.append((dim, dim, dim))
            elif axis == 0:
                triples.append((1, opt_batch, max_batch))
            else:
                triples.append((lo[axis - 2], hi[axis - 2], hi[axis - 2]))
        mins, opts, maxs = zip(*triples)
        profile[t.name] = (tuple(mins), tuple(opts), tuple(maxs))
    return profile


def check_profile(profile: Mapping[str, Any], inputs: Sequence[OnnxTensor]) -> Profile:
    """A profile given as ``engine_options={"profile": ...}``, as tuples of ints: shapes for
    exactly the model's inputs, each ``(min, opt, max)`` of int shapes of the input's rank with
    ``0 < min <= opt <= max`` on every axis; anything else raises :class:`InvalidInputError`."""
    names = {t.name: t for t in inputs}
    if set(profile) != set(names):
        raise InvalidInputError(f"profile must give shapes for exactly the inputs {sorted(names)}, got {sorted(profile)}")
    out: Profile = {}
    for name, triple in profile.items():
        try:
            shapes = [list(s) for s in triple]
        except TypeError:
            shapes = []
        if len(shapes) != 3 or not all(is_int(d) for s in shapes for d in s):  # "64" is no dimension, nor 64.5
            raise InvalidInputError(f"profile[{name!r}] must be (min_shape, opt_shape, max_shape) of ints, got {triple!r}")
        mn, op, mx = (tuple(int(d) for d in s) for s in shapes)
        rank = len(names[name].dims)
        if not (len(mn) == len(op) == len(mx) == rank) or not all(0 < a <= b <= c for a, b, c in zip(mn, op, mx)):
            raise InvalidInputError(
                f"profile[{name!r}] needs three rank-{rank} shapes with 0 < min <= opt <= max, got {triple!r}"
            )
        out[name] = (mn, op, mx)
    return out
