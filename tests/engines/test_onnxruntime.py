"""The ONNX Runtime adapter honours the engine contract on the real detector."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import modelserve as ms
from modelserve.engines import OnnxRuntimeEngine

pytest.importorskip("onnxruntime")


def test_specs_and_metadata(detector_path):
    with OnnxRuntimeEngine(str(detector_path)) as eng:
        assert eng.name == "onnxruntime" and eng.device == "cpu"
        (inp,) = eng.inputs
        assert inp == ms.TensorSpec("images", (None, 3, None, None), np.dtype(np.float32)) and inp.is_dynamic
        assert eng.outputs[0].name == "output0" and eng.outputs[0].shape[:2] == (None, 22)
        assert eng.metadata["stride"] == "32" and "FACE_FEMALE" in eng.metadata["names"]
        assert "images" in repr(eng)


def test_run_shapes_and_threads(detector_path):
    eng = OnnxRuntimeEngine(str(detector_path), intra_op_threads=1, graph_optimization="basic")
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 320, 256), dtype=np.float32)
    (out,) = eng.run({"images": x})
    # 320x256 at strides 8/16/32: 40*32 + 20*16 + 10*8 anchors.
    assert out.shape == (2, 22, 40 * 32 + 20 * 16 + 10 * 8) and out.dtype == np.float32
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: eng.run({"images": x})[0], range(8)))
    for o in outs:
        np.testing.assert_array_equal(o, out)
    eng.close()
    eng.close()  # idempotent
    with pytest.raises(ms.ModelserveError, match="closed"):
        eng.run({"images": x})


def test_bad_feeds_raise_invalid_input(detector_path):
    eng = OnnxRuntimeEngine(str(detector_path))
    with pytest.raises(ms.InvalidInputError, match="onnxruntime rejected"):
        eng.run({"images": np.zeros((1, 4, 64, 64), np.float32)})
    with pytest.raises(ms.InvalidInputError, match="onnxruntime rejected"):
        eng.run({"images": np.zeros((1, 3, 64, 64), np.float64)})


def test_availability_reports_version():
    ok, version = OnnxRuntimeEngine.availability()
    import onnxruntime

    assert ok and version == onnxruntime.__version__


def test_session_options_passthrough(detector_path):
    import onnxruntime

    so = onnxruntime.SessionOptions()
    so.log_severity_level = 3
    eng = OnnxRuntimeEngine(str(detector_path), session_options=so, inter_op_threads=1)
    assert eng.run({"images": np.zeros((1, 3, 64, 64), np.float32)})[0].shape[1] == 22
    with pytest.raises(ms.InvalidInputError, match="intra_op_threads"):
        OnnxRuntimeEngine(str(detector_path), intra_op_threads=-2)


def test_idle_threads_do_not_spin_by_default(detector_path):
    """Spinning intra-op threads make concurrent runs steal each other's cores (benchmarks/cores.py):
    off unless asked for; a caller's own SessionOptions are left as they are."""
    import onnxruntime

    key = "session.intra_op.allow_spinning"

    def spinning(eng):
        return eng._session.get_session_options().get_session_config_entry(key)

    assert spinning(OnnxRuntimeEngine(str(detector_path))) == "0"
    assert spinning(OnnxRuntimeEngine(str(detector_path), spinning=True)) == "1"
    own = onnxruntime.SessionOptions()
    own.add_session_config_entry(key, "1")
    assert spinning(OnnxRuntimeEngine(str(detector_path), session_options=own)) == "1"
    assert spinning(OnnxRuntimeEngine(str(detector_path), session_options=own, spinning=False)) == "0"
    with pytest.raises(ms.InvalidInputError, match="spinning must be a bool"):
        OnnxRuntimeEngine(str(detector_path), spinning="no")
