"""Paths that name many files: folders, globs and list files (``.txt``, ``.csv``), expanded and
ordered exactly as Ultralytics' ``LoadImagesAndVideos`` does.

* a folder: its ``*.*`` entries, sorted (hidden files and names without a dot are skipped, as by
  :func:`glob.glob`); a glob (a path with ``*``): its matches, sorted, ``**`` recursive
* a list file: one source per line (``.csv``: per cell, an optional ``source`` header row skipped),
  blank lines ignored, the entries sorted, each a file, folder or glob; a relative entry is looked up
  from the working directory, then beside the list file
* of all the files found, those with an image suffix come first (in that order), then the videos;
  other files are ignored, so a folder may hold a README. Paths are made absolute, not resolved.

A file that is missing, a folder or glob that holds no image or video, or a list file that cannot
be read raises :class:`SourceError`; an image file that does not decode raises
:class:`InvalidInputError` naming it when its turn comes (the images before it have been yielded).
"""

from __future__ import annotations

import csv
import glob
import os
from typing import Callable, Iterator

from .. import _files
from .._errors import SourceError
from .._images import load_image
from .frames import IMG_FORMATS, VID_FORMATS, Frame, Origin

__all__ = ["LIST_SUFFIXES", "expand", "file_frames", "is_glob", "suffix"]

LIST_SUFFIXES = (".txt", ".csv")
_MAX_LIST_BYTES = 64 * 2**20  # a list file larger than this is not a list of paths


def suffix(path: str) -> str:
    """The lower-case suffix after the last dot, without the dot (Ultralytics' rule)."""
    return path.rpartition(".")[-1].lower()


def is_glob(path: str) -> bool:
    return "*" in path


def _read_list(path: str) -> list[str]:
    def refuse(message: str) -> SourceError:
        return SourceError(f"cannot read the list file: {message}")

    try:
        with _files.open_read(path, refuse=refuse) as fh:
            data = fh.read(_MAX_LIST_BYTES + 1)
    except FileNotFoundError:
        raise SourceError(f"list file not found: {path}") from None
    except OSError as exc:
        raise SourceError(f"cannot read the list file {path}: {exc}") from exc
    if len(data) > _MAX_LIST_BYTES:
        raise SourceError(f"list file {path} is larger than {_MAX_LIST_BYTES} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"list file {path} is not UTF-8 text: {exc}") from exc
    if path.lower().endswith(".csv"):
        rows = list(csv.reader(text.splitlines()))
        rows = rows[1:] if rows[:1] == [["source"]] else rows
        entries = [cell for row in rows for cell in row]
    else:
        entries = text.splitlines()
    return [e.strip() for e in entries if e.strip()]


def _matches(entry: str, parent: str | None) -> list[str]:
    """The files one entry names (a file, a folder's ``*.*``, a glob's matches), sorted."""
    a = os.path.abspath(entry)
    if parent is not None and not (glob.glob(a, recursive=True) if is_glob(a) else os.path.exists(a)):
        a = os.path.abspath(os.path.join(parent, entry))
    if is_glob(a):
        return sorted(glob.glob(a, recursive=True))
    if os.path.isdir(a):
        return sorted(glob.glob(os.path.join(glob.escape(a), "*.*")))
    if os.path.isfile(a):
        return [a]
    raise SourceError(f"{entry} does not exist" + (f" (listed in {parent})" if parent else ""))


def expand(path: str) -> tuple[list[str], list[str]]:
    """``(images, videos)``: the absolute paths a folder, glob or list file names, in Ultralytics'
    order; :class:`SourceError` if there are none."""
    parent = None
    entries = [path]
    if not is_glob(path) and path.lower().endswith(LIST_SUFFIXES) and not os.path.isdir(path):
        entries = sorted(_read_list(path))
        parent = os.path.dirname(os.path.abspath(path))
    found = [f for entry in entries for f in _matches(entry, parent)]
    images = [f for f in found if suffix(f) in IMG_FORMATS]
    videos = [f for f in found if suffix(f) in VID_FORMATS]
    if not images and not videos:
        raise SourceError(f"no images or videos found in {path} (image suffixes: {', '.join(sorted(IMG_FORMATS))}; "
                          f"video suffixes: {', '.join(sorted(VID_FORMATS))})")
    return images, videos


VideoReader = Callable[[str, str], Iterator[Frame]]


def file_frames(images: list[str], videos: list[str], channels: str, read_video: VideoReader) -> Iterator[Frame]:
    """The images' frames, then every video's frames; ``read_video(path, info_prefix)`` reads one
    video (``info_prefix``: ``"video k/n"``)."""
    total = len(images) + len(videos)
    for k, path in enumerate(images, 1):
        image = load_image(path, channels)
        yield Frame(image, Origin("file", path), f"image {k}/{total} {path}: ")
    for k, path in enumerate(videos, len(images) + 1):
        yield from read_video(path, f"video {k}/{total}")
