"""The options of a :class:`~modelserve.MicroBatcher` (:class:`Batching`) and their checks.

``check_int`` and ``check_ms`` are shared with the batcher, which validates per-request
``timeout_ms`` and ``close(timeout_s=...)`` the same way.
"""

from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass
from typing import Literal

from .._checks import is_int
from .._errors import InvalidInputError

__all__ = ["Batching", "MAX_WORKERS", "check_int", "check_ms", "default_concurrent_batches"]

#: The most ``max_concurrent_batches``: each is an OS thread.
MAX_WORKERS = 1024


def check_int(name: str, value: object) -> int:
    """An integer >= 1 (Python or numpy, not a bool), as an ``int``."""
    if not is_int(value) or int(value) < 1:  # type: ignore[call-overload]
        raise InvalidInputError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_ms(name: str, value: object, *, allow_zero: bool, allow_inf: bool,
             unit: str = "milliseconds") -> float:
    """A duration as a float: a real number (not a bool, not NaN), ``> 0`` (or ``>= 0`` with
    ``allow_zero``), finite unless ``allow_inf``. An int beyond float's range (``10**400``) is
    as good as infinite."""
    bound = ">= 0" if allow_zero else "> 0"
    kind = "a number" if allow_inf else "a finite number"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InvalidInputError(f"{name} must be {kind} {bound} ({unit}), got {value!r}")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf if value > 0 else -math.inf  # type: ignore[operator]
    if math.isnan(v) or v < 0 or (v == 0 and not allow_zero) or (math.isinf(v) and not allow_inf):
        raise InvalidInputError(f"{name} must be {kind} {bound} ({unit}), got {value!r}")
    return v


@dataclass(frozen=True)
class Batching:
    """Options of a :class:`MicroBatcher`, validated on construction (:class:`InvalidInputError`).

    ``max_batch_size``: most items per call of ``fn`` (>= 1).
    ``max_delay_ms``: how long the oldest queued item of a group may wait for companions before
    its batch fires anyway (>= 0; ``0`` is greedy: run whatever is queued as soon as a worker is free).
    ``max_queue_size``: most requests waiting (not yet running); ``None`` means
    ``8 * max_batch_size * max_concurrent_batches`` (see :attr:`queue_bound`).
    ``max_concurrent_batches``: worker threads, i.e. calls of ``fn`` that may run at once (1..1024).
    ``timeout_ms``: default deadline of a request, counted from its submission; ``None`` (or
    ``inf``): no deadline.
    ``on_full``: ``"reject"`` (raise :class:`QueueFullError` at once) or ``"block"`` (wait for room).

    ``MicroBatcher(fn, group_key=key, **dataclasses.asdict(batching))`` builds a batcher from it.
    """

    max_batch_size: int = 32
    max_delay_ms: float = 0.0
    max_queue_size: int | None = None
    max_concurrent_batches: int = 1
    timeout_ms: float | None = None
    on_full: Literal["reject", "block"] = "reject"

    def __post_init__(self) -> None:
        put = object.__setattr__
        put(self, "max_batch_size", check_int("max_batch_size", self.max_batch_size))
        put(self, "max_delay_ms", check_ms("max_delay_ms", self.max_delay_ms, allow_zero=True, allow_inf=False))
        if self.max_queue_size is not None:
            put(self, "max_queue_size", check_int("max_queue_size", self.max_queue_size))
        put(self, "max_concurrent_batches", check_int("max_concurrent_batches", self.max_concurrent_batches))
        if self.max_concurrent_batches > MAX_WORKERS:
            raise InvalidInputError(f"max_concurrent_batches must be at most {MAX_WORKERS} (one thread each), "
                                    f"got {self.max_concurrent_batches}")
        if self.timeout_ms is not None:
            put(self, "timeout_ms", check_ms("timeout_ms", self.timeout_ms, allow_zero=False, allow_inf=True))
        if self.on_full not in ("reject", "block"):
            raise InvalidInputError(f"on_full must be 'reject' or 'block', got {self.on_full!r}")

    @property
    def queue_bound(self) -> int:
        """The effective queue bound: ``max_queue_size``, or its default when that is ``None``."""
        if self.max_queue_size is not None:
            return self.max_queue_size
        return 8 * self.max_batch_size * self.max_concurrent_batches



def default_concurrent_batches(device: str) -> int:
    """How many engine batches of one model run at once by default (``modelserve serve``, and
    ``ms.load(batching=True)``): on the CPU one per core, at most 4 (with 4+ callers on 2 cores, 2
    workers gave 72 images/s against 55-62 for one, ``benchmarks/RESULTS.md`` "Cores"); on a GPU 1
    (one stream, one context)."""
    if not str(device).startswith("cpu"):
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(4, cores))
