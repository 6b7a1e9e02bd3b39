"""``modelserve predict`` and ``batch_predict``: a real model over real photos and a real video, into
resumable JSON lines, with bad files skipped and an interrupted run left consistent."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import modelserve as ms
from modelserve.cli import main
from tests import assets

PHOTOS = ("bus.jpg", "zidane.jpg", "astronaut.png")


@pytest.fixture()
def folder(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    for name in PHOTOS:
        shutil.copy(assets.photo(name), d / name)
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    (d / "notes.md").write_text("not an image: ignored, as Ultralytics ignores it")
    return d


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_folder_into_json_lines_skipping_the_bad_file(folder, tmp_path, detector_path, capsys):
    out = tmp_path / "results.jsonl"
    assert main(["predict", str(detector_path), str(folder), "--out", str(out), "--quiet", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["files"] == 4 and summary["frames"] == 3 and len(summary["failures"]) == 1
    assert summary["failures"][0][0].endswith("broken.jpg")
    lines = _lines(out)
    assert [rec["path"].rsplit("/", 1)[1] for rec in lines] == sorted(PHOTOS)  # Ultralytics' order
    with ms.load(detector_path) as p:
        for rec in lines:
            want = p.predict(rec["path"])
            assert [d["class_id"] for d in rec["detections"]] == want.class_id.tolist()
            got = np.array([d["xyxy"] for d in rec["detections"]], np.float32).reshape(-1, 4)
            np.testing.assert_allclose(got, want.xyxy, rtol=1e-6)
            assert rec["kind"] == "file" and rec["frame"] is None
    total = sum(len(rec["detections"]) for rec in lines)
    assert sum(summary["detections"].values()) == total


def test_a_rerun_skips_what_the_output_holds_and_repairs_a_torn_line(folder, tmp_path, detector_path):
    out = tmp_path / "results.jsonl"
    first = ms.batch_predict(detector_path, folder, out=out)
    assert first.frames == 3 and first.skipped == 0
    again = ms.batch_predict(detector_path, folder, out=out)
    assert again.frames == 0 and again.skipped == 3 and len(_lines(out)) == 3
    text = out.read_text().splitlines(keepends=True)
    out.write_text("".join(text[:2]) + text[2][: len(text[2]) // 2])  # killed in the middle of a line
    repaired = ms.batch_predict(detector_path, folder, out=out)
    assert repaired.frames == 1 and repaired.skipped == 2
    assert sorted(rec["path"] for rec in _lines(out)) == sorted(rec["path"] for rec in _lines(out)[:3])
    assert len(_lines(out)) == 3


def test_video_frames_with_a_stride(tmp_path, detector_path):
    pytest.importorskip("av")
    from PIL import Image

    from tests.sources.support import encode

    photos = [np.asarray(Image.open(assets.photo(n)).convert("RGB").resize((320, 240))) for n in PHOTOS]
    video = encode(tmp_path / "clip.mp4", photos, 12)
    out = tmp_path / "video.jsonl"
    summary = ms.batch_predict(detector_path, video, out=out, vid_stride=3, batch=2)
    lines = _lines(out)
    assert summary.frames == len(lines) == 4 and [rec["frame"] for rec in lines] == [2, 5, 8, 11]
    assert all(rec["kind"] == "video" and rec["timestamp"] is not None for rec in lines)


def test_an_interrupted_job_keeps_whole_lines(tmp_path, detector_path, bgr):
    images = [bgr(n) for n in PHOTOS]

    def frames():
        yield images[0]
        yield images[1]
        raise KeyboardInterrupt

    out = tmp_path / "int.jsonl"
    summary = ms.batch_predict(detector_path, frames(), out=out, batch=1)
    assert summary.interrupted and summary.frames == 2
    assert [rec["frame"] for rec in _lines(out)] == [0, 1]


def test_bad_usage(detector_path, folder, capsys):
    assert main(["predict", str(detector_path), str(folder), "--save-txt"]) == 2
    assert "--save DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["predict", str(detector_path), str(folder), "--imgsz", "big"])
    assert main(["predict", str(detector_path), str(folder / "missing.jpg"), "--quiet"]) == 0
    assert "skipped" in capsys.readouterr().err


def test_save_pictures_and_labels(folder, tmp_path, detector_path):
    from PIL import Image

    runs = tmp_path / "runs"
    assert main(["predict", str(detector_path), str(folder), "--save", str(runs), "--save-txt", "--quiet"]) == 0
    pictures = sorted(p.name for p in runs.glob("*.jpg"))
    assert pictures == sorted(n.rsplit(".", 1)[0] + ".jpg" for n in PHOTOS)
    with ms.load(detector_path) as p:
        r = p.predict(str(folder / "bus.jpg"))
    assert len(r)
    saved = np.asarray(Image.open(runs / "bus.jpg"))
    assert saved.shape == (*r.orig_shape, 3)
    labels = (runs / "labels" / "bus.txt").read_text().splitlines()
    assert len(labels) == len(r) and [int(line.split()[0]) for line in labels] == r.class_id.tolist()


def test_save_an_annotated_video(tmp_path, detector_path):
    av = pytest.importorskip("av")
    from PIL import Image

    from tests.sources.support import encode

    photos = [np.asarray(Image.open(assets.photo(n)).convert("RGB").resize((320, 240))) for n in PHOTOS]
    video = encode(tmp_path / "clip.mp4", photos, 10)
    runs = tmp_path / "runs"
    summary = ms.batch_predict(detector_path, video, save_dir=runs, save_txt=True, vid_stride=2)
    assert summary.frames == 5
    with av.open(str(runs / "clip.mp4")) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 5 and frames[0].shape == (240, 320, 3)
    labels = {p.name for p in (runs / "labels").glob("*.txt")}  # frames with detections (no file for none)
    assert labels and labels <= {f"clip_{i}.txt" for i in (1, 3, 5, 7, 9)}


def test_ctrl_c_stops_cleanly_with_whole_lines(tmp_path, detector_path):
    """SIGINT to a real `modelserve predict` process in the middle of a video: exit status 130, every
    line of the output whole, and a re-run continues where it stopped."""
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("av")
    from PIL import Image

    from tests.sources.support import encode

    photos = [np.asarray(Image.open(assets.photo(n)).convert("RGB").resize((320, 240))) for n in PHOTOS]
    video = encode(tmp_path / "long.mp4", photos, 120)
    out = tmp_path / "long.jsonl"
    cmd = [sys.executable, "-m", "modelserve", "predict", str(detector_path), str(video), "--out", str(out),
           "--batch", "1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 5):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr.decode()
    assert b"interrupted" in stdout
    lines = _lines(out)  # every line parses
    assert 5 <= len(lines) < 120 and [rec["frame"] for rec in lines] == list(range(len(lines)))
    rest = ms.batch_predict(detector_path, video, out=out)
    assert rest.skipped == len(lines) and rest.frames == 120 - len(lines)
    assert [rec["frame"] for rec in _lines(out)] == list(range(120))


def test_layout_flag_reads_a_yolov5_file_as_yolov7(tmp_path):
    model = assets.HERE / "goldens" / "families" / "yolov5-tiny.onnx"  # YOLOv5 rows: read as yolov5 unless told
    image = str(assets.photo("bus.jpg"))
    outs = {}
    for layout in (None, "yolov7"):
        out = tmp_path / f"{layout}.jsonl"
        argv = ["predict", str(model), image, "--out", str(out), "--quiet", "--conf", "0.05"]
        assert main(argv + (["--layout", layout] if layout else [])) == 0
        outs[layout] = _lines(out)[0]["detections"]
    with ms.load(model, conf=0.05) as p5:
        assert len(outs[None]) == len(p5.predict(image)) > 300  # YOLOv5's detect.py: max_det 1000
    assert len(outs["yolov7"]) == 300  # YOLOv7's NMS keeps at most 300
    with pytest.raises(SystemExit):
        main(["predict", str(model), image, "--layout", "yolov8"])
