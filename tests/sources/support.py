"""Helpers of the source tests: real photos encoded into real videos with PyAV, OpenCV's decode
as the reference, and exact comparison of results."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

PHOTOS = ("bus.jpg", "zidane.jpg", "astronaut.png", "coffee.png", "chelsea.png")
SIZE = (480, 640)  # height, width of every video frame
FPS = 10


def encode(path: Path, photos: list[np.ndarray], n: int, codec: str = "libx264", pix_fmt: str = "yuv420p",
           rotation: int = 0, fps: int = FPS) -> Path:
    """Write ``n`` frames cycling through ``photos`` (each shown twice in a row, so consecutive
    frames differ and repeat) into ``path`` with PyAV."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.height, stream.width = photos[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if rotation:
            if not hasattr(stream, "set_display_rotation"):
                pytest.skip("this PyAV cannot write a display rotation")
            stream.set_display_rotation(rotation)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(photos[(i // 2) % len(photos)], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def cv2_frames(path) -> list[np.ndarray]:
    """OpenCV's decode of every frame of a video (the reference)."""
    cv2 = pytest.importorskip("cv2")
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), path
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def same_results(a, b) -> None:
    """Two results hold the same detections, exactly."""
    assert a.class_id.tolist() == b.class_id.tolist()
    np.testing.assert_array_equal(a.xyxy, b.xyxy)
    np.testing.assert_array_equal(a.confidence, b.confidence)
