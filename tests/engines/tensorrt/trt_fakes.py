"""Fakes of TensorRT's named-tensor engine, execution context and builder config, shared by the
TensorRT tests (imported by name: pytest puts this folder on sys.path)."""

from __future__ import annotations

import types

import numpy as np

F32 = np.dtype(np.float32)


class FakeEngine:
    """A deserialised engine as TensorRT 10's named-tensor API shows it. ``profiles`` maps an
    input name to one (min, opt, max) per optimisation profile."""

    def __init__(self, tensors, profiles=None):
        self._t = tensors
        self._profiles = profiles or {}

    num_io_tensors = property(lambda self: len(self._t))
    num_optimization_profiles = property(lambda self: max([len(v) for v in self._profiles.values()] or [1]))

    def get_tensor_name(self, i):
        return self._t[i][0]

    def _get(self, name):
        return next(t for t in self._t if t[0] == name)

    def get_tensor_mode(self, name):
        return self._get(name)[1]

    def get_tensor_shape(self, name):
        return self._get(name)[2]

    def get_tensor_dtype(self, name):
        return self._get(name)[3]

    def get_tensor_profile_shape(self, name, profile):
        assert self._get(name)[1] == "IN" and -1 in self._get(name)[2], "only dynamic inputs have profiles"
        return self._profiles[name][profile]


FAKE_TRT = types.SimpleNamespace(
    TensorIOMode=types.SimpleNamespace(INPUT="IN", OUTPUT="OUT"),
    nptype=lambda dt: {"FLOAT": np.float32, "HALF": np.float16}[dt],
)
PROF = ([1, 3, 32, 32], [8, 3, 320, 320], [32, 3, 320, 320])


class FakeContext:
    """An execution context: output shapes follow the input's batch; ``unknown`` outputs stay -1
    (data-dependent)."""

    def __init__(self, unknown=()):
        self.shapes, self.unknown, self.profile = {}, set(unknown), 0

    def set_input_shape(self, name, shape):
        self.shapes[name] = tuple(shape)
        return True

    def get_tensor_shape(self, name):
        if name in self.shapes:
            return list(self.shapes[name])
        if name in self.unknown:
            return [-1, 6]
        return [self.shapes["images"][0], 22, 2100]


class FakeTimingCache:
    def __init__(self, data):
        self.data = data

    def serialize(self):
        return self.data


class FakeConfig:
    """The parts of IBuilderConfig the timing cache and flags use. ``bad``: how create/set treat a
    stored blob: "raise", "none" (create returns None) or "mismatch" (set returns False)."""

    def __init__(self, bad=None, empty_fails=False, serialized=b"TCACHE"):
        self.bad, self.empty_fails, self.serialized = bad, empty_fails, serialized
        self.attached = None
        self.flags = {"TF32"}  # TensorRT's default
        self.profiles = []
        self.pool_limits = {}

    def create_timing_cache(self, blob):
        blob = bytes(blob)
        if blob and self.bad == "raise":
            raise RuntimeError("corrupt timing cache")
        if blob and self.bad == "none" or not blob and self.empty_fails:
            return None
        return FakeTimingCache(blob)

    def set_timing_cache(self, cache, ignore_mismatch):
        assert ignore_mismatch is False
        if cache.data and self.bad == "mismatch":
            return False
        self.attached = cache
        return True

    def get_timing_cache(self):
        return FakeTimingCache(self.serialized) if self.attached is not None else None

    # flags, profiles and memory pools, for the builder fakes below
    def set_flag(self, flag):
        self.flags.add(flag)

    def clear_flag(self, flag):
        self.flags.discard(flag)

    def add_optimization_profile(self, profile):
        self.profiles.append(profile.shapes)
        return len(self.profiles) - 1

    def set_memory_pool_limit(self, pool, size):
        self.pool_limits[pool] = size
