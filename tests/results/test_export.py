"""``summary()`` and ``to_json(schema="ultralytics")`` in Ultralytics' schema (against the goldens'
``Results.summary()``), ``to_csv()`` and ``to_df()`` built from them, and their arguments."""

from __future__ import annotations

import csv
import io
import json
import sys

import numpy as np
import pytest

import modelserve as ms

from ._goldens import HERE, MODELS, assert_tree_close, cases, golden_result, task_of


@pytest.fixture(scope="module")
def names():
    cache: dict[str, dict] = {}

    def get(model: str) -> dict:
        if model not in cache:
            with ms.load(HERE / "models" / f"{model}.onnx") as p:
                cache[model] = dict(p.names)
        return cache[model]

    return get


@pytest.mark.parametrize("model", MODELS)
def test_summary_is_ultralytics_summary(model, names, bgr):
    """From Ultralytics' own arrays, ``summary()`` (plain and normalised) is Ultralytics' list to the
    last rounded digit; oriented boxes' corners within float32 cos/sin of Ultralytics' torch ones."""
    task, g = task_of(model), np.load(HERE / f"{model}.npz")
    atol = 2e-4 if task == "obb" else 0.0
    checked = 0
    for key, photo, _ in cases(model):
        if f"{key}:summary" not in g.files:
            continue
        r = golden_result(task, g, key, names(model), bgr(photo).shape[:2])
        want, want_n = json.loads(str(g[f"{key}:summary"])), json.loads(str(g[f"{key}:summary_n"]))
        assert_tree_close(r.summary(), want, atol, key)
        assert_tree_close(r.summary(normalize=True), want_n, atol / 100, key)
        assert_tree_close(json.loads(r.to_json(schema="ultralytics")), want, atol, key)
        assert_tree_close(json.loads(r.to_json(schema="ultralytics", normalize=True)), want_n, atol / 100, key)
        checked += 1
    assert checked >= (4 if task == "classify" else 3)


@pytest.mark.parametrize("model", ["seg", "pose", "obb", "cls"])
def test_csv_and_dataframe_hold_the_summary(model, bgr):
    with ms.load(HERE / "models" / f"{model}.onnx") as p:
        r = p.predict(bgr("zidane.jpg"))
    rows = r.summary(decimals=3)
    assert rows and rows[0]["confidence"] == round(float(r.confidence[0] if model != "cls" else r.top1conf), 3)
    table = list(csv.reader(io.StringIO(r.to_csv(decimals=3))))
    header, lines = table[0], table[1:]
    assert len(lines) == len(rows)
    want_header = {"seg": ["segments_x", "segments_y"], "pose": ["keypoints_x", "keypoints_y", "keypoints_visible"],
                   "obb": ["box_x3", "box_y3", "box_x4", "box_y4"], "cls": []}[model]
    assert header[:3] == ["name", "class", "confidence"] and header[len(header) - len(want_header):] == want_header
    for line, row in zip(lines, rows):
        flat = {}
        for k, v in row.items():
            flat.update({f"{k}_{s}": x for s, x in v.items()} if isinstance(v, dict) else {k: v})
        assert list(flat) == header
        for cell, value in zip(line, flat.values()):
            assert (json.loads(cell) if isinstance(value, list) else type(value)(cell)) == value
    if _missing("pandas") and _missing("polars"):
        return  # to_df's error without them: test_dataframe_prefers_pandas_and_names_it_when_missing
    df = r.to_df(decimals=3)
    assert list(df.columns) == header and len(df) == len(rows)
    assert df["class"].to_list() == [x["class"] for x in rows]
    assert df["confidence"].to_list() == [x["confidence"] for x in rows]
    if model in ("seg", "pose"):
        column = "segments_x" if model == "seg" else "keypoints_x"
        assert list(df[column].to_list()[0]) == rows[0][column.split("_")[0]]["x"]


def _missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


def test_dataframe_prefers_pandas_and_names_it_when_missing(monkeypatch, bgr):
    with ms.load(HERE / "models" / "pose.onnx") as p:
        r = p.predict(bgr("zidane.jpg"))
    empty = ms.Detections.empty({0: "a"}, (10, 10))
    if not _missing("pandas"):
        import pandas as pd

        df = r.to_df()
        assert isinstance(df, pd.DataFrame) and df["keypoints_x"].iloc[0] == r.summary()[0]["keypoints"]["x"]
        assert str(empty.to_df()["class"].dtype) == "int64"
        monkeypatch.setitem(sys.modules, "pandas", None)  # now as if only polars were installed
    if not _missing("polars"):
        import polars as pl

        assert isinstance(r.to_df(), pl.DataFrame) and empty.to_df().schema["confidence"] == pl.Float64
    monkeypatch.setitem(sys.modules, "pandas", None)
    monkeypatch.setitem(sys.modules, "polars", None)
    for result in (r, empty, ms.Classification(np.array([0.75, 0.25], np.float32), {0: "a", 1: "b"}, (4, 4))):
        with pytest.raises(ImportError, match=r"pip install pandas"):
            result.to_df()


def test_classification_exports():
    c = ms.Classification(np.array([0.1, 0.6, 0.05, 0.2, 0.03, 0.02], np.float32), {i: f"c{i}" for i in range(6)},
                          (20, 30))
    want = [{"name": f"c{i}", "class": i, "confidence": round(float(np.float32(v)), 5)}
            for i, v in [(1, 0.6), (3, 0.2), (0, 0.1), (2, 0.05), (4, 0.03)]]
    assert c.summary() == want == json.loads(c.to_json(schema="ultralytics"))
    assert c.summary(normalize=True) == want and c.summary(decimals=1)[0]["confidence"] == 0.6
    assert c.to_csv().splitlines() == ["name,class,confidence", "c1,1,0.6", "c3,3,0.2", "c0,0,0.1", "c2,2,0.05",
                                       "c4,4,0.03"]
    assert json.loads(c.to_json())["top5"][0]["class_id"] == 1  # the default schema is unchanged
    assert c.probs.top5 == c.top5 == [1, 3, 0, 2, 4] and c.probs.top1 == c.top1 == 1
    with pytest.raises(ms.InvalidInputError, match="1-D"):
        ms.Classification(np.ones((2, 2), np.float32))


def test_to_json_default_is_unchanged_and_options_are_checked(bgr):
    with ms.load(HERE / "models" / "seg.onnx") as p:
        r = p.predict(bgr("zidane.jpg"))
    assert json.loads(r.to_json()) == json.loads(json.dumps(r.to_dict()))
    assert json.loads(r.to_json(schema="modelserve", indent=2)) == json.loads(r.to_json())
    assert json.loads(r.to_json(schema="ultralytics", decimals=2)) == r.summary(decimals=2)
    assert r.summary(decimals=0)[0]["box"]["x1"] == round(float(r.xyxy[0, 0]))
    for kwargs, match in [({"schema": "yolo"}, "schema must be"), ({"normalize": True}, "schema='ultralytics'"),
                          ({"decimals": 3}, "schema='ultralytics'"),
                          ({"schema": "ultralytics", "normalize": "yes"}, "normalize must be"),
                          ({"schema": "ultralytics", "decimals": 2.5}, "decimals must be"),
                          ({"schema": "ultralytics", "decimals": True}, "decimals must be")]:
        with pytest.raises(ms.InvalidInputError, match=match):
            r.to_json(**kwargs)
    for bad in ({"decimals": 10**6}, {"normalize": 1}):
        for method in (r.summary, r.to_csv, r.to_df):
            with pytest.raises(ms.InvalidInputError):
                method(**bad)


def test_ultralytics_json_is_strict_with_non_finite_numbers():
    d = ms.Detections([[np.nan, 1, np.inf, 4]], [0.5], [0], {0: "a"}, (10, 10), keypoints=[[[np.nan, 1, 1]]])
    out = json.loads(d.to_json(schema="ultralytics"), parse_constant=lambda t: pytest.fail(f"not JSON: {t}"))
    assert out[0]["box"] == {"x1": None, "y1": 1.0, "x2": None, "y2": 4.0} and out[0]["keypoints"]["x"] == [None]
    assert "nan" in d.to_csv() or "NaN" in d.to_csv()  # CSV keeps what the model said
