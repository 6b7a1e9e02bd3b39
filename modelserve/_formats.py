"""The model files users have, as Ultralytics writes them: which one an engine opens, or why none can.

``ms.load`` takes what ``yolo export`` produces:

* ``model.onnx`` (ONNX Runtime, OpenVINO or TensorRT);
* ``model_openvino_model/`` — the folder of an OpenVINO export (``model.xml`` + ``model.bin`` +
  ``metadata.yaml``): the ``.xml`` inside is opened, with the folder's metadata;
* ``model.engine`` / ``model.plan`` — TensorRT plans, with or without Ultralytics' metadata header.

A PyTorch checkpoint (``.pt``) or another export format is refused with :class:`ModelLoadError`
saying how to export what modelserve runs, instead of an engine's parse error.
"""

from __future__ import annotations

import os

from ._errors import ModelLoadError

__all__ = ["model_file"]

_EXPORT_HINT = "export it with Ultralytics: `yolo export model={name} format=onnx` (or format=openvino, format=engine)"

#: Ultralytics export formats modelserve does not run: file suffix or folder ending -> format name.
_OTHER_FORMATS = {
    ".torchscript": "TorchScript",
    ".tflite": "TensorFlow Lite",
    ".pb": "TensorFlow GraphDef",
    ".mlpackage": "CoreML",
    ".mlmodel": "CoreML",
    "_saved_model": "TensorFlow SavedModel",
    "_ncnn_model": "NCNN",
    "_paddle_model": "PaddlePaddle",
    "_mnn_model": "MNN",
    "_web_model": "TensorFlow.js",
    "_edgetpu_model": "Edge TPU",
    "_imx_model": "IMX",
    "_rknn_model": "RKNN",
}


def model_file(path: str) -> str:
    """The file an engine should open for ``path``, as Ultralytics' exports lay them out.

    Raises :class:`ModelLoadError` for a PyTorch checkpoint, an export format no engine here runs,
    or a folder that is not an OpenVINO export. Paths that do not exist are returned as they are
    (the caller reports them).
    """
    stem = os.path.basename(os.path.normpath(path))
    lower = stem.lower()
    if lower.endswith((".pt", ".pth")):
        base = stem.rsplit(".", 1)[0]
        raise ModelLoadError(
            f"{path} is a PyTorch checkpoint; modelserve runs exported models: {_EXPORT_HINT.format(name=stem)}, "
            f"then load {base}.onnx"
        )
    for ending, fmt in _OTHER_FORMATS.items():
        if lower.endswith(ending):
            raise ModelLoadError(f"{path} is a {fmt} export, which no modelserve engine runs; "
                                 f"{_EXPORT_HINT.format(name='<model>.pt')}")
    if os.path.isdir(path):
        return _openvino_folder(path)
    return path


def _openvino_folder(path: str) -> str:
    """The ``.xml`` of an OpenVINO export folder (one ``.xml`` with its ``.bin``)."""
    try:
        names = sorted(os.listdir(path))
    except OSError as exc:
        raise ModelLoadError(f"cannot read model folder {path}: {exc}") from exc
    xmls = [n for n in names if n.lower().endswith(".xml") and os.path.isfile(os.path.join(path, n))]
    if len(xmls) == 1 and os.path.splitext(xmls[0])[0] + ".bin" in names:
        return os.path.join(path, xmls[0])
    found = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "") if names else "nothing"
    raise ModelLoadError(
        f"model folder {path} is not an OpenVINO export: expected one <name>.xml with its <name>.bin "
        f"(and Ultralytics' metadata.yaml), found {found}"
    )
