"""The batcher's counters (:class:`Counters`) and their public snapshot (:class:`BatcherStats`).

``Counters`` is plain bookkeeping with no lock of its own: the batcher updates it under its lock
and takes a :meth:`Counters.copy` there; :meth:`Counters.snapshot` (sorting the latency samples
for percentiles) then runs outside the lock.
"""

from __future__ import annotations

import enum
import math
from collections import deque
from dataclasses import dataclass

__all__ = ["BatcherStats", "BatchRecord", "Counters", "Outcome", "SAMPLES"]

#: Wait and exec time samples kept for percentiles (the most recent ones).
SAMPLES = 4096


class Outcome(enum.IntEnum):
    """How an accepted request ended (each ends in exactly one); an index into
    :attr:`Counters.ended`."""

    SUCCEEDED = 0  # fn gave it a result
    FAILED = 1  # fn failed it (an exception, raised or returned)
    EXPIRED = 2  # its deadline passed before it ran
    CANCELLED = 3  # its future was cancelled before it ran
    ABORTED = 4  # failed by close() or a dead loop before it ran


@dataclass(frozen=True)
class BatchRecord:
    """One batch a batcher ran, as its observers see it: ``size`` items, each having waited
    ``waits_s[i]`` seconds from submission to the start of the batch, run in ``exec_s`` seconds
    (retries of failing items included), ``failed`` of them failed by ``fn``."""

    size: int
    waits_s: tuple[float, ...]
    exec_s: float
    failed: int


@dataclass(frozen=True)
class BatcherStats:
    """A snapshot of a :class:`MicroBatcher`'s counters (all since construction).

    Every accepted request ends in exactly one of ``succeeded``, ``failed`` (``fn`` failed it),
    ``expired`` (deadline passed before it ran), ``cancelled`` (never ran) or ``aborted`` (failed
    by ``close`` or a dead loop before it ran); until then it is queued or running. So
    ``submitted == succeeded + failed + expired + cancelled + aborted + queue_depth + <running>``.
    ``rejected`` counts :class:`QueueFullError` refusals, which are not in ``submitted``.
    ``fn_calls - batches`` is the number of extra calls made to isolate failing items.
    Wait time is submission to start of its batch; exec time is one batch from first call of ``fn``
    to last (retries included). Percentiles cover the most recent 4096 samples; ``None`` if none.
    """

    queue_depth: int
    in_flight_batches: int
    submitted: int
    batches: int
    items: int
    fn_calls: int
    batch_size_histogram: dict[int, int]
    succeeded: int
    failed: int
    rejected: int
    expired: int
    cancelled: int
    aborted: int
    wait_ms_p50: float | None
    wait_ms_p99: float | None
    exec_ms_p50: float | None
    exec_ms_p99: float | None
    closed: bool

    @property
    def mean_batch_size(self) -> float:
        """Items run per batch, on average (``0.0`` before the first batch)."""
        return self.items / self.batches if self.batches else 0.0


def percentile_ms(samples: list[float], q: float) -> float | None:
    """The ``q`` quantile (nearest rank) of ``samples`` in seconds, as milliseconds; sorts
    ``samples`` in place. ``None`` when there are none."""
    if not samples:
        return None
    samples.sort()
    rank = min(len(samples) - 1, max(0, math.ceil(q * len(samples)) - 1))
    return samples[rank] * 1000.0


class Counters:
    """Every count a :class:`BatcherStats` reports, except the live ones (queue depth, batches
    running, closed), which the batcher passes to :meth:`snapshot`."""

    __slots__ = ("submitted", "rejected", "batches", "items", "fn_calls", "histogram", "ended",
                 "wait_samples", "exec_samples")

    def __init__(self) -> None:
        self.submitted = 0  # accepted requests
        self.rejected = 0  # QueueFullError refusals (not accepted)
        self.batches = 0
        self.items = 0
        self.fn_calls = 0
        self.histogram: dict[int, int] = {}  # batch size -> batches of that size
        self.ended = [0] * len(Outcome)  # requests per Outcome
        self.wait_samples: deque[float] = deque(maxlen=SAMPLES)  # seconds
        self.exec_samples: deque[float] = deque(maxlen=SAMPLES)  # seconds

    def end(self, outcome: Outcome, n: int = 1) -> None:
        """``n`` requests ended with ``outcome``."""
        self.ended[outcome] += n

    def recount(self, counted: Outcome, actual: Outcome, n: int) -> None:
        """``n`` requests counted as ``counted`` ended as ``actual`` instead (a request taken to
        be failed that its caller cancelled first)."""
        self.ended[counted] -= n
        self.ended[actual] += n

    def record_batch(self, waits: list[float], exec_s: float, calls: int, failed: int) -> None:
        """A batch ran: one wait per item (seconds from submission to the batch's start), the
        batch's exec time, the calls of ``fn`` it took and how many of its items failed."""
        n = len(waits)
        self.batches += 1
        self.items += n
        self.fn_calls += calls
        self.histogram[n] = self.histogram.get(n, 0) + 1
        self.ended[Outcome.SUCCEEDED] += n - failed
        self.ended[Outcome.FAILED] += failed
        self.wait_samples.extend(waits)
        self.exec_samples.append(exec_s)

    def copy(self) -> Counters:
        """An independent copy (cheap: taken under the batcher's lock)."""
        other = Counters()
        other.submitted, other.rejected = self.submitted, self.rejected
        other.batches, other.items, other.fn_calls = self.batches, self.items, self.fn_calls
        other.histogram = dict(self.histogram)
        other.ended = list(self.ended)
        other.wait_samples = self.wait_samples.copy()
        other.exec_samples = self.exec_samples.copy()
        return other

    def snapshot(self, *, queue_depth: int, in_flight_batches: int, closed: bool) -> BatcherStats:
        """These counts, with the live ones given, as a :class:`BatcherStats`."""
        waits, execs = list(self.wait_samples), list(self.exec_samples)
        ended = self.ended
        return BatcherStats(
            queue_depth=queue_depth,
            in_flight_batches=in_flight_batches,
            submitted=self.submitted,
            batches=self.batches,
            items=self.items,
            fn_calls=self.fn_calls,
            batch_size_histogram=dict(sorted(self.histogram.items())),
            succeeded=ended[Outcome.SUCCEEDED],
            failed=ended[Outcome.FAILED],
            rejected=self.rejected,
            expired=ended[Outcome.EXPIRED],
            cancelled=ended[Outcome.CANCELLED],
            aborted=ended[Outcome.ABORTED],
            wait_ms_p50=percentile_ms(waits, 0.50),
            wait_ms_p99=percentile_ms(waits, 0.99),
            exec_ms_p50=percentile_ms(execs, 0.50),
            exec_ms_p99=percentile_ms(execs, 0.99),
            closed=closed,
        )
