"""Each result's origin, and the ``verbose`` log lines in Ultralytics' words.

modelserve logs to the ``modelserve`` logger, which has a ``NullHandler``: a library stays silent
unless the application configures logging. ``predict(..., verbose=True)`` logs one INFO line per
image, as Ultralytics prints it (``image 1/2 /data/bus.jpg: 320x256 2 persons, 1 bus, 18.2ms``;
``0: 320x256 ...`` for in-memory images and live streams; ``video 1/1 (frame 3/90) ...``), and
after the last image the ``Speed: ...`` line. Where the application's logging would not show them
(no handler configured, or INFO not enabled for ``modelserve``), those lines go to stderr instead:
``verbose=True`` always shows them.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable, Sequence

import numpy as np

from .frames import Origin

__all__ = ["LOGGER", "Report", "describe", "emit"]

LOGGER = logging.getLogger("modelserve")
LOGGER.addHandler(logging.NullHandler())

_STAGES = ("preprocess", "inference", "postprocess")


def describe(result: Any) -> str:
    """Ultralytics' ``Results.verbose()``: ``"2 persons, 1 bus, "``, ``"(no detections), "``, or for
    a classification the five best classes ``"dog 0.92, cat 0.05, ..., "``."""
    names = getattr(result, "names", {}) or {}
    probs = getattr(result, "probs", None)
    if probs is not None:
        top5 = [int(i) for i in np.argsort(-np.asarray(probs), kind="stable")[:5]]
        return "".join(f"{names.get(j, str(j))} {float(probs[j]):.2f}, " for j in top5)
    class_id = np.asarray(getattr(result, "class_id", ()), dtype=np.int64)
    if class_id.size == 0:
        return "(no detections), "
    counts = np.bincount(class_id.clip(0))
    return "".join(f"{n} {names.get(i, str(i))}{'s' * (n > 1)}, " for i, n in enumerate(counts.tolist()) if n > 0)


def _configured(logger: logging.Logger) -> bool:
    """Whether a handler other than a NullHandler would see this logger's records."""
    node: logging.Logger | None = logger
    while node is not None:
        if any(not isinstance(h, logging.NullHandler) for h in node.handlers):
            return True
        node = node.parent if node.propagate else None
    return False


def emit(line: str) -> None:
    """Log ``line`` at INFO where the application's logging shows INFO records of ``modelserve``;
    else write it to stderr (``verbose=True`` asked to see it)."""
    if LOGGER.isEnabledFor(logging.INFO) and _configured(LOGGER):
        LOGGER.info(line)
    else:
        print(line, file=sys.stderr, flush=True)


class Report:
    """Gives each result its origin and, with ``verbose``, logs its line; :meth:`finish` logs the
    ``Speed`` line. ``input_hw(orig_shape)`` is the model-input size an image of that size used."""

    def __init__(self, verbose: bool, input_hw: Callable[[tuple[int, int]], tuple[int, int]]) -> None:
        self.verbose = verbose
        self._input_hw = input_hw
        self._totals = [0.0, 0.0, 0.0]
        self._seen = 0
        self._last: tuple[int, int, int] = (0, 0, 0)

    def add(self, results: Sequence[Any], origins: Sequence[Origin], infos: Sequence[str]) -> Sequence[Any]:
        for i, (result, origin, info) in enumerate(zip(results, origins, infos)):
            object.__setattr__(result, "origin", origin)  # results are frozen dataclasses
            if not self.verbose:
                continue
            speed = getattr(result, "speed", {}) or {}
            h, w = self._input_hw(tuple(result.orig_shape))
            emit(f"{info or f'{i}: '}{h}x{w} {describe(result)}{float(speed.get('inference', 0.0)):.1f}ms")
            self._totals = [t + float(speed.get(k, 0.0)) for t, k in zip(self._totals, _STAGES)]
            self._seen += 1
            self._last = (max(self._last[0], len(results)), h, w)  # the batch size, as Ultralytics shows it
        return results

    def finish(self) -> None:
        if self.verbose and self._seen:
            b, h, w = self._last
            pre, inf, post = (t / self._seen for t in self._totals)
            emit(f"Speed: {pre:.1f}ms preprocess, {inf:.1f}ms inference, {post:.1f}ms postprocess per image "
                 f"at shape {(b, 3, h, w)}")
