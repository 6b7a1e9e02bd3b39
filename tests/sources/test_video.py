"""Video files: PyAV's frames equal OpenCV's decode of the same file, frame for frame, so the
detections on a video equal those on OpenCV's frames, and Ultralytics' own on the same video."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading

import numpy as np
import pytest

import modelserve as ms
from modelserve.sources import iter_frames

from .support import FPS, cv2_frames, same_results

pytest.importorskip("av")

CODECS = [("h264.mp4", "libx264", "yuv420p"), ("h264-444.mkv", "libx264", "yuv444p"),
          ("mpeg4.mp4", "mpeg4", "yuv420p"), ("mjpeg.avi", "mjpeg", "yuvj420p")]


@pytest.mark.parametrize("name, codec, pix_fmt", CODECS, ids=[c[0] for c in CODECS])
def test_frames_equal_opencv_frame_for_frame(clip, name, codec, pix_fmt):
    path = clip(name, codec=codec, pix_fmt=pix_fmt)
    want = cv2_frames(path)
    got = list(iter_frames(str(path)))
    assert len(want) == len(got) == 20
    for i, (frame, ref) in enumerate(zip(got, want)):
        assert frame.image.bgr and frame.image.pixels.flags.c_contiguous
        np.testing.assert_array_equal(frame.image.pixels, ref, err_msg=f"frame {i}")
        assert frame.origin.kind == "video" and frame.origin.path == os.path.abspath(path)
        assert frame.origin.frame == i
        assert frame.origin.timestamp == pytest.approx(i / FPS, abs=1e-6)
        assert frame.info == f"video 1/1 (frame {i + 1}/20) {os.path.abspath(path)}: "
    assert not np.array_equal(got[0].image.pixels, got[2].image.pixels)  # the photos change


@pytest.mark.parametrize("rotation", [90, 180, -90])
def test_rotated_video_is_turned_upright_as_opencv_does(clip, rotation):
    path = clip("rotated.mp4", n=4, rotation=rotation)
    want = cv2_frames(path)
    got = [f.image.pixels for f in iter_frames(str(path))]
    assert len(got) == len(want) == 4
    assert got[0].shape == want[0].shape
    assert (got[0].shape[0] > got[0].shape[1]) == (rotation % 180 != 0)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_vid_stride_keeps_the_frames_ultralytics_keeps(clip):
    path = clip("h264.mp4", codec="libx264", pix_fmt="yuv420p")
    want = cv2_frames(path)
    got = list(iter_frames(str(path), vid_stride=3))
    # Ultralytics grabs vid_stride frames and retrieves the last: frames 2, 5, 8, ...; int(20 / 3) of them
    assert [f.origin.frame for f in got] == [2, 5, 8, 11, 14, 17]
    for f in got:
        np.testing.assert_array_equal(f.image.pixels, want[f.origin.frame])
    assert got[0].info.startswith("video 1/1 (frame 1/6) ")


@pytest.mark.parametrize("batch", [1, 4])
def test_detections_on_a_video_equal_predict_on_opencv_frames(clip, predictor, batch):
    path = clip("h264.mp4", codec="libx264", pix_fmt="yuv420p")
    want = predictor.predict(cv2_frames(path), conf=0.05)
    got = predictor.predict(str(path), conf=0.05, batch=batch)
    assert isinstance(got, list) and len(got) == len(want) == 20
    assert sum(len(r) for r in want) >= 20  # real detections to compare
    for i, (a, b) in enumerate(zip(got, want)):
        same_results(a, b)
        assert a.origin == ms.sources.Origin("video", os.path.abspath(path), i, pytest.approx(i / FPS))


def test_batched_predictor_streams_a_video(clip, detector_path, predictor):
    path = str(clip("h264.mp4", codec="libx264", pix_fmt="yuv420p"))
    want = predictor.predict(path, conf=0.05)
    with ms.load(detector_path, batching=ms.Batching(max_batch_size=4, max_delay_ms=5)) as p:
        got = list(p.predict(path, conf=0.05, stream=True, batch=4))
        sizes = p.batcher.stats().batch_size_histogram
    assert len(got) == len(want)
    for a, b in zip(got, want):
        same_results(a, b)
        assert a.origin == b.origin
    assert max(sizes) > 1  # a stream's batch of frames shares engine batches


@pytest.mark.skipif(importlib.util.find_spec("torch") is None or importlib.util.find_spec("ultralytics") is None,
                    reason="needs torch and ultralytics (the reference env)")
@pytest.mark.parametrize("vid_stride", [1, 3])
def test_detections_equal_ultralytics_on_the_same_video(clip, detector_path, predictor, vid_stride):
    from ultralytics import YOLO

    path = str(clip("h264.mp4", codec="libx264", pix_fmt="yuv420p"))
    yolo = YOLO(str(detector_path), task="detect")
    theirs = list(yolo.predict(path, imgsz=list(predictor.imgsz), conf=0.05, verbose=False, device="cpu",
                               stream=True, vid_stride=vid_stride))
    ours = predictor.predict(path, conf=0.05, vid_stride=vid_stride)
    assert len(ours) == len(theirs) == 20 // vid_stride
    assert sum(len(r) for r in ours) >= 20 // vid_stride
    for a, b in zip(ours, theirs):
        assert a.class_id.tolist() == b.boxes.cls.numpy().astype(int).tolist()
        np.testing.assert_allclose(a.xyxy, b.boxes.xyxy.numpy(), atol=0.01)
        np.testing.assert_allclose(a.confidence, b.boxes.conf.numpy(), atol=1e-4)


def test_a_fifo_named_like_a_video_is_refused_without_hanging(tmp_path, predictor):
    fifo = tmp_path / "clip.mp4"
    os.mkfifo(fifo)
    out: dict = {}

    def run():
        try:
            predictor.predict(str(fifo))
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    try:
        assert not t.is_alive(), "predict blocked on a FIFO"
        assert isinstance(out.get("error"), ms.SourceError) and "FIFO" in str(out["error"])
    finally:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


@pytest.mark.parametrize("content, match", [(None, "not found"), (b"", "cannot open"),
                                            (b"\x00\x00\x00\x18ftypmp42" + os.urandom(3000), "cannot open")],
                         ids=["missing", "empty", "garbage"])
def test_unreadable_videos_are_source_errors(tmp_path, predictor, content, match):
    path = tmp_path / "bad.mp4"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ms.SourceError, match=match):
        predictor.predict(str(path))
    with pytest.raises(ms.SourceError, match=match):
        list(predictor.predict(str(path), stream=True))


def test_a_truncated_video_gives_its_frames_then_a_source_error_or_ends(clip, tmp_path, predictor):
    data = clip("h264-444.mkv", codec="libx264", pix_fmt="yuv444p").read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    got = []
    try:
        for r in predictor.predict(str(cut), stream=True):
            got.append(r)
    except ms.SourceError:
        pass  # a typed error is fine; a crash or a hang is not
    assert 0 < len(got) < 20


def test_without_pyav_the_error_names_the_extra(clip, predictor, monkeypatch):
    path = str(clip("h264.mp4", codec="libx264", pix_fmt="yuv420p"))
    monkeypatch.setitem(sys.modules, "av", None)
    with pytest.raises(ms.SourceError, match=r"pip install modelserve\[video\]"):
        predictor.predict(path)
