"""``Predictor.predict`` with sources: what it always took keeps its answers, iterables and
generators stream with bounded read-ahead, every result has an origin, and the verbose lines and
load facts are logged in Ultralytics' words."""

from __future__ import annotations

import importlib.util
import logging
import re
import time
import types

import numpy as np
import pytest

import modelserve as ms
from modelserve.sources import Frame, Origin, report
from modelserve.sources.readahead import ReadAhead

from .support import same_results

PHOTOS = ["bus.jpg", "zidane.jpg", "astronaut.png", "coffee.png", "chelsea.png"]


@pytest.fixture(scope="module")
def images(bgr):
    return [bgr(name) for name in PHOTOS]


def _counting(images, counter):
    for img in images:
        counter["pulled"] += 1
        yield img


@pytest.mark.parametrize("batch", [1, 2])
def test_a_generator_is_consumed_only_as_far_as_needed(predictor, images, batch):
    counter = {"pulled": 0}
    gen = predictor.predict(_counting(images * 4, counter), stream=True, conf=0.05, batch=batch)
    assert isinstance(gen, types.GeneratorType) and counter["pulled"] == 0  # lazy
    for k, result in enumerate(gen, 1):
        assert counter["pulled"] <= k + batch - 1  # never more than one batch ahead of the results
        assert result.origin == Origin("memory", None, k - 1)
        if k == 7:
            break
    gen.close()
    assert counter["pulled"] <= 7 + batch - 1


def test_a_generator_gives_what_the_list_gives(predictor, images):
    want = predictor.predict(images, conf=0.05)
    got = predictor.predict((img for img in images), conf=0.05, batch=3)
    assert isinstance(got, list) and len(got) == len(want)
    for a, b in zip(got, want):
        same_results(a, b)
        assert a.origin == b.origin
    streamed = list(predictor.predict(source=images, stream=True, conf=0.05))
    for a, b in zip(streamed, want):
        same_results(a, b)


def test_a_generator_through_the_micro_batcher(detector_path, predictor, images):
    want = predictor.predict(images * 2, conf=0.05)
    with ms.load(detector_path, batching=ms.Batching(max_batch_size=4, max_delay_ms=5)) as p:
        got = list(p.predict(iter(images * 2), stream=True, conf=0.05, batch=4))
    assert len(got) == len(want)
    for a, b in zip(got, want):
        same_results(a, b)


def test_file_read_ahead_is_bounded():
    counter = {"pulled": 0}
    image = ms.sources.frames.Image(np.zeros((2, 2, 3), np.uint8), True)

    def frames():
        for i in range(10_000):
            counter["pulled"] += 1
            yield Frame(image, Origin("video", "long.mp4", i))

    reader = ReadAhead(frames(), 4, name="long video")
    try:
        assert next(reader).origin.frame == 0
        time.sleep(0.3)  # the reader fills the queue, then waits for room
        assert counter["pulled"] <= 1 + 4 + 1  # taken, queued, and the one waiting for room
        assert [next(reader).origin.frame for _ in range(3)] == [1, 2, 3]  # nothing dropped
    finally:
        reader.close()


def test_what_predict_always_took_keeps_its_shape_and_gains_an_origin(predictor, images, photo):
    one = predictor.predict(images[0])
    assert isinstance(one, ms.Detections) and one.origin == Origin("memory")
    path = str(photo("bus.jpg"))
    many = predictor.predict([images[0], path])
    assert isinstance(many, list) and many[0].origin == Origin("memory", None, 0)
    assert many[1].origin == Origin("file", path, 1)
    assert predictor.predict([]) == []
    same_results(predictor.predict(source=images[0]), one)
    same_results(predictor(images[0]), one)
    assert list(predictor.predict(images[0], stream=True))[0].origin == Origin("memory")


@pytest.mark.parametrize("kwargs, match", [
    ({}, "needs an image or a source.*got None"),
    ({"images": "a.jpg", "source": "b.jpg"}, "not both"),
    ({"images": "x.jpg", "batch": 0}, "batch"),
    ({"images": "x.mp4", "vid_stride": 0}, "vid_stride"),
    ({"images": True}, "a source must be"),
    ({"images": 3.5}, "an image must be"),
], ids=["neither", "both", "batch", "vid_stride", "bool", "float"])
def test_bad_calls_are_typed_errors(predictor, kwargs, match):
    with pytest.raises(ms.InvalidInputError, match=match):
        predictor.predict(**kwargs)


_LINE = re.compile(r"^(?P<prefix>.*?)(?P<h>\d+)x(?P<w>\d+) (?P<what>.*?)(?P<ms>\d+\.\d)ms$")


def test_verbose_logs_ultralytics_lines(predictor, images, photo, caplog):
    caplog.set_level(logging.INFO, logger="modelserve")
    path = str(photo("bus.jpg"))
    results = predictor.predict([images[1], path], conf=0.05, verbose=True)
    lines = [r.getMessage() for r in caplog.records if r.name == "modelserve"]
    assert len(lines) == 3
    first, second = (_LINE.match(line) for line in lines[:2])
    assert first and first["prefix"] == "0: " and second and second["prefix"] == f"image 2/2 {path}: "
    for m, r in zip((first, second), results):
        assert (int(m["h"]), int(m["w"])) == predictor._input_hw(r.orig_shape)
        assert m["what"] == report.describe(r) and m["what"].endswith(", ")
        assert float(m["ms"]) == pytest.approx(r.speed["inference"], abs=0.051)
    assert re.match(r"^Speed: \d+\.\dms preprocess, \d+\.\dms inference, \d+\.\dms postprocess per image "
                    r"at shape \(2, 3, \d+, \d+\)$", lines[2])


def test_describe_counts_classes_as_ultralytics(predictor, images):
    r = predictor.predict(images[1], conf=0.01)
    counts = np.bincount(r.class_id)
    assert (counts > 1).any() and (counts == 1).any()  # plural and singular names both shown
    want = "".join(f"{n} {r.names[i]}{'s' * (n > 1)}, " for i, n in enumerate(counts.tolist()) if n)
    assert report.describe(r) == want
    assert report.describe(r[r.confidence > 2]) == "(no detections), "
    if importlib.util.find_spec("torch") and importlib.util.find_spec("ultralytics"):
        import torch
        from ultralytics.engine.results import Results

        boxes = torch.as_tensor(np.concatenate([r.xyxy, r.confidence[:, None], r.class_id[:, None]], 1))
        theirs = Results(images[1], path="x.jpg", names=dict(r.names), boxes=boxes)
        assert report.describe(r) == theirs.verbose()


def test_silent_by_default(predictor, images, caplog):
    caplog.set_level(logging.DEBUG, logger="modelserve")
    predictor.predict(images[:2])
    list(predictor.predict(iter(images[:2]), stream=True))
    assert not [r for r in caplog.records if r.name.startswith("modelserve")]


@pytest.mark.parametrize("unconfigured", ["no handler", "info not shown"])
def test_verbose_where_logging_would_not_show_it_writes_to_stderr(predictor, images, capsys, caplog, monkeypatch,
                                                                  unconfigured):
    if unconfigured == "no handler":
        monkeypatch.setattr(report, "_configured", lambda logger: False)
    else:
        caplog.set_level(logging.WARNING, logger="modelserve")
    predictor.predict(images[0], verbose=True)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and _LINE.match(err[0])["prefix"] == "0: " and err[1].startswith("Speed: ")
    assert not [r for r in caplog.records if r.name == "modelserve"]


def test_the_modelserve_logger_is_silent_until_configured():
    logger = logging.getLogger("modelserve")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    assert logger.level == logging.NOTSET and logger.propagate


def test_load_logs_its_facts_at_debug(detector_path, caplog):
    caplog.set_level(logging.DEBUG, logger="modelserve")
    with ms.load(detector_path):
        pass
    (line,) = [r.getMessage() for r in caplog.records if r.name == "modelserve" and r.levelno == logging.DEBUG]
    for fact in ("engine=onnxruntime", "device=cpu", "imgsz=(320, 320) (dynamic)", "task=detect", "classes=18"):
        assert fact in line, line
