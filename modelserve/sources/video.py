"""Video files, video URLs and live streams, decoded with PyAV (``pip install modelserve[video]``).

Frames are converted to BGR by FFmpeg's swscale and turned upright by the stream's display
rotation, as OpenCV's ``VideoCapture`` does, so each frame equals ``cv2.VideoCapture(path).read()``
pixel for pixel. ``vid_stride=k`` keeps every k-th decoded frame, the k-th first (frames
``k-1, 2k-1, ...``: what Ultralytics' ``grab()`` x k then ``retrieve()`` gives); skipped frames
are decoded (later frames depend on them) but not converted.

A local video is opened as a regular file only (a FIFO or device is refused, never read). Network
reads are limited in time: PyAV's ``timeout=(open, read)`` interrupts FFmpeg when no data came for
``timeout`` seconds. A live stream (a camera, ``rtsp://``, HTTP MJPEG) that fails at the first open
raises :class:`SourceError` at once; one that fails or ends after frames came is reopened, up to
``reconnect`` times in a row with growing pauses, then raises :class:`SourceError`: a live stream
never ends quietly, and never blocks its reader longer than its timeouts.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Iterator, Mapping

import numpy as np

from .. import _files
from .._errors import SourceError
from .._images import Image
from .frames import Frame, Origin

__all__ = ["LIVE_SCHEMES", "camera", "live_frames", "require_av", "stall_limit", "video_frames"]

#: URL schemes read as live streams (``http(s)://`` is live when it serves ``multipart/x-mixed-replace``).
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "tcp://", "udp://", "srt://")
_DELAYS = (0.25, 0.5, 1.0, 2.0)  # pauses before each reconnect attempt (the last one repeats)


def require_av() -> Any:
    """The ``av`` module, or :class:`SourceError` naming the extra to install."""
    try:
        import av
    except ImportError as exc:
        raise SourceError("reading videos and live streams needs PyAV: pip install modelserve[video]") from exc
    return av


def stall_limit(timeout: float, reconnect: int) -> float:
    """The longest a live reader may go without a frame before its own timeouts end it: every
    attempt's open and read timeouts and pauses. The read-ahead gives up after this (a backstop for
    an FFmpeg call that ignores its interrupt)."""
    return (reconnect + 1) * (2 * timeout + _DELAYS[-1]) + timeout


def camera(index: int) -> tuple[str, str | None, dict[str, str]]:
    """``(target, format, options)`` PyAV opens camera ``index`` with on this platform."""
    if sys.platform.startswith("linux"):
        return f"/dev/video{index}", "v4l2", {}
    if sys.platform == "darwin":
        return str(index), "avfoundation", {"framerate": "30"}
    raise SourceError(f"camera indexes are read through v4l2 (Linux) or avfoundation (macOS), not on {sys.platform}; "
                      "pass the camera's rtsp:// or http:// URL")


def _bgr(frame: Any) -> np.ndarray:
    pixels = frame.to_ndarray(format="bgr24")
    turns = (int(getattr(frame, "rotation", 0) or 0) // 90) % 4
    if turns:
        pixels = np.rot90(pixels, turns)
    return np.ascontiguousarray(pixels)


def _reason(exc: BaseException) -> str:
    """An FFmpeg error's message without the URL it names (which may hold a password)."""
    return str(getattr(exc, "strerror", None) or exc)


def _open(av: Any, target: Any, name: str, fmt: str | None = None, options: Mapping[str, str] | None = None,
          timeout: float | None = None) -> Any:
    try:
        return av.open(target, format=fmt, options=dict(options or {}),
                       timeout=None if timeout is None else (timeout, timeout))
    except (av.FFmpegError, OSError, ValueError) as exc:
        error = SourceError(f"cannot open {name}: {_reason(exc)}")
        if isinstance(target, str) and target not in name:  # the URL had a password: do not chain it
            raise error from None
        raise error from exc


def _frame_count(container: Any, stream: Any) -> int:
    """The video's frame count as OpenCV reports it: the stream's count, else the duration (the
    container's, else the stream's) times the frame rate, rounded; 0 when unknown."""
    if stream.frames:
        return int(stream.frames)
    rate = stream.average_rate or stream.guessed_rate
    if container.duration:
        seconds = container.duration / 1e6  # AV_TIME_BASE
    elif stream.duration and stream.time_base:
        seconds = float(stream.duration * stream.time_base)
    else:
        return 0
    return int(seconds * float(rate) + 0.5) if rate else 0


def _refuse(message: str) -> SourceError:
    return SourceError(f"expected a video file: {message}")


def video_frames(target: str, *, name: str, prefix: str, vid_stride: int = 1, url: bool = False,
                 timeout: float | None = None) -> Iterator[Frame]:
    """The frames of one video file (``url``: a video URL, read over the network with ``timeout``)."""
    av = require_av()
    if url:
        container = _open(av, target, name, timeout=timeout)
    else:
        try:
            fh = _files.open_read(target, refuse=_refuse)
        except FileNotFoundError:
            raise SourceError(f"video file not found: {target}") from None
        except OSError as exc:
            raise SourceError(f"cannot open video file {target}: {exc}") from exc
        try:
            container = _open(av, fh, name)
        except BaseException:
            fh.close()
            raise
    try:
        yield from _decode(av, container, name, prefix, vid_stride)
    finally:
        container.close()
        if not url:
            fh.close()


def _decode(av: Any, container: Any, name: str, prefix: str, vid_stride: int) -> Iterator[Frame]:
    if not container.streams.video:
        raise SourceError(f"{name} has no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    frames = _frame_count(container, stream) // vid_stride
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None and stream.time_base else 0.0
    index, kept = -1, 0
    try:
        for frame in container.decode(stream):
            index += 1
            if (index + 1) % vid_stride:
                continue
            kept += 1
            when = None if frame.time is None else max(float(frame.time) - start, 0.0)
            yield Frame(Image(_bgr(frame), True), Origin("video", name, index, when),
                        f"{prefix} (frame {kept}/{frames}) {name}: ")
    except av.FFmpegError as exc:
        raise SourceError(f"cannot decode {name} at frame {index + 1}: {_reason(exc)}") from exc


def live_frames(target: str, *, name: str, fmt: str | None = None, options: Mapping[str, str] | None = None,
                vid_stride: int = 1, timeout: float = 10.0, reconnect: int = 3) -> Iterator[Frame]:
    """The frames of a live stream, reopened after a failure (see the module docstring)."""
    av = require_av()
    what = f"live stream {name}"
    container = _open(av, target, what, fmt, options, timeout)
    if not container.streams.video:
        container.close()
        raise SourceError(f"{what} has no video stream")
    index, failures = -1, 0
    while True:
        try:
            for frame in container.decode(container.streams.video[0]):
                failures = 0
                index += 1
                if (index + 1) % vid_stride == 0:
                    yield Frame(Image(_bgr(frame), True), Origin("stream", name, index, time.time()))
            reason = "the stream ended"
        except av.FFmpegError as exc:
            reason = _reason(exc)
        finally:
            container.close()
        while True:  # reopen, or give up after `reconnect` failed attempts in a row
            failures += 1
            if failures > reconnect:
                raise SourceError(f"{what} lost ({reason}); {reconnect} reconnect attempt(s) failed")
            time.sleep(_DELAYS[min(failures, len(_DELAYS)) - 1])
            try:
                container = _open(av, target, what, fmt, options, timeout)
            except SourceError as exc:
                reason = str(exc)
                continue
            if container.streams.video:
                break
            container.close()
            reason = "no video stream after reconnecting"
