"""Feeding a source's frames to a predict function, ``batch`` frames per call."""

from __future__ import annotations

from typing import Any, Callable, Iterator

from .._errors import InvalidInputError
from .._images import Image
from .report import Report

__all__ = ["feed", "one_source"]


def one_source(images: Any, source: Any) -> Any:
    """``predict(images)`` or ``predict(source=...)``: exactly one of them."""
    if source is None and images is None:
        raise InvalidInputError("predict() needs an image or a source: an image must be a path, bytes, a PIL.Image "
                                "or a uint8 numpy array (other sources: see modelserve.sources), got None")
    if source is not None and images is not None:
        raise InvalidInputError("pass the images positionally or as source=, not both")
    return images if source is None else source


def feed(src: Any, run: Callable[[list[Image], bool], list[Any]], batch: int, report: Report) -> Iterator[Any]:
    """Results of ``src``'s frames: ``run(images, admitted)`` on ``batch`` frames at a time
    (``admitted``: an earlier batch of this source already ran), each result given its origin by
    ``report``. The source is closed when the generator ends, fails or is closed early."""
    with src:
        frames = iter(src)
        admitted = False
        while True:
            chunk = [f for _, f in zip(range(batch), frames)]
            if not chunk:
                break
            results = run([f.image for f in chunk], admitted)
            admitted = True
            yield from report.add(results, [f.origin for f in chunk], [f.info for f in chunk])
    report.finish()
