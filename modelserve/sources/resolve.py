"""Resolving what users pass as a source into a :class:`Source` of frames (the table in
:mod:`modelserve.sources` says what each kind of source is read as)."""

from __future__ import annotations

import os
import re
import urllib.parse
from typing import Any, Callable, Iterator, NamedTuple

import numpy as np

from .. import _checks
from .._errors import InvalidInputError, SourceError
from .._images import load_image
from . import files, urls, video
from .frames import VID_FORMATS, Frame, Origin
from .iterables import describe_items, iterable_frames
from .readahead import ReadAhead

__all__ = ["READ_AHEAD", "RECONNECT", "TIMEOUT", "Source", "is_one_image", "open_source"]

#: Defaults: frames decoded ahead of inference; seconds a network open or read may wait; reconnect
#: attempts of a live stream after it failed.
READ_AHEAD = 4
TIMEOUT = 10.0
RECONNECT = 3

_IMAGE_TYPES = (np.ndarray, bytes, bytearray, memoryview)


class Source:
    """One opened source: iterate it (once) for its frames; ``close()`` (or ``with``) stops reading.

    ``single``: it is one still image (``predict`` returns one result for it); ``live``: a live
    stream, which never ends by itself (``predict`` needs ``stream=True``).
    """

    def __init__(self, name: str, frames: Callable[[], Iterator[Frame]], *, single: bool = False,
                 live: bool = False, threaded: bool = False, read_ahead: int = READ_AHEAD,
                 stall: float | None = None, camera: bool = False) -> None:
        self.name = name
        self.single = single
        self.live = live
        self.camera = camera
        self._frames = frames
        self._threaded = threaded
        self._read_ahead = read_ahead
        self._stall = stall
        self._it: Iterator[Frame] | None = None

    def __iter__(self) -> Iterator[Frame]:
        if self._it is not None:
            raise InvalidInputError(f"source {self.name} was already read; open it again")
        it = self._frames()
        if self._threaded:
            it = ReadAhead(it, self._read_ahead, name=self.name, drop_oldest=self.live, stall=self._stall)
        self._it = it
        return it

    def check_finite(self) -> None:
        """:class:`SourceError` (the source closed) for a live stream: it never ends, so no list of
        its results can be returned."""
        if self.live:
            self.close()
            camera = "a camera, not an image (an image must be a path, bytes, a PIL.Image or a uint8 numpy array): " \
                if self.camera else ""
            raise SourceError(f"{self.name} is {camera}a live stream, which never ends: use predict(..., stream=True) "
                              "and iterate over the results")

    def close(self) -> None:
        close = getattr(self._it, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        kind = "live" if self.live else "single image" if self.single else "frames"
        return f"<Source {self.name} ({kind})>"


def _redact(url: str) -> str:
    """``url`` without a password in its user part (it ends up in origins, errors and logs)."""
    return re.sub(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^/@:]*):[^/@]*@", r"\1:***@", url)


def _kind(source: Any) -> str:
    """What ``source`` is (no I/O but a ``stat``): image, camera, live, url, files, video, iterable."""
    if isinstance(source, _IMAGE_TYPES):
        return "image"
    if isinstance(source, bool) or isinstance(source, np.bool_):
        raise InvalidInputError(f"a source must be an image, a path, a URL, a camera index or an iterable, got {source!r}")
    if _checks.is_int(source):
        return "camera"
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not isinstance(path, str):
            return "image"
        lower = path.lower()
        if lower.startswith(video.LIVE_SCHEMES):
            return "live"
        if urls.is_http(path):
            ext = files.suffix(urllib.parse.urlsplit(path).path.rpartition("/")[-1])
            return "video-url" if ext in VID_FORMATS and ext != "gif" else "url"
        if path.isdecimal() or lower.startswith("/dev/video"):
            return "camera"
        if files.is_glob(path) or os.path.isdir(path) or lower.endswith(files.LIST_SUFFIXES):
            return "files"
        ext = files.suffix(path)
        return "video" if ext in VID_FORMATS and ext != "gif" and "." in os.path.basename(path) else "image"
    if hasattr(source, "__iter__"):
        return "iterable"
    return "image"  # load_image says what an image may be


def is_one_image(source: Any) -> bool:
    """True for what ``predict`` always took as one image: an array, bytes, a PIL image, or the
    path of a still image (not a folder, glob, list file, video, URL or camera)."""
    return _kind(source) == "image"


class _Settings(NamedTuple):
    vid_stride: int
    channels: str
    read_ahead: int
    timeout: float
    reconnect: int
    max_bytes: int


def open_source(source: Any, *, vid_stride: int = 1, channels: str = "bgr", read_ahead: int = READ_AHEAD,
                timeout: float = TIMEOUT, reconnect: int = RECONNECT, max_bytes: int = urls.MAX_BYTES) -> Source:
    """Resolve ``source`` (see :mod:`modelserve.sources`) into a :class:`Source`. Nothing is read
    yet, except an ``http(s)://`` URL, which is fetched (or, for a stream or video, probed) now.

    ``vid_stride``: keep every n-th video or stream frame. ``read_ahead``: frames decoded ahead.
    ``timeout``: seconds a URL fetch, or a network open or read, may take. ``reconnect``: attempts
    to reopen a live stream that failed. ``max_bytes``: the largest image a URL may send.
    """
    timeout = _checks.finite(timeout, "timeout")
    if timeout <= 0:
        raise InvalidInputError(f"timeout must be a number of seconds > 0, got {timeout!r}")
    s = _Settings(_checks.positive_int(vid_stride, "vid_stride"), channels, _checks.positive_int(read_ahead, "read_ahead"),
                  timeout, _checks.count(reconnect, "reconnect"), _checks.positive_int(max_bytes, "max_bytes"))
    kind = _kind(source)
    if kind == "image":
        origins, infos = describe_items([source], single=True)
        return Source(origins[0].path or "image",
                      lambda: iter([Frame(load_image(source, channels), origins[0], infos[0])]), single=True)
    if kind == "iterable":
        return Source("iterable", lambda: iterable_frames(source, channels))
    if kind == "camera":
        index = None if str(source).startswith("/") else int(source)
        target, fmt, options = video.camera(index) if index is not None else (os.fspath(source), "v4l2", {})
        return _live(target, target, s, fmt, options, camera=True)
    path = os.fspath(source)
    if kind in ("live", "url", "video-url"):
        return _network(kind, path, s)
    if kind == "video":
        full = os.path.abspath(path)
        return Source(full, lambda: video.video_frames(full, name=full, prefix="video 1/1", vid_stride=s.vid_stride),
                      threaded=True, read_ahead=s.read_ahead)
    images, videos = files.expand(path)

    def read_video(file: str, prefix: str) -> Iterator[Frame]:
        return video.video_frames(file, name=file, prefix=prefix, vid_stride=s.vid_stride)

    return Source(path, lambda: files.file_frames(images, videos, channels, read_video), threaded=True,
                  read_ahead=s.read_ahead)


def _live(target: str, name: str, s: _Settings, fmt: str | None = None, options: dict[str, str] | None = None,
          camera: bool = False) -> Source:
    def frames() -> Iterator[Frame]:
        return video.live_frames(target, name=name, fmt=fmt, options=options, vid_stride=s.vid_stride,
                                 timeout=s.timeout, reconnect=s.reconnect)

    return Source(name, frames, live=True, threaded=True, read_ahead=s.read_ahead,
                  stall=video.stall_limit(s.timeout, s.reconnect), camera=camera)


def _network(kind: str, path: str, s: _Settings) -> Source:
    """A live stream URL, or an ``http(s)://`` URL serving an image, an MJPEG stream or a video."""
    name = _redact(path)
    if kind == "live":
        return _live(path, name, s, options={"rtsp_transport": "tcp"} if path.lower().startswith("rtsp") else {})
    if kind == "url":
        fetched = urls.probe(path, max_bytes=s.max_bytes, timeout=s.timeout, shown=name)
        if fetched.kind == "stream":
            return _live(path, name, s, fmt="mpjpeg")
        if fetched.kind == "image":
            origin, info = Origin("url", name), f"image 1/1 {name}: "
            return Source(name, lambda: iter([Frame(_url_image(fetched.data, name), origin, info)]), single=True)

    def frames() -> Iterator[Frame]:  # a video served over HTTP: read from the URL, never downloaded whole
        return video.video_frames(path, name=name, prefix="video 1/1", vid_stride=s.vid_stride, url=True,
                                  timeout=s.timeout)

    return Source(name, frames, threaded=True, read_ahead=s.read_ahead,
                  stall=video.stall_limit(s.timeout, s.reconnect))


def _url_image(data: bytes, name: str) -> Any:
    try:
        return load_image(data)
    except InvalidInputError as exc:
        raise SourceError(f"{name} did not send a decodable image: {exc}") from exc
