"""A model's files changed under a running OpenVINO model (issue 10): ``cp new.bin model.bin``
rewrites the same inode, and with OpenVINO's default memory mapping the next ``predict`` died
with SIGBUS (truncated) or failed oddly (same size). The weights are now read into the process,
so later changes to the files, the IR weights or a cached compiled model, cannot reach it.

Each case runs in a child process, so the crash it guards against cannot take pytest down."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import modelserve as ms

ov = pytest.importorskip("openvino", reason="openvino not installed: pip install modelserve[openvino]")

HERE = Path(__file__).resolve().parents[1]

CHILD = textwrap.dedent(
    """
    import glob, os, sys
    import numpy as np
    import modelserve as ms
    from modelserve._images import load_image

    xml, photo, mode, cache = sys.argv[1:5]
    img = load_image(photo).pixels
    options = {"cache_dir": cache} if mode == "cache" else {}
    if mode == "cache":
        ms.load(xml, engine_options=options).close()  # compiles and fills the cache
    p = ms.load(xml, engine_options=options)          # "cache": imported from the cache
    before = p.predict(img)
    if mode == "truncate":
        os.truncate(xml[:-4] + ".bin", 1000)
    elif mode == "zeros":
        path = xml[:-4] + ".bin"
        size = os.path.getsize(path)
        with open(path, "r+b") as fh:  # what cp does: same inode, new bytes
            fh.write(bytes(size))
    elif mode == "cache":
        for blob in glob.glob(os.path.join(cache, "*")):
            os.truncate(blob, 100)
    after = p.predict(img)
    assert len(before) > 0
    assert np.array_equal(before.xyxy, after.xyxy) and np.array_equal(before.class_id, after.class_id)
    print("SAME", len(after))
    """
)


@pytest.fixture()
def ir_copy(detector_path, tmp_path):
    out = tmp_path / "det.xml"
    ov.save_model(ov.convert_model(str(detector_path)), str(out), compress_to_fp16=False)
    return out


@pytest.mark.parametrize("mode", ["truncate", "zeros", "cache"])
def test_rewriting_the_files_of_a_loaded_model(ir_copy, photo, tmp_path, mode):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), os.environ.get("PYTHONPATH", "")])}
    run = subprocess.run(
        [sys.executable, "-c", CHILD, str(ir_copy), str(photo("bus.jpg")), mode, str(tmp_path / "cache")],
        capture_output=True, text=True, timeout=300, env=env,
    )
    assert run.returncode == 0, f"exit {run.returncode} (-7 is SIGBUS)\n{run.stdout}\n{run.stderr[-3000:]}"
    assert "SAME" in run.stdout
    if mode == "cache":
        assert glob.glob(str(tmp_path / "cache" / "*"))  # the cache was really used


def test_mmap_option(ir_copy, photo):
    from modelserve._images import load_image

    img = load_image(str(photo("bus.jpg"))).pixels
    mapped = ms.load(ir_copy, engine_options={"mmap": True}).predict(img)
    read = ms.load(ir_copy).predict(img)
    assert (mapped.xyxy == read.xyxy).all() and len(read) > 0
    with pytest.raises(ms.InvalidInputError, match="mmap must be a bool"):
        ms.load(ir_copy, engine_options={"mmap": "yes"})
