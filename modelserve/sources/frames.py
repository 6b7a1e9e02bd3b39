"""What every source yields: a decoded :class:`Frame` and the :class:`Origin` of its pixels."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

from .._images import Image

__all__ = ["Frame", "Origin", "IMG_FORMATS", "VID_FORMATS", "KINDS"]

#: File suffixes read as still images and as videos in folders, globs and list files (Ultralytics'
#: ``IMG_FORMATS`` and ``VID_FORMATS``). A single path is a video only for a suffix in
#: ``VID_FORMATS`` other than ``gif`` (a single GIF stays one image, as ``predict`` always read it).
IMG_FORMATS = frozenset({"avif", "bmp", "dng", "heic", "heif", "jp2", "jpeg", "jpg", "mpo", "png", "tif", "tiff",
                         "webp"})
VID_FORMATS = frozenset({"asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "wmv", "webm"})

#: ``Origin.kind`` values: an image file, an image fetched from a URL, a frame of a video file (or of
#: a video URL), a frame of a live stream (camera, ``rtsp://``, HTTP MJPEG), an in-memory image.
KINDS = ("file", "url", "video", "stream", "memory")


@dataclass(frozen=True)
class Origin:
    """Where one result's pixels came from.

    * ``kind``: one of :data:`KINDS`
    * ``path``: the file's absolute path, the URL, the camera device; None for in-memory images
    * ``frame``: the frame's 0-based index in its video or live stream (every decoded frame counts,
      also those ``vid_stride`` skips), or the item's position in a list or iterable; None for a
      still image given on its own or found in a folder
    * ``timestamp``: seconds: from the start of the video for video frames (presentation time), the
      Unix time the frame was decoded for live streams; None otherwise
    """

    kind: str
    path: str | None = None
    frame: int | None = None
    timestamp: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain Python types, for JSON."""
        return {"kind": self.kind, "path": self.path, "frame": self.frame, "timestamp": self.timestamp}


class Frame(NamedTuple):
    """One decoded image and its origin. ``info`` is the prefix of its verbose log line, as
    Ultralytics writes it (``"image 2/5 /data/b.jpg: "``, ``"video 1/1 (frame 3/90) /data/v.mp4: "``),
    or ``""`` where the line starts with the image's position in its batch (``"0: "``)."""

    image: Image
    origin: Origin
    info: str = ""
