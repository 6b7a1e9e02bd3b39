"""Batch jobs: every image and video frame of a source through a model, into files that survive a
crash and a re-run (``modelserve predict`` and :func:`batch_predict`).

* ``out``: JSON lines, one per image or kept video frame: ``{"path", "frame", "timestamp", "kind",
  "detections"|"classification", "orig_shape"}``; each line is written whole and flushed, so a job
  stopped at any moment (Ctrl-C, a crash, ``kill -9``) leaves complete lines, and a re-run with the
  same ``out`` skips every image and frame already there (a torn last line is dropped first).
* ``save_dir``: annotated pictures, ``<stem>.jpg`` per image and an annotated ``<stem>.mp4`` per
  video or stream; ``save_txt``: Ultralytics' label files in ``save_dir/labels/`` (``<stem>.txt``,
  ``<stem>_<frame>.txt`` for video frames).
* A file that cannot be read or decoded is reported and skipped, never fatal; the summary at the end
  counts files, frames, detections per class, failures and throughput.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Generator, Mapping, Sequence, TextIO

from ._errors import InvalidInputError, ModelserveError

__all__ = ["JobSummary", "batch_predict"]


@dataclass
class JobSummary:
    """What a :func:`batch_predict` run did."""

    files: int = 0
    frames: int = 0
    skipped: int = 0  #: images and frames already in ``out`` from an earlier run
    detections: Counter = field(default_factory=Counter)  #: class name -> count
    failures: list[tuple[str, str]] = field(default_factory=list)  #: (path, why)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def fps(self) -> float:
        """Images and frames predicted per second."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "frames": self.frames, "skipped": self.skipped,
                "detections": dict(self.detections.most_common()), "failures": [list(f) for f in self.failures],
                "seconds": round(self.seconds, 3), "fps": round(self.fps, 2), "interrupted": self.interrupted}

    def __str__(self) -> str:
        per_class = ", ".join(f"{n} {name}" for name, n in self.detections.most_common()) or "no detections"
        text = (f"{self.files} file(s), {self.frames} image(s)/frame(s) in {self.seconds:.1f}s "
                f"({self.fps:.1f}/s); {self.skipped} already done; {per_class}; {len(self.failures)} failure(s)")
        return text + (" (interrupted)" if self.interrupted else "")


def _inputs(source: Any) -> list[Any]:
    """Each file of a folder, glob or list file on its own (so that a bad one is skipped alone);
    any other source (a file, a URL, a stream, a camera) as one input."""
    from .sources import files

    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path) or files.is_glob(path) or path.lower().endswith(files.LIST_SUFFIXES):
            images, videos = files.expand(path)
            return [*images, *videos]
    return [source]


def _key(origin: Any) -> tuple[str | None, int | None]:
    return (origin.path, origin.frame)


def _done(out: str) -> set[tuple[str | None, int | None]]:
    """The images and frames ``out`` already holds; a torn last line (a job killed mid-write) is cut."""
    if not os.path.exists(out):
        return set()
    done, good = set(), 0
    with open(out, "rb") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
                done.add((rec["path"], rec["frame"]))
            except (ValueError, KeyError, TypeError):
                break
            good += len(line)
    if good < os.path.getsize(out):
        with open(out, "rb+") as fh:
            fh.truncate(good)
    return done


class _Progress:
    """A one-line progress bar on a stream: files done, rate and ETA (for a known number of files)."""

    def __init__(self, stream: TextIO | None, total: int) -> None:
        self.stream, self.total, self.t0, self.last = stream, total, time.perf_counter(), 0.0

    def update(self, files_done: int, frames: int, force: bool = False) -> None:
        now = time.perf_counter()
        if self.stream is None or (not force and now - self.last < 0.2):
            return
        self.last = now
        rate = frames / max(now - self.t0, 1e-9)
        eta = (now - self.t0) / files_done * (self.total - files_done) if files_done else 0.0
        bar = f"{files_done}/{self.total} files, {frames} frames, {rate:.1f}/s, ETA {eta:.0f}s"
        self.stream.write("\r" + bar.ljust(60))
        self.stream.flush()

    def close(self) -> None:
        if self.stream is not None:
            self.stream.write("\n")
            self.stream.flush()


def _record(result: Any) -> dict[str, Any]:
    """One JSON line: the result's own ``to_json()`` (strict: non-finite numbers are null) with its
    origin's fields (``kind``, ``path``, ``frame``, ``timestamp``) first and at the top level."""
    body = json.loads(result.to_json())
    origin = body.pop("origin", None) or dict.fromkeys(("kind", "path", "frame", "timestamp"))
    return {**origin, **body}


def _count(summary: JobSummary, result: Any) -> None:
    names = getattr(result, "class_names", None)
    if names is not None:
        summary.detections.update(names)
    elif getattr(result, "top1_name", None) is not None:
        summary.detections.update([result.top1_name])


def batch_predict(
    model: Any,
    source: Any,
    *,
    out: str | os.PathLike[str] | None = None,
    save_dir: str | os.PathLike[str] | None = None,
    save_txt: bool = False,
    batch: int = 8,
    vid_stride: int = 1,
    progress: TextIO | bool | None = None,
    verbose: bool = False,
    **options: Any,
) -> JobSummary:
    """Run ``model`` (a :class:`Predictor`, or anything :func:`modelserve.load` takes, loaded with
    ``options`` such as ``engine=``, ``device=``, ``imgsz=``) on every image and kept video frame of
    ``source`` (a file, folder, glob, list file, URL, stream or camera; see :mod:`modelserve.sources`).

    Thresholds in ``options`` (``conf``, ``iou``, ``max_det``, ``classes``, ``agnostic``) apply to
    every prediction. See the module docstring for ``out`` (resumable JSON lines), ``save_dir`` and
    ``save_txt``. ``progress``: a text stream (or True for stderr) for a progress line. Ctrl-C
    stops after the batch in flight, with every finished line written; the summary says
    ``interrupted``. Returns the :class:`JobSummary`.

        >>> summary = batch_predict("yolov8n.onnx", "photos/", out="results.jsonl")
        >>> print(summary)
    """
    from . import _load
    from ._predictor import Predictor

    thresholds: dict[str, Any] = {k: options.pop(k) for k in ("conf", "iou", "max_det", "classes", "agnostic",
                                                                  "multi_label")
                                  if k in options}
    own = not isinstance(model, Predictor)
    predictor = _load.load(model, **options) if own else model
    if options and not own:
        raise InvalidInputError(f"load options {sorted(options)} need a model path, not a Predictor")
    stream = sys.stderr if progress is True else (progress or None)
    summary = JobSummary()
    saver = _Saver(save_dir, save_txt) if save_dir is not None or save_txt else None
    t0 = time.perf_counter()
    done = _done(os.fspath(out)) if out is not None else set()
    sink = open(os.fspath(out), "a", encoding="utf-8") if out is not None else None
    try:
        inputs = _inputs(source)
        bar = _Progress(stream, len(inputs))
        for i, item in enumerate(inputs):
            summary.files += 1
            skipped = summary.skipped
            results = _predict_one(predictor, item, done, summary, batch, vid_stride, verbose, thresholds)
            try:
                for result in results:
                    _count(summary, result)
                    if sink is not None:
                        sink.write(json.dumps(_record(result), allow_nan=False) + "\n")
                        sink.flush()
                    if saver is not None:
                        saver.add(result, resumed=summary.skipped > skipped)
                    bar.update(i, summary.frames)
            except ModelserveError as exc:
                summary.failures.append((str(item), " ".join(str(exc).split())))
            finally:
                results.close()  # releases the source (a reader thread, a camera) whatever stopped the loop
                if saver is not None:
                    saver.close()  # a video's annotated copy is complete when its input is
            bar.update(i + 1, summary.frames, force=True)
        bar.close()
    except KeyboardInterrupt:
        summary.interrupted = True
    finally:
        if sink is not None:
            sink.close()
        if own:
            predictor.close()
        summary.seconds = time.perf_counter() - t0
    return summary


def _predict_one(predictor: Any, item: Any, done: set, summary: JobSummary, batch: int, vid_stride: int,
                 verbose: bool, thresholds: Mapping[str, Any]) -> Generator[Any, None, None]:
    """The result of each image or kept frame of one input not in ``done`` (each keeps its image)."""
    from .sources import open_source

    with open_source(item, vid_stride=vid_stride, channels=predictor.channels) as src:
        chunk: list[Any] = []
        for frame in src:
            if _key(frame.origin) in done:
                summary.skipped += 1
                continue
            chunk.append(frame)
            if len(chunk) >= batch:
                yield from _run(predictor, chunk, summary, verbose, thresholds)
                chunk = []
        if chunk:
            yield from _run(predictor, chunk, summary, verbose, thresholds)


def _run(predictor: Any, frames: Sequence[Any], summary: JobSummary, verbose: bool,
         thresholds: Mapping[str, Any]) -> list[Any]:
    results = list(predictor.predict(source=list(frames), stream=True, batch=len(frames), verbose=verbose,
                                     **thresholds))
    summary.frames += len(results)
    return results


class _Saver:
    """Annotated pictures into ``save_dir``: ``<stem>.jpg`` per image, one ``<stem>.mp4`` per video or
    stream (frames timed by their timestamps; ``<stem>_from<frame>.mp4`` when a re-run continues a
    video part-way); label files in ``save_dir/labels/`` (``<stem>.txt``, ``<stem>_<frame>.txt``)."""

    def __init__(self, save_dir: Any, save_txt: bool) -> None:
        self.root = os.fspath(save_dir) if save_dir is not None else None
        self.save_txt = save_txt
        self.videos: dict[str, _VideoOut] = {}

    def add(self, result: Any, resumed: bool = False) -> None:
        """``resumed``: earlier frames of this input were done by an earlier run (so this video's
        annotated copy starts part-way and gets its own name)."""
        from . import plotting

        origin = result.origin
        path = (origin.path if origin is not None else None) or "image"
        stem = os.path.splitext(os.path.basename(path))[0] or "image"
        frame = origin.frame if origin is not None and origin.kind in ("video", "stream") else None
        if self.root is not None:
            os.makedirs(self.root, exist_ok=True)
            if frame is None:
                result.save(os.path.join(self.root, stem + ".jpg"))  # drawn on the image it keeps
            else:
                out = self.videos.get(path)
                if out is None:
                    name = stem + (f"_from{frame}" if resumed else "") + ".mp4"
                    out = self.videos[path] = _VideoOut(os.path.join(self.root, name))
                out.write(result.plot(), origin.timestamp)
        if self.save_txt:
            labels = os.path.join(self.root or ".", "labels")
            os.makedirs(labels, exist_ok=True)
            plotting.save_txt(result, os.path.join(labels, stem + ("" if frame is None else f"_{frame}") + ".txt"))

    def close(self) -> None:
        for out in self.videos.values():
            out.close()
        self.videos.clear()


class _VideoOut:
    """An H.264 (else MPEG-4) ``.mp4`` written with PyAV, frame times from their timestamps."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.container: Any = None
        self.stream: Any = None
        self.t0: float | None = None
        self.last = -1

    def write(self, bgr: Any, timestamp: float | None) -> None:
        from fractions import Fraction

        from .sources import video

        av = video.require_av()
        if self.container is None:
            self.container = av.open(self.path, "w")
            try:
                self.stream = self.container.add_stream("libx264", rate=30)
            except Exception:  # noqa: BLE001 - an FFmpeg build without x264
                self.stream = self.container.add_stream("mpeg4", rate=30)
            h, w = bgr.shape[:2]
            self.stream.height, self.stream.width = h - h % 2, w - w % 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.time_base = Fraction(1, 1000)
        if self.t0 is None:
            self.t0 = timestamp or 0.0
        pts = int(round(((timestamp or 0.0) - self.t0) * 1000))
        pts = max(pts, self.last + 1)  # strictly increasing, whatever the source's clock did
        self.last = pts
        frame = av.VideoFrame.from_ndarray(bgr[: self.stream.height, : self.stream.width], format="bgr24")
        frame.pts, frame.time_base = pts, self.stream.time_base
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        if self.container is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
            self.container.close()
            self.container = None
