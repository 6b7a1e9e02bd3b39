"""Live streams against local servers on loopback: an MJPEG-over-HTTP camera, one that stalls, one
that drops, an RTSP port that never answers. A live source reconnects or ends with a SourceError
within its timeouts; it never blocks its caller for good."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest

import modelserve as ms
from modelserve.sources import Frame, Origin, iter_frames, open_source
from modelserve.sources.readahead import ReadAhead

from .servers import Server, StallingTcp, free_port, mjpeg

pytest.importorskip("av")


@pytest.fixture(scope="module")
def jpegs(rgb_photos) -> list[bytes]:
    from PIL import Image

    out = []
    for rgb in rgb_photos:
        buf = io.BytesIO()
        Image.fromarray(rgb[::2, ::2]).save(buf, "JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def _within(seconds: float, fn):
    """``fn()`` in a thread: its value or error, or a test failure if it is still blocked after ``seconds``."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["error"] = exc

    t = threading.Thread(target=run, daemon=True)
    start = time.monotonic()
    t.start()
    t.join(seconds)
    if t.is_alive():
        pytest.fail(f"still blocked after {seconds} s")
    out["elapsed"] = time.monotonic() - start
    return out


def _take(source, n: int, **options) -> list[Frame]:
    frames = []
    gen = iter_frames(source, **options)
    try:
        for frame in gen:
            frames.append(frame)
            if len(frames) == n:
                break
    finally:
        gen.close()
    return frames


def test_mjpeg_stream_frames_equal_opencv(jpegs):
    cv2 = pytest.importorskip("cv2")
    with Server({"/cam": mjpeg(jpegs)}) as server:
        url = server.url("/cam?n=6")
        out = _within(20, lambda: [f for f in _collect(url)])
        cap = cv2.VideoCapture(url)
        want = []
        while len(want) < 6:
            ok, frame = cap.read()
            if not ok:
                break
            want.append(frame)
        cap.release()
    frames, error = out["value"]
    assert isinstance(error, ms.SourceError) and "lost" in str(error)  # the camera went away for good
    assert len(frames) == len(want) == 6
    for i, (f, ref) in enumerate(zip(frames, want)):
        np.testing.assert_array_equal(f.image.pixels, ref)
        assert f.origin.kind == "stream" and f.origin.frame == i and f.origin.path == url
        assert abs(f.origin.timestamp - time.time()) < 60


def _collect(url):
    frames, error = [], None
    try:
        for f in iter_frames(url, reconnect=0, timeout=2, read_ahead=16):
            frames.append(f)
    except ms.SourceError as exc:
        error = exc
    return frames, error


def test_predict_refuses_a_live_stream_without_stream_true(jpegs, predictor):
    with Server({"/cam": mjpeg(jpegs)}) as server:
        with pytest.raises(ms.SourceError, match="stream=True"):
            predictor.predict(server.url("/cam"))


def test_predict_streams_a_live_camera_and_stops_when_the_caller_does(jpegs, predictor):
    with Server({"/cam": mjpeg(jpegs, gap=0.02)}) as server:
        gen = predictor.predict(server.url("/cam"), stream=True, conf=0.05, batch=2)
        results = [r for _, r in zip(range(6), gen)]
        gen.close()
        deadline = time.monotonic() + 5
        while any(t.name.startswith("modelserve-source") for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the stream's reader kept running after the caller stopped"
            time.sleep(0.05)
    assert [r.origin.kind for r in results] == ["stream"] * 6
    frames = [r.origin.frame for r in results]
    assert frames == sorted(frames) and len(set(frames)) == 6
    assert all(r.orig_shape == (240, 320) for r in results)


def test_frames_from_iter_frames_keep_their_origin_and_are_released(jpegs, predictor):
    with Server({"/cam": mjpeg(jpegs, gap=0.05)}) as server:  # 16 frames of room: none dropped before the third
        frames = iter_frames(server.url("/cam"), timeout=2, reconnect=0, read_ahead=16)
        gen = predictor.predict(frames, stream=True, conf=0.05)
        results = [r for _, r in zip(range(3), gen)]
        gen.close()  # closes the frames too: the camera's reader stops
        deadline = time.monotonic() + 5
        while any(t.name.startswith("modelserve-source") for t in threading.enumerate()):
            assert time.monotonic() < deadline, "the stream's reader kept running after the caller stopped"
            time.sleep(0.05)
    assert [(r.origin.kind, r.origin.frame) for r in results] == [("stream", 0), ("stream", 1), ("stream", 2)]


def test_a_dropped_stream_reconnects_and_frame_indexes_go_on(jpegs):
    with Server({"/cam": mjpeg(jpegs)}) as server:
        frames = _within(20, lambda: _take(server.url("/cam?n=3"), 10, reconnect=2, timeout=2, read_ahead=16))
        assert server.hits["/cam"] >= 4 + 1  # the probe, then at least four connections of three frames
    assert [f.origin.frame for f in frames["value"]] == list(range(10))


def test_a_stream_that_stays_down_ends_with_a_source_error(jpegs):
    def flaky(h, q):  # the probe and the first connection get frames; then the camera is gone
        if h.server.hits["/cam"] <= 2:
            mjpeg(jpegs)(h, {"n": "3"})
        else:
            h.send_error(503, "camera off")

    with Server({"/cam": flaky}) as server:
        out = _within(20, lambda: _collect_with(server.url("/cam"), reconnect=2, timeout=2))
    frames, error = out["value"]
    assert len(frames) == 3
    assert isinstance(error, ms.SourceError) and "2 reconnect attempt(s) failed" in str(error)


def _collect_with(url, **options):
    frames, error = [], None
    try:
        for f in iter_frames(url, read_ahead=16, **options):
            frames.append(f)
    except ms.SourceError as exc:
        error = exc
    return frames, error


def test_a_stream_that_stalls_ends_within_its_timeouts(jpegs):
    def stalls(h, q):  # frames on the first connection, then silence; reconnecting finds silence too
        if h.server.hits["/cam"] <= 2:
            mjpeg(jpegs)(h, {"n": "2", "then": "stall"})
        else:
            h.wait(60)

    with Server({"/cam": stalls}) as server:
        out = _within(15, lambda: _collect_with(server.url("/cam"), reconnect=1, timeout=0.5))
    frames, error = out["value"]
    assert len(frames) == 2
    assert isinstance(error, ms.SourceError) and "lost" in str(error)
    assert out["elapsed"] < 6  # read timeout + one pause + one open timeout, with room for a slow machine


def test_a_stream_silent_from_the_start_fails_at_open():
    with Server({"/cam": lambda h, q: (h.send_response(200), h.send_header(
            "Content-Type", "multipart/x-mixed-replace; boundary=frame"), h.end_headers(), h.wait(60))}) as server:
        out = _within(15, lambda: list(iter_frames(server.url("/cam"), timeout=0.5)))
    assert isinstance(out.get("error"), ms.SourceError) and "cannot open live stream" in str(out["error"])
    assert out["elapsed"] < 5


def test_rtsp_that_never_answers_or_refuses_is_a_source_error():
    with StallingTcp() as tcp:
        out = _within(15, lambda: list(iter_frames(f"rtsp://user:secret@127.0.0.1:{tcp.port}/cam", timeout=0.5)))
    error = out.get("error")
    assert isinstance(error, ms.SourceError) and "user:***@" in str(error)
    assert "secret" not in str(error) and "secret" not in repr(error.__cause__)  # no password in logs
    assert out["elapsed"] < 5
    out = _within(15, lambda: list(iter_frames(f"rtsp://127.0.0.1:{free_port()}/cam", timeout=0.5)))
    assert isinstance(out.get("error"), ms.SourceError)


def test_a_missing_camera_is_a_source_error(predictor):
    src = open_source(97)
    assert src.live and src.name.endswith("97")
    out = _within(15, lambda: list(src))
    assert isinstance(out.get("error"), ms.SourceError)
    with pytest.raises(ms.SourceError, match="stream=True"):
        predictor.predict("97")


def test_the_read_ahead_backstop_ends_a_reader_that_ignores_its_timeouts():
    gate = threading.Event()

    def stuck():  # a reader blocked in a call that never returns (until the test ends)
        yield Frame(ms.sources.frames.Image(np.zeros((2, 2, 3), np.uint8), True), Origin("stream", "fake", 0))
        gate.wait(30)
        yield from ()

    reader = ReadAhead(stuck(), 4, name="fake camera", drop_oldest=True, stall=0.3)
    try:
        assert next(reader).origin.frame == 0
        t = time.monotonic()
        with pytest.raises(ms.SourceError, match="fake camera gave no frame for 0.3 s"):
            next(reader)
        assert time.monotonic() - t < 2
    finally:
        gate.set()


def test_live_read_ahead_keeps_the_freshest_frames():
    image = ms.sources.frames.Image(np.zeros((2, 2, 3), np.uint8), True)
    frames = (Frame(image, Origin("stream", "fake", i)) for i in range(10))
    reader = ReadAhead(frames, 2, name="fake", drop_oldest=True)
    time.sleep(0.5)  # the consumer is slow: the reader has read everything
    assert [f.origin.frame for f in reader] == [8, 9]
