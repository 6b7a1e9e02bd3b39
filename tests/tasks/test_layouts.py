"""Each task's output layout is checked at load: a model whose outputs do not fit the task it
claims (from its metadata or task=) is refused with ModelLoadError naming what was expected and
found; a model that fits is read by that task's head. Engines here declare real output specs and
answer with arrays of those shapes, so the checks at load and on every run are both exercised."""

from __future__ import annotations

import numpy as np
import pytest

import modelserve as ms
from modelserve.tasks import TASKS, head_for

F32 = np.dtype(np.float32)
NAMES = {i: f"c{i}" for i in range(3)}


class _Declared(ms.Engine):
    """An engine that declares ``outputs`` and answers with random data of those shapes."""

    name = "declared-test"

    def __init__(self, outputs, meta, inputs=(None, 3, None, None)):
        self.inputs = (ms.TensorSpec("images", tuple(inputs), F32),)
        self.outputs = tuple(ms.TensorSpec(f"output{i}", tuple(s), F32) for i, s in enumerate(outputs))
        self.metadata = {"names": repr(NAMES), "stride": "32", **meta}
        self.device = "cpu"

    def run(self, feeds):
        (x,) = feeds.values()
        rng = np.random.default_rng(0)
        shapes = [[len(x) if d is None and i == 0 else (d or 64) for i, d in enumerate(s.shape)] for s in self.outputs]
        return [rng.random(s, dtype=np.float32) * 0.01 for s in shapes]


# task -> (outputs that fit, extra metadata)
FITS = {
    "detect": ([(None, 7, None)], {}),
    "segment": ([(None, 4 + 3 + 32, None), (None, 32, 80, 80)], {}),
    "pose": ([(None, 4 + 3 + 17 * 3, None)], {"kpt_shape": "[17, 3]"}),
    "obb": ([(None, 4 + 3 + 1, None)], {}),
    "classify": ([(None, 3)], {}),
}
E2E = {
    "detect": [(None, 300, 6)],
    "segment": [(None, 300, 6 + 32), (None, 32, 80, 80)],
    "pose": [(None, 300, 6 + 17 * 3)],
    "obb": [(None, 300, 7)],
}


def _info(engine):
    from modelserve._metadata import parse_metadata

    return parse_metadata(engine.metadata)


@pytest.mark.parametrize("task", sorted(FITS))
def test_each_task_layout_is_recognised_from_the_metadata(task):
    outputs, meta = FITS[task]
    engine = _Declared(outputs, {"task": task, **meta})
    head = head_for(engine, _info(engine))
    assert head.task == task and not head.end2end


@pytest.mark.parametrize("task", sorted(E2E))
def test_end_to_end_layouts_are_recognised(task):
    meta = {"task": task, "end2end": "True", **FITS[task][1]}
    engine = _Declared(E2E[task], meta)
    head = head_for(engine, _info(engine))
    assert head.task == task and head.end2end


@pytest.mark.parametrize("task", sorted(FITS))
@pytest.mark.parametrize("claimed", sorted(FITS))
def test_a_model_loaded_as_the_wrong_task_is_refused(task, claimed):
    if task == claimed:
        return
    outputs, meta = FITS[task]
    meta = {**meta, "kpt_shape": "[17, 3]"}
    with pytest.raises(ms.ModelLoadError, match=rf"task={claimed!r}, but (expected|a pose model)"):
        ms.load(_Declared(outputs, {"task": task, **meta}), task=claimed)


CORRUPT = {
    "detect": [(None, 9, None)],  # 4 + 5 channels for 3 class names
    "segment": [(None, 4 + 3 + 31, None), (None, 32, 80, 80)],  # coefficients do not match the protos
    "pose": [(None, 4 + 3 + 17 * 2, None)],  # kpt_shape says 17 x 3
    "obb": [(None, 4 + 3 + 2, None)],
    "classify": [(None, 5)],
}


@pytest.mark.parametrize("task", sorted(CORRUPT))
def test_a_corrupted_layout_is_refused_naming_expected_and_found(task):
    meta = {"task": task, **FITS[task][1]}
    with pytest.raises(ms.ModelLoadError) as info:
        ms.load(_Declared(CORRUPT[task], meta))
    text = str(info.value)
    assert "expected" in text and str(list(CORRUPT[task][0])[1]) in text, text


def test_unknown_tasks_are_refused():
    with pytest.raises(ms.ModelLoadError, match="modelserve knows"):
        ms.load(_Declared(FITS["detect"][0], {"task": "depth"}))
    with pytest.raises(ms.InvalidInputError, match="task must be one of"):
        ms.load(_Declared(FITS["detect"][0], {"task": "detect"}), task="depth")
    assert set(TASKS) >= {"detect", "segment", "pose", "obb", "classify", "rtdetr"}


def test_pose_needs_a_valid_kpt_shape():
    for bad in (None, "[17]", "[17, 4]", "'x'"):
        meta = {"task": "pose"} if bad is None else {"task": "pose", "kpt_shape": bad}
        with pytest.raises(ms.ModelLoadError, match="kpt_shape"):
            ms.load(_Declared(FITS["pose"][0], meta))


def test_classifier_scores_that_are_not_probabilities_are_an_error(bgr):
    class Logits(_Declared):
        def run(self, feeds):
            (x,) = feeds.values()
            return [np.full((len(x), 3), 3.0, np.float32)]

    p = ms.load(Logits([(None, 3)], {"task": "classify", "imgsz": "[64, 64]"}, inputs=(1, 3, 64, 64)))
    with pytest.raises(ms.ModelLoadError, match="not softmax probabilities"):
        p.predict(bgr("bus.jpg"))


def test_pose_keypoint_confidences_outside_unit_range_are_an_error(bgr):
    class BadKpts(_Declared):
        def run(self, feeds):
            (x,) = feeds.values()
            out = np.zeros((len(x), 4 + 3 + 6, 64), np.float32)
            out[:, :4] = 10.0  # boxes
            out[:, 4] = 0.9  # one confident class
            out[:, 7 + 2 :: 3] = 40.0  # "visibility" 40: not a sigmoid
            return [out]

    p = ms.load(BadKpts([(None, 13, None)], {"task": "pose", "kpt_shape": "[2, 3]"}))
    with pytest.raises(ms.ModelLoadError, match="keypoint confidence of 40"):
        p.predict(bgr("bus.jpg"))


def test_pose_keypoints_are_gathered_from_the_kept_anchors_and_scaled(bgr):
    class TwoPeople(_Declared):
        def run(self, feeds):
            (x,) = feeds.values()
            h, w = x.shape[2:]
            out = np.zeros((len(x), 4 + 3 + 6, 64), np.float32)
            # anchor 5: a box centred in the tensor, class 1, keypoints at its centre and corner
            out[:, 0:4, 5] = [w / 2, h / 2, 40, 40]
            out[:, 5, 5] = 0.8
            out[:, 7:13, 5] = [w / 2, h / 2, 0.9, w / 2 + 20, h / 2 + 20, 0.4]
            # anchor 9: far away, class 2
            out[:, 0:4, 9] = [20, 20, 10, 10]
            out[:, 6, 9] = 0.6
            out[:, 7:13, 9] = [20, 20, 0.7, -50, 25, 0.2]  # one keypoint off the image: clipped
            return [out]

    img = bgr("bus.jpg")
    p = ms.load(TwoPeople([(None, 13, None)], {"task": "pose", "kpt_shape": "[2, 3]", "imgsz": "[320, 320]"}))
    r = p.predict(img)
    assert r.class_id.tolist() == [1, 2] and r.keypoints.shape == (2, 2, 3)
    H, W = img.shape[:2]
    np.testing.assert_allclose(r.keypoints[0, 0, :2], [W / 2, H / 2], atol=0.01)
    assert r.keypoints[1, 1, 0] == 0.0  # clipped to the image, as scale_coords does
    np.testing.assert_allclose(r.keypoints[:, :, 2], [[0.9, 0.4], [0.7, 0.2]], atol=1e-6)
    assert r[1:].keypoints.shape == (1, 2, 3) and r[r.class_id == 1].keypoints[0, 1, 2] == pytest.approx(0.4)
    assert "keypoints" in r.to_dict()
