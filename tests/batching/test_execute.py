"""Error isolation (modelserve/batching/execute.py) without threads: bisection on exceptions and
its exact cost in calls, exception instances in results, results that are not sequences."""

from __future__ import annotations

import math

import numpy as np
import pytest

from modelserve import BatchResultError
from modelserve.batching.execute import as_results, call_isolated

from .test_batcher import _poison_fn as poisoned


def test_a_clean_batch_is_one_call():
    calls: list[list[int]] = []
    outcomes, n = call_isolated(poisoned(set(), calls), [1, 2, 3], "b")
    assert outcomes == [(None, 10), (None, 20), (None, 30)]
    assert n == 1 and calls == [[1, 2, 3]]


def test_one_poisoned_item_among_16_costs_2_log2_n_extra_calls():
    calls: list[list[int]] = []
    outcomes, n = call_isolated(poisoned({5}, calls), list(range(16)), "b")
    assert [value for error, value in outcomes if error is None] == [10 * x for x in range(16) if x != 5]
    errors = [error for error, _ in outcomes]
    assert isinstance(errors[5], ValueError) and str(errors[5]) == "poisoned item 5"
    assert sum(e is not None for e in errors) == 1
    assert n == len(calls) == 1 + 2 * int(math.log2(16))
    assert [5] in calls  # the poisoned item failed on its own


@pytest.mark.parametrize("size", [1, 2, 3, 7, 16, 33])
def test_every_item_poisoned_costs_at_most_2n_minus_1_calls(size):
    calls: list[list[int]] = []
    outcomes, n = call_isolated(poisoned(set(range(size)), calls), list(range(size)), "b")
    assert [str(error) for error, _ in outcomes] == [f"poisoned item {x}" for x in range(size)]
    assert n == len(calls) == 2 * size - 1


def test_returned_exception_instances_fail_only_their_item():
    error = KeyError("bad")
    outcomes, n = call_isolated(lambda xs: [x if x != 2 else error for x in xs], [1, 2, 3], "b")
    assert outcomes == [(None, 1), (error, None), (None, 3)] and n == 1


def test_fn_gets_a_fresh_list_each_call():
    seen: list[list[int]] = []

    def fn(items: list[int]) -> list[int]:
        seen.append(items)
        out = list(items)
        items.clear()  # consuming its argument must not break the retry of the halves
        if len(out) > 1:
            raise RuntimeError("retry")
        return out

    outcomes, n = call_isolated(fn, [1, 2, 3, 4], "b")
    assert outcomes == [(None, 1), (None, 2), (None, 3), (None, 4)] and n == 7


@pytest.mark.parametrize(
    "result, got",
    [({1: 1, 2: 2}, "a dict (not a sequence)"), ("ab", "a str (not a sequence)"), (np.array(7), "a ndarray (not a sequence)"),
     ([1], "a list of length 1"), ((x for x in [1, 2]), "a generator (not a sequence)")],
    ids=["dict", "str", "0d-array", "short", "generator"],
)
def test_a_result_that_is_not_one_per_item_fails_the_call_without_retry(result, got):
    calls = []

    def fn(items):
        calls.append(items)
        return result

    outcomes, n = call_isolated(fn, [1, 2], "modelserve-batcher-9")
    assert n == 1 and len(calls) == 1
    assert [(type(e), v) for e, v in outcomes] == [(BatchResultError, None)] * 2
    assert outcomes[0][0] is not outcomes[1][0]  # one instance per caller
    assert str(outcomes[0][0]).startswith(f"modelserve-batcher-9: fn returned {got} for a batch of 2 items")


def test_a_base_exception_propagates():
    def fn(items):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_isolated(fn, [1, 2], "b")


@pytest.mark.parametrize(
    "results, expected",
    [([1, 2], [1, 2]), ((1, 2), [1, 2]), (np.array([1, 2]), [1, 2]), (range(2), [0, 1]),
     ({1: 2}, None), ({1, 2}, None), ("ab", None), (b"ab", None), (bytearray(b"ab"), None),
     (memoryview(b"ab"), None), (np.float32(1.0), None), (np.array(1), None), (iter([1]), None)],
)
def test_as_results_reads_only_ordered_sequences(results, expected):
    got = as_results(results)
    if expected is None:
        assert got is None
    else:
        assert got is not None and [int(v) for v in got] == expected
