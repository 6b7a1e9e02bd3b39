"""Sources of images for ``Predictor.predict``: files, folders, globs, list files, URLs, videos,
cameras, live streams and iterables, each read into decoded :class:`Frame` objects.

====================================  ==========================================================
source                                read as
====================================  ==========================================================
an array, bytes, a PIL image          one image (``channels`` tells an array's channel order)
an image path                         one image (a single ``.gif`` too)
a folder, a glob (``*``, ``**``)      its images, sorted, then its videos (``files``)
a ``.txt`` / ``.csv`` list file       the files, folders and globs it lists (``files``)
a video path (``.mp4``, ``.mkv``...)  its frames, decoded by PyAV (``video``)
``http(s)://``                        an image (fetched, limited in size and time), a live MJPEG
                                      stream (``multipart/x-mixed-replace``), or a video
                                      (``video/*`` or a video suffix, read from the URL) (``urls``)
``rtsp://``, ``rtmp://``, ``tcp://``  a live stream (``video``)
a camera index (``0``, ``"0"``)       a live stream from ``/dev/videoN`` (v4l2) or avfoundation
a list, iterator or generator         its items, each an image or a :class:`Frame` (``iterables``)
====================================  ==========================================================

Files, videos and streams are read by a thread into a bounded queue (:mod:`.readahead`), so
memory stays bounded however long the video; iterables are advanced in the caller's thread, as
far as needed. Every frame carries its :class:`Origin` (kind, path or URL, frame index, timestamp).
Errors are typed: :class:`SourceError` (a subclass of :class:`InvalidInputError`) for a source
that cannot be read, :class:`InvalidInputError` for an image that does not decode.

    >>> for frame in iter_frames("clip.mp4", vid_stride=2):
    ...     frame.image.pixels, frame.origin.frame, frame.origin.timestamp
"""

from __future__ import annotations

from typing import Any, Iterator

from .feed import feed, one_source
from .frames import IMG_FORMATS, KINDS, VID_FORMATS, Frame, Origin
from .iterables import describe_items
from .report import LOGGER, Report
from .resolve import READ_AHEAD, RECONNECT, TIMEOUT, Source, is_one_image, open_source

__all__ = ["Frame", "Origin", "Source", "iter_frames", "open_source", "IMG_FORMATS", "VID_FORMATS", "KINDS",
           "READ_AHEAD", "TIMEOUT", "RECONNECT",
           # for the Predictor
           "is_one_image", "one_source", "describe_items", "feed", "Report", "LOGGER"]


def iter_frames(source: Any, **options: Any) -> Iterator[Frame]:
    """The frames of ``source`` (options as for :func:`open_source`); the source is closed when the
    generator ends or is closed."""
    with open_source(source, **options) as src:
        yield from src
