"""The examples run for real: a batch job over a folder and a threaded web service on loopback."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

import modelserve as ms

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
sys.path.insert(0, str(EXAMPLES))

import batch_job  # noqa: E402
import http_service  # noqa: E402


def test_batch_job(tmp_path, detector_path, photo):
    folder = tmp_path / "images"
    folder.mkdir()
    names = ["bus.jpg", "astronaut.png", "camera.png", "chelsea.png"]
    for n in names:
        shutil.copy(photo(n), folder / n)
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "out.jsonl"
    summary = batch_job.run(detector_path, folder, out, batch=3, conf=0.1)
    assert summary["images"] == 4 and summary["failed"] == 1
    lines = {d["file"]: d for d in map(json.loads, out.read_text().splitlines())}
    assert "cannot decode" in lines["broken.jpg"]["error"]
    p = ms.load(detector_path, conf=0.1)
    for n in names:
        want = p.predict(photo(n))
        got = lines[n]["detections"]
        assert [d["class_id"] for d in got] == want.class_id.tolist()
        np.testing.assert_allclose([d["xyxy"] for d in got] or np.zeros((0, 4)), want.xyxy, rtol=1e-6)


def test_http_service_concurrent_requests(detector_path, photo):
    predictor = ms.load(detector_path, batching=ms.Batching(max_batch_size=8, max_delay_ms=5))
    server = http_service.make_server(predictor, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_port}/detect"
    try:
        bodies = {n: photo(n).read_bytes() for n in ("bus.jpg", "astronaut.png")}
        expected = {n: ms.load(detector_path).predict(b, conf=0.1) for n, b in bodies.items()}

        def post(name: str, body: bytes, query: str = "?conf=0.1"):
            req = urllib.request.Request(url + query, data=body, method="POST")
            try:
                with urllib.request.urlopen(req, timeout=60) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        with ThreadPoolExecutor(12) as pool:
            jobs = [pool.submit(post, n, bodies[n]) for n in ["bus.jpg", "astronaut.png"] * 12]
            for n, job in zip(["bus.jpg", "astronaut.png"] * 12, jobs):
                status, payload = job.result(timeout=120)
                assert status == 200
                assert [d["class_id"] for d in payload["detections"]] == expected[n].class_id.tolist()
        status, payload = post("bad", b"garbage bytes")
        assert status == 400 and "cannot decode" in payload["error"]
        status, payload = post("bad", bodies["bus.jpg"], "?conf=2")
        assert status == 400 and "conf" in payload["error"]
        assert predictor.batcher.stats().items >= 24
    finally:
        server.shutdown()
        server.server_close()
        predictor.close()


def test_camera_loop_on_a_video(tmp_path, detector_path, capsys):
    """The camera example, run on a real video file (the same loop a live stream takes)."""
    import camera_loop
    import pytest

    pytest.importorskip("av")
    from PIL import Image

    from tests import assets
    from tests.sources.support import encode

    photos = [np.asarray(Image.open(assets.photo(n)).convert("RGB").resize((320, 240))) for n in ("bus.jpg", "zidane.jpg")]
    video = encode(tmp_path / "cam.mp4", photos, 8)
    seen = camera_loop.run(str(detector_path), str(video), every=2, snapshot=str(tmp_path / "last.jpg"))
    assert seen == 4 and (tmp_path / "last.jpg").stat().st_size > 0
    assert capsys.readouterr().out.count("frame ") == 4


def test_nightly_folder_job_resumes(tmp_path, detector_path, photo):
    import nightly_folder

    folder = tmp_path / "incoming"
    folder.mkdir()
    for n in ("bus.jpg", "zidane.jpg"):
        shutil.copy(photo(n), folder / n)
    out = tmp_path / "results"
    first = nightly_folder.run(str(detector_path), str(folder), str(out))
    assert first.frames == 2 and (out / "pictures" / "bus.jpg").is_file()
    shutil.copy(photo("astronaut.png"), folder / "astronaut.png")
    second = nightly_folder.run(str(detector_path), str(folder), str(out))
    assert second.frames == 1 and second.skipped == 2
    assert len((out / "results.jsonl").read_text().splitlines()) == 3
    assert json.loads((out / "summary.json").read_text())["frames"] == 1
