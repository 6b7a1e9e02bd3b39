"""Calling the batch function with error isolation: bisection on exceptions, result checks.

No threads and no batcher state: :func:`call_isolated` is a function of ``fn`` and the items.
"""

from __future__ import annotations

from collections import abc
from typing import Any, Callable, Sequence

import numpy as np

from .._errors import BatchResultError

__all__ = ["ItemOutcome", "as_results", "call_isolated"]


#: One item's outcome: ``(error, None)``, or ``(None, value)`` on success (a plain tuple: one
#: is made per item on the hot path).
ItemOutcome = tuple[BaseException | None, Any]


def as_results(results: object) -> list[Any] | None:
    """``fn``'s result as a list, or None unless it is an ordered sequence of results: a list,
    a tuple, a numpy array with at least one dimension, or another ``Sequence`` that is not text
    or bytes. A dict, set, str or generator of the right length is refused, never read as results
    (a dict would hand out its keys)."""
    if isinstance(results, (list, tuple)):
        return list(results)
    if isinstance(results, np.ndarray):
        return list(results) if results.ndim >= 1 else None
    if isinstance(results, (str, bytes, bytearray, memoryview)) or not isinstance(results, abc.Sequence):
        return None
    try:
        return list(results)
    except Exception:  # noqa: BLE001 - a broken sequence is a broken result
        return None


def call_isolated(fn: Callable[[list[Any]], Sequence[Any]], items: list[Any],
                  name: str) -> tuple[list[ItemOutcome], int]:
    """Run ``fn(items)``; returns one outcome per item, in order, and the number of calls made.

    An element of the result that is an exception instance fails just its item. If ``fn``
    raises (an ``Exception``) for ``n > 1`` items, each half is run again, recursively, so only
    the items that fail on their own get an exception (the one ``fn`` raised for that item). A
    result that is not a sequence of ``n`` results (see :func:`as_results`) fails every item of
    that call with :class:`BatchResultError`, without retry. A ``BaseException`` that is not an
    ``Exception`` propagates. ``name`` prefixes the error messages.
    """
    outcomes: list[ItemOutcome] = []
    calls = _call(fn, items, name, outcomes)
    return outcomes, calls


def _call(fn: Callable[[list[Any]], Sequence[Any]], items: list[Any], name: str,
          outcomes: list[ItemOutcome]) -> int:
    n = len(items)
    try:
        results = fn(list(items))  # a list of its own: fn may consume it, a retry needs ``items``
    except Exception as exc:
        if n == 1:
            outcomes.append((exc, None))
            return 1
        mid = n // 2
        return 1 + _call(fn, items[:mid], name, outcomes) + _call(fn, items[mid:], name, outcomes)
    values = as_results(results)
    if values is None or len(values) != n:
        got = (f"a {type(results).__name__} of length {len(values)}" if values is not None
               else f"a {type(results).__name__} (not a sequence)")
        message = (f"{name}: fn returned {got} for a batch of {n} items; expected a "
                   f"sequence of {n} results, one per item (an exception instance fails just that item)")
        outcomes.extend((BatchResultError(message), None) for _ in range(n))
        return 1
    for value in values:
        if isinstance(value, BaseException):
            outcomes.append((value, None))
        else:
            outcomes.append((None, value))
    return 1
