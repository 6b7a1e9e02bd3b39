"""Folders, globs and list files: expanded and ordered as Ultralytics orders them, images first,
then videos; bad entries are typed errors."""

from __future__ import annotations

import importlib.util
import os
import shutil

import numpy as np
import pytest

import modelserve as ms
from modelserve.sources import files, iter_frames

from .support import same_results

IMAGES = ["b.jpg", "a.png", "C.JPG", "10.jpg", "9.jpg"]
SORTED_IMAGES = ["10.jpg", "9.jpg", "C.JPG", "a.png", "b.jpg"]  # code-point order of the full paths


@pytest.fixture
def folder(tmp_path, photo, clip):
    """Five real photos under mixed names, two videos, and files that are not images."""
    root = tmp_path / "data"
    root.mkdir()
    photos = ["bus.jpg", "zidane.jpg", "astronaut.png", "coffee.png", "chelsea.png"]
    for name, src in zip(IMAGES, photos):
        shutil.copy(photo(src), root / name)
    if importlib.util.find_spec("av") is not None:
        shutil.copy(clip("h264.mp4", n=4, codec="libx264", pix_fmt="yuv420p"), root / "clip.mp4")
        shutil.copy(clip("mjpeg.avi", n=4, codec="mjpeg", pix_fmt="yuvj420p"), root / "a.avi")
    (root / "README.md").write_text("not an image\n")
    (root / "noext").write_bytes(b"x")
    shutil.copy(photo("bus.jpg"), root / ".hidden.jpg")
    (root / "sub").mkdir()
    shutil.copy(photo("bus.jpg"), root / "sub" / "deep.jpg")
    return root


def _videos(root) -> list[str]:
    return [str(root / v) for v in ("a.avi", "clip.mp4") if (root / v).exists()]


def test_a_folder_is_sorted_images_first_then_videos(folder):
    images, videos = files.expand(str(folder))
    assert images == [str(folder / n) for n in SORTED_IMAGES]
    assert videos == _videos(folder)


@pytest.mark.skipif(importlib.util.find_spec("torch") is None or importlib.util.find_spec("ultralytics") is None,
                    reason="needs torch and ultralytics (the reference env)")
@pytest.mark.parametrize("pattern", ["", "*.jpg", "**/*.jpg", "*"])
def test_order_equals_ultralytics(folder, pattern):
    from ultralytics.data.loaders import LoadImagesAndVideos

    source = str(folder / pattern) if pattern else str(folder)
    images, videos = files.expand(source)
    loader = LoadImagesAndVideos(source)
    loader.close()
    assert images + videos == loader.files


def test_globs(folder):
    assert files.expand(str(folder / "*.jpg"))[0] == [str(folder / n) for n in ("10.jpg", "9.jpg", "b.jpg")]
    deep = files.expand(str(folder / "**" / "*.jpg"))[0]
    assert str(folder / "sub" / "deep.jpg") in deep and str(folder / ".hidden.jpg") not in deep


def test_list_files(folder, tmp_path, monkeypatch):
    lists = tmp_path / "lists"
    lists.mkdir()
    monkeypatch.chdir(tmp_path)
    # relative to the working directory, relative to the list file, absolute, a folder, a glob; unsorted
    (lists / "near.jpg").write_bytes((folder / "b.jpg").read_bytes())
    txt = lists / "sources.txt"
    txt.write_text("\ufeff" + "\n".join(["data/b.jpg", "", "  near.jpg  ", str(folder / "a.png"), "data/sub",
                                         "data/*.JPG"]) + "\n", encoding="utf-8")
    images, videos = files.expand(str(txt))
    # Ultralytics sorts the entries as written, then expands each in turn
    order = sorted(["data/b.jpg", "near.jpg", str(folder / "a.png"), "data/sub", "data/*.JPG"])
    expected = {"data/b.jpg": [str(folder / "b.jpg")], "near.jpg": [str(lists / "near.jpg")],
                str(folder / "a.png"): [str(folder / "a.png")], "data/sub": [str(folder / "sub" / "deep.jpg")],
                "data/*.JPG": [str(folder / "C.JPG")]}
    assert images == [p for entry in order for p in expected[entry]] and videos == []
    csv = lists / "sources.csv"
    csv.write_text("source\ndata/b.jpg,data/a.png\ndata/9.jpg\n")
    assert files.expand(str(csv))[0] == [str(folder / n) for n in ("9.jpg", "a.png", "b.jpg")]  # header skipped


@pytest.mark.parametrize("make, match", [
    (lambda d: d / "empty", "no images or videos found"),
    (lambda d: d / "only-text", "no images or videos found"),
    (lambda d: d / "missing.txt", "list file not found"),
    (lambda d: d / "gone.txt", "nothere.jpg does not exist"),
    (lambda d: d / "nomatch*.jpg", "no images or videos found"),
], ids=["empty-folder", "no-images", "missing-list", "missing-entry", "empty-glob"])
def test_sources_with_nothing_to_read_are_source_errors(tmp_path, predictor, make, match):
    (tmp_path / "empty").mkdir()
    (tmp_path / "only-text").mkdir()
    (tmp_path / "only-text" / "notes.md").write_text("x")
    (tmp_path / "gone.txt").write_text("nothere.jpg\n")
    with pytest.raises(ms.SourceError, match=match):
        predictor.predict(str(make(tmp_path)))


def test_predict_on_a_folder_equals_predict_on_each_file(folder, predictor):
    images, videos = files.expand(str(folder))
    got = predictor.predict(str(folder), conf=0.05)
    want = [predictor.predict(p, conf=0.05) for p in images]
    assert len(got) == len(images) + 4 * len(videos)
    for k, (a, b) in enumerate(zip(got, want)):
        same_results(a, b)
        assert a.origin == ms.sources.Origin("file", images[k])
    for r, (path, frame) in zip(got[len(images):], [(v, i) for v in videos for i in range(4)]):
        assert (r.origin.kind, r.origin.path, r.origin.frame) == ("video", path, frame)


def test_frame_infos_count_files_as_ultralytics_does(folder):
    infos = [f.info for f in iter_frames(str(folder))]
    total = len(SORTED_IMAGES) + len(_videos(folder))
    assert infos[0] == f"image 1/{total} {folder / '10.jpg'}: "
    if _videos(folder):
        assert infos[len(SORTED_IMAGES)] == f"video {len(SORTED_IMAGES) + 1}/{total} (frame 1/4) {folder / 'a.avi'}: "


def test_a_bad_image_in_a_folder_is_an_error_naming_it_after_the_good_ones(folder, predictor):
    (folder / "c.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    gen = predictor.predict(str(folder), stream=True)
    got = []
    with pytest.raises(ms.InvalidInputError, match="c.jpg"):
        for r in gen:
            got.append(r)
    assert [os.path.basename(r.origin.path) for r in got] == ["10.jpg", "9.jpg", "C.JPG", "a.png", "b.jpg"]
    with pytest.raises(ms.InvalidInputError, match="c.jpg"):
        predictor.predict(str(folder))


def test_single_paths_keep_their_old_meaning(folder, predictor, bgr):
    r = predictor.predict(str(folder / "b.jpg"))
    assert isinstance(r, ms.Detections) and r.origin == ms.sources.Origin("file", str(folder / "b.jpg"))
    same_results(r, predictor.predict(np.ascontiguousarray(bgr("bus.jpg"))))
    gif = folder / "one.gif"
    from PIL import Image

    Image.open(folder / "b.jpg").save(gif)
    assert isinstance(predictor.predict(str(gif)), ms.Detections)  # one GIF is one image, as always
    with pytest.raises(ms.InvalidInputError, match="not found"):
        predictor.predict(str(folder / "missing.jpg"))
