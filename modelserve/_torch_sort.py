"""Descending sorts in torch's exact order, ties included (NumPy; the oracle of the kernels' sorts).

:func:`sort_order` is torch's stable descending sort; :func:`torch_sort_order` its unstable one,
which on CPU is libstdc++'s ``std::sort``: exactly tied scores come out in the order that
introsort leaves them, emulated here step by step (:func:`_std_sort`), so that the NumPy backend
keeps the same detections as torch and the compiled kernels wherever scores tie.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sort_order", "torch_sort_order"]


def _desc_keys(scores: np.ndarray) -> np.ndarray:
    """uint32 keys (as int64) whose ascending order is torch's descending order of float32
    ``scores``: every NaN first (key 0), then from +inf down, ``-0.0 == 0.0``. Equal keys are exactly
    the pairs torch's comparator ``(isnan(l) && !isnan(r)) || l > r`` finds equivalent."""
    s = np.where(scores == 0, np.float32(0), scores).astype(np.float32)  # -0.0 -> +0.0
    u = s.view(np.uint32).astype(np.uint64)
    neg = (u & 0x80000000) != 0
    asc = np.where(neg, (~u) & 0xFFFFFFFF, u | 0x80000000)  # ascending float order
    key = (~asc) & 0xFFFFFFFF  # descending
    key[np.isnan(s)] = 0
    return key.astype(np.int64)


def sort_order(scores: np.ndarray) -> np.ndarray:
    """Indices that sort ``scores`` (float32) like ``torch.sort(stable=True, descending=True)``:
    descending, ties in input order, ``-0.0 == 0.0``, every NaN first (NaN counts as the largest)."""
    return np.argsort(_desc_keys(scores), kind="stable")


def torch_sort_order(scores: np.ndarray) -> np.ndarray:
    """Indices that sort ``scores`` (float32) like torch's CPU ``sort(descending=True)`` /
    ``argsort(descending=True)`` (``stable=False``): the order of :func:`sort_order`, except that
    exactly tied scores (all NaNs count as tied, and ``-0.0`` with ``0.0``) come out in the order
    libstdc++'s ``std::sort`` leaves them, which is what torch (and the compiled kernels) run.

    Without ties every sort gives the same result, so only an input with ties runs the (pure
    Python, step-by-step) emulation of ``std::sort`` in :func:`_std_sort`.
    """
    key = _desc_keys(scores)
    order = np.argsort(key, kind="stable")
    if key.size < 2:
        return order
    sorted_key = key[order]
    if not (sorted_key[1:] == sorted_key[:-1]).any():
        return order
    # Dense ranks (small ints compare faster than 32-bit ones; same order and same ties).
    rank = np.empty(key.size, dtype=np.int64)
    rank[order] = np.concatenate(([0], np.cumsum(sorted_key[1:] != sorted_key[:-1])))
    return np.asarray(_std_sort(rank.tolist()), dtype=np.int64)


#: libstdc++'s ``_S_threshold``: introsort leaves ranges of at most this many elements to the final
#: insertion sort.
_S_THRESHOLD = 16


def _std_sort(keys: list[int]) -> list[int]:
    """The permutation ``std::sort(first, last, comp)`` of libstdc++ (GCC 12, ``bits/stl_algo.h`` and
    ``bits/stl_heap.h``) produces on elements ``(keys[i], i)`` with ``comp(a, b) = a.key < b.key``:
    the returned list holds the original index of each sorted position.

    Every helper is transcribed from libstdc++, comparison for comparison and move for move:
    ``__introsort_loop`` (depth limit ``2 * __lg(n)``, ``_S_threshold`` 16) with
    ``__unguarded_partition_pivot`` (``__move_median_to_first(first, first + 1, mid, last - 1)``,
    then ``__unguarded_partition``), the heap-sort fallback ``__partial_sort(first, last, last)``
    (``__make_heap`` + ``__sort_heap`` via ``__pop_heap``/``__adjust_heap``/``__push_heap``), and
    ``__final_insertion_sort`` (``__insertion_sort`` of the first 16, then
    ``__unguarded_insertion_sort``). ``k`` and ``v`` are the key and index halves of the array; a
    ``std::move`` of an element moves both. It is one long function on purpose: the helpers are
    closures over the same two arrays, laid out as in ``stl_algo.h`` so that each can be checked
    against its C++ original line by line.
    """
    n = len(keys)
    k = list(keys)
    v = list(range(n))
    if n < 2:
        return v

    def push_heap(first: int, hole: int, top: int, vk: int, vv: int) -> None:
        # __push_heap(first, holeIndex, topIndex, value, __iter_comp_val(comp))
        parent = (hole - 1) // 2  # only used while hole > top >= 0, where // matches C++'s /
        while hole > top and k[first + parent] < vk:
            k[first + hole] = k[first + parent]
            v[first + hole] = v[first + parent]
            hole = parent
            parent = (hole - 1) // 2
        k[first + hole] = vk
        v[first + hole] = vv

    def adjust_heap(first: int, hole: int, length: int, vk: int, vv: int) -> None:
        top = hole
        second = hole
        while second < (length - 1) // 2:  # length >= 1: // matches C++'s /
            second = 2 * (second + 1)
            if k[first + second] < k[first + second - 1]:
                second -= 1
            k[first + hole] = k[first + second]
            v[first + hole] = v[first + second]
            hole = second
        if (length & 1) == 0 and second == (length - 2) // 2:
            second = 2 * (second + 1)
            k[first + hole] = k[first + second - 1]
            v[first + hole] = v[first + second - 1]
            hole = second - 1
        push_heap(first, hole, top, vk, vv)

    def heap_sort(first: int, last: int) -> None:
        # __partial_sort(first, last, last) = __heap_select (only __make_heap when middle == last)
        # + __sort_heap.
        length = last - first
        if length >= 2:  # __make_heap
            parent = (length - 2) // 2
            while True:
                adjust_heap(first, parent, length, k[first + parent], v[first + parent])
                if parent == 0:
                    break
                parent -= 1
        while last - first > 1:  # __sort_heap: __pop_heap(first, last, last) each time
            last -= 1
            vk, vv = k[last], v[last]
            k[last] = k[first]
            v[last] = v[first]
            adjust_heap(first, 0, last - first, vk, vv)

    def partition_pivot(first: int, last: int) -> int:
        # __move_median_to_first(first, a = first + 1, b = mid, c = last - 1)
        a, b, c = first + 1, first + (last - first) // 2, last - 1
        ka, kb, kc = k[a], k[b], k[c]
        if ka < kb:
            if kb < kc:
                m = b
            elif ka < kc:
                m = c
            else:
                m = a
        elif ka < kc:
            m = a
        elif kb < kc:
            m = c
        else:
            m = b
        k[first], k[m] = k[m], k[first]  # iter_swap(first, m)
        v[first], v[m] = v[m], v[first]
        # __unguarded_partition(first + 1, last, pivot = first): the pivot element stays at first.
        pk = k[first]
        lo, hi = first + 1, last
        while True:
            while k[lo] < pk:
                lo += 1
            hi -= 1
            while pk < k[hi]:
                hi -= 1
            if not lo < hi:
                return lo
            k[lo], k[hi] = k[hi], k[lo]
            v[lo], v[hi] = v[hi], v[lo]
            lo += 1

    def introsort_loop(first: int, last: int, depth_limit: int) -> None:
        while last - first > _S_THRESHOLD:
            if depth_limit == 0:
                heap_sort(first, last)
                return
            depth_limit -= 1
            cut = partition_pivot(first, last)
            introsort_loop(cut, last, depth_limit)
            last = cut

    def unguarded_linear_insert(last: int) -> None:
        vk, vv = k[last], v[last]  # __val = std::move(*last)
        nxt = last - 1
        while vk < k[nxt]:
            k[last] = k[nxt]
            v[last] = v[nxt]
            last = nxt
            nxt -= 1
        k[last] = vk
        v[last] = vv

    def insertion_sort(first: int, last: int) -> None:
        for i in range(first + 1, last):
            if k[i] < k[first]:
                vk, vv = k[i], v[i]
                k[first + 1 : i + 1] = k[first:i]  # std::move_backward(first, i, i + 1)
                v[first + 1 : i + 1] = v[first:i]
                k[first] = vk
                v[first] = vv
            else:
                unguarded_linear_insert(i)

    introsort_loop(0, n, 2 * (n.bit_length() - 1))  # std::__lg(n) * 2
    # __final_insertion_sort
    if n > _S_THRESHOLD:
        insertion_sort(0, _S_THRESHOLD)
        for i in range(_S_THRESHOLD, n):  # __unguarded_insertion_sort
            unguarded_linear_insert(i)
    else:
        insertion_sort(0, n)
    return v
