"""Lists, iterators and generators of images, and the origins of the images ``predict`` takes directly.

An iterable is advanced in the caller's thread, one item per frame, only when the frame is needed:
a generator is never run ahead of what the Predictor is about to infer (``batch`` items at most),
and is never advanced by another thread. Items are anything :func:`load_image` takes (paths, bytes,
PIL images, arrays in the Predictor's channel order), or :class:`Frame` objects, which keep their
own origin (so ``predict(iter_frames(url, timeout=2))`` keeps a video's frame indexes).
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Iterator, Sequence, Sized

from .._images import load_image
from .frames import Frame, Origin

__all__ = ["describe_items", "item_origin", "iterable_frames"]


def item_origin(item: Any, position: int | None) -> Origin:
    """The origin of one image given directly: a file's absolute path, or an in-memory image."""
    if isinstance(item, (str, os.PathLike)):
        return Origin("file", os.path.abspath(os.fspath(item)), position)
    return Origin("memory", None, position)


def _info(origin: Origin, k: int, total: int) -> str:
    return f"image {k}/{total} {origin.path}: " if origin.kind == "file" else ""


def describe_items(items: Sequence[Any], single: bool) -> tuple[list[Origin], list[str]]:
    """Origins and verbose prefixes of a list of images (``single``: one image given alone)."""
    origins = [item_origin(item, None if single else i) for i, item in enumerate(items)]
    return origins, [_info(o, k, len(items)) for k, o in enumerate(origins, 1)]


def iterable_frames(items: Iterable[Any], channels: str) -> Iterator[Frame]:
    """Each item as a decoded frame; when this generator is closed early (the caller stopped, an
    item failed), a generator given as ``items`` is closed too, as ``yield from`` would (so an
    :func:`iter_frames` passed in releases its camera or file)."""
    total = len(items) if isinstance(items, Sized) else "?"
    it = iter(items)
    try:
        for i, item in enumerate(it):
            if isinstance(item, Frame):
                yield item
                continue
            origin = item_origin(item, i)
            info = f"image {i + 1}/{total} {origin.path}: " if origin.path else ""
            yield Frame(load_image(item, channels), origin, info)
    finally:
        close = getattr(it, "close", None)
        if close is not None:
            close()
