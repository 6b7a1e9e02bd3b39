"""``http(s)://`` image sources against a local server: fetched whole within size and time limits;
every failure is a typed SourceError naming the URL."""

from __future__ import annotations

import time

import numpy as np
import pytest

import modelserve as ms
from modelserve.sources import iter_frames, urls

from .servers import Server, free_port, send_body
from .support import cv2_frames, same_results


@pytest.fixture(scope="module")
def jpeg(photo) -> bytes:
    return photo("bus.jpg").read_bytes()


@pytest.fixture
def server(jpeg):
    def big(h, q):  # announces 10 MB
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(10 * 2**20))
        h.end_headers()
        h.wfile.write(jpeg)

    def unannounced(h, q):  # no Content-Length: the size is counted while reading
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.end_headers()
        for _ in range(40):
            h.wfile.write(b"\0" * 65536)

    def slow(h, q):
        h.wait(30)

    def drip(h, q):  # a byte every 50 ms: each read is quick, the whole fetch is not
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.end_headers()
        for b in jpeg:
            h.wfile.write(bytes([b]))
            h.wfile.flush()
            if not h.wait(0.05):
                return

    def redirect(h, q):
        h.send_response(302)
        h.send_header("Location", "/bus.jpg")
        h.end_headers()

    routes = {
        "/bus.jpg": lambda h, q: send_body(h, jpeg),
        "/big": big, "/unannounced": unannounced, "/slow": slow, "/drip": drip, "/redirect": redirect,
        "/text": lambda h, q: send_body(h, b"hello", "text/plain"),
        "/empty": lambda h, q: send_body(h, b""),
    }
    with Server(routes) as s:
        yield s


def test_an_image_url_gives_one_result_as_its_bytes_do(server, predictor, jpeg):
    url = server.url("/bus.jpg")
    got = predictor.predict(url, conf=0.05)
    assert isinstance(got, ms.Detections)
    same_results(got, predictor.predict(jpeg, conf=0.05))
    assert got.origin == ms.sources.Origin("url", url)
    streamed = list(predictor.predict(source=url, stream=True, conf=0.05))
    assert len(streamed) == 1
    same_results(streamed[0], got)
    same_results(predictor.predict(server.url("/redirect"), conf=0.05), got)


@pytest.mark.parametrize("path, options, match", [
    ("/missing", {}, "HTTP 404"),
    ("/big", {"max_bytes": 2**20}, "10485760 bytes, more than the limit"),
    ("/unannounced", {"max_bytes": 2**20}, "more than the limit of 1048576 bytes"),
    ("/text", {}, "did not send a decodable image"),
    ("/empty", {}, "empty body"),
    ("/slow", {"timeout": 0.5}, "timed out after 0.5 s"),
    ("/drip", {"timeout": 0.5}, "longer than its time limit"),
], ids=["404", "announced-too-big", "counted-too-big", "not-an-image", "empty", "no-answer", "drip"])
def test_url_failures_are_source_errors_within_the_time_limit(server, path, options, match):
    url = server.url(path)
    t = time.monotonic()
    with pytest.raises(ms.SourceError, match=match) as info:
        list(iter_frames(url, **options))
    assert time.monotonic() - t < 3
    assert url in str(info.value)


def test_refused_connections_and_other_schemes(predictor):
    with pytest.raises(ms.SourceError, match="cannot fetch"):
        predictor.predict(f"http://127.0.0.1:{free_port()}/x.jpg")
    with pytest.raises(ms.SourceError, match="only http"):
        urls.probe("ftp://127.0.0.1/x.jpg")


def test_bad_limits_are_refused():
    for bad in ({"timeout": 0}, {"timeout": float("nan")}, {"vid_stride": 0}, {"read_ahead": 0}, {"reconnect": -1}):
        with pytest.raises(ms.InvalidInputError):
            ms.sources.open_source("http://127.0.0.1:1/x.jpg", **bad)


def _ranged(data: bytes, ctype: str):
    """A file served with byte ranges, as FFmpeg asks for when it seeks in an MP4."""

    def route(h, q):
        start = 0
        header = h.headers.get("Range", "")
        if header.startswith("bytes="):
            start = int(header[6:].split("-")[0] or 0)
        body = data[start:]
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", ctype)
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Length", str(len(body)))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        h.wfile.write(body)

    return route


def test_a_video_url_is_read_from_the_network_frame_for_frame(clip, predictor):
    pytest.importorskip("av")
    path = clip("h264.mp4", codec="libx264", pix_fmt="yuv420p")
    want = cv2_frames(path)
    routes = {"/clip.mp4": _ranged(path.read_bytes(), "application/octet-stream"),
              "/watch": _ranged(path.read_bytes(), "video/mp4")}
    with Server(routes) as server:
        for route in routes:  # by its suffix, or by the type the server says
            got = list(iter_frames(server.url(route), timeout=5))
            assert len(got) == len(want)
            for frame, ref in zip(got, want):
                np.testing.assert_array_equal(frame.image.pixels, ref)
            assert got[3].origin == ms.sources.Origin("video", server.url(route), 3, pytest.approx(0.3))
        results = predictor.predict(server.url("/watch"), conf=0.05)
        assert len(results) == len(want)
        same_results(results[5], predictor.predict(want[5], conf=0.05))
