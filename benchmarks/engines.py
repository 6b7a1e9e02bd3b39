"""The same model on every available engine: latency and throughput at several batch sizes.

    python benchmarks/engines.py                 # the real detector (nudenet 320n), imgsz 320
    python benchmarks/engines.py --imgsz 640 --batches 1 8 --seconds 5 --markdown

Each configuration is an engine + device (+ options) that ``modelserve.engines()`` reports as
usable here: ONNX Runtime and OpenVINO on the CPU; TensorRT, ONNX Runtime's CUDA and TensorRT
providers where an NVIDIA GPU is present. ``engine.run`` is timed on a random ``[B, 3, S, S]``
float32 batch (warm-up runs first; then the engines take turns, one run each per round, until
each has run ``--seconds`` and at least 3 times, so load from other processes hits all alike).
Reports median latency per batch and images per second, then which engine ``engine="auto"``
picks for an ONNX model on this CPU and whether that is the fastest one measured.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import modelserve as ms  # noqa: E402
from modelserve._engine_catalog import explain_choice, list_engines, open_engine  # noqa: E402


def configurations(include_gpu: bool = True, max_batch: int = 32) -> list[tuple[str, str, str, dict]]:
    """``(label, engine, device, options)`` for every engine usable on this machine; TensorRT's
    profile covers batches up to ``max_batch``."""
    usable = {e.name: e for e in list_engines() if e.available}
    configs = []
    if "onnxruntime" in usable:
        configs.append(("onnxruntime cpu", "onnxruntime", "cpu", {}))
    if "openvino" in usable:
        configs.append(("openvino cpu (latency)", "openvino", "cpu", {"performance_hint": "latency"}))
        configs.append(("openvino cpu (throughput)", "openvino", "cpu", {"performance_hint": "throughput"}))
    if include_gpu:
        ort = usable.get("onnxruntime")
        if ort and "cuda" in ort.devices:
            configs.append(("onnxruntime cuda", "onnxruntime", "cuda", {}))
        if ort and "tensorrt" in ort.devices:
            configs.append(("onnxruntime tensorrt-ep", "onnxruntime", "tensorrt", {}))
        if "tensorrt" in usable:
            configs.append(("tensorrt fp32", "tensorrt", "cuda", {"max_batch": max_batch}))
            configs.append(("tensorrt fp16", "tensorrt", "cuda", {"max_batch": max_batch, "fp16": True}))
    return configs


def bench(engines: dict[str, ms.Engine], batch: int, imgsz: int, seconds: float) -> dict[str, tuple[float, float]]:
    """``{label: (median ms per run, images per second)}`` for ``engine.run`` at one batch size.

    Engines take turns, one run each per round, so that load from other processes on a shared
    machine falls on all of them alike; rounds continue until every engine has had ``seconds``
    (and at least 3 runs)."""
    x = np.random.default_rng(0).random((batch, 3, imgsz, imgsz), dtype=np.float32)
    feeds = {label: {eng.inputs[0].name: x} for label, eng in engines.items()}
    for label, eng in engines.items():
        for _ in range(2):
            eng.run(feeds[label])
    times: dict[str, list[float]] = {label: [] for label in engines}
    while any(len(t) < 3 or sum(t) < seconds for t in times.values()):
        for label, eng in engines.items():
            t0 = time.perf_counter()
            eng.run(feeds[label])
            times[label].append(time.perf_counter() - t0)
    out = {}
    for label, t in times.items():
        med = statistics.median(t)
        out[label] = (med * 1000, batch / med)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="an .onnx model (default: the nudenet YOLOv8n detector)")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--seconds", type=float, default=3.0, help="time per (engine, batch)")
    ap.add_argument("--markdown", action="store_true", help="print a table for benchmarks/RESULTS.md")
    args = ap.parse_args(argv)
    if args.model is None:
        import assets

        args.model = str(assets.detector_path())
    print(f"# {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} python={platform.python_version()}")
    for e in list_engines():
        print(f"#   {e.name}: {e.version or '-'} devices={list(e.devices)} {e.reason or ''}")
    engines: dict[str, ms.Engine] = {}
    for label, name, device, options in configurations(max_batch=max(args.batches)):
        try:
            # imgsz is a hint: engines that build for a size (TensorRT's profile) take it, others ignore it
            engines[label] = open_engine(args.model, engine=name, device=device, hints={"imgsz": args.imgsz}, **options)
        except ms.ModelserveError as exc:
            print(f"# skip {label}: {exc}")
    results: dict[str, dict[int, tuple[float, float]]] = {label: {} for label in engines}
    try:
        for b in args.batches:
            for label, (ms_, ips) in bench(engines, b, args.imgsz, args.seconds).items():
                results[label][b] = (ms_, ips)
                print(f"{label:28s} batch {b:3d}: {ms_:9.1f} ms/batch {ips:8.1f} img/s", flush=True)
    finally:
        for eng in engines.values():
            eng.close()
    cols = " | ".join(f"batch {b}: ms / img/s" for b in args.batches)
    lines = [f"| engine | {cols} |", "|---" * (len(args.batches) + 1) + "|"]
    for label, row in results.items():
        cells = " | ".join(f"{row[b][0]:.1f} / {row[b][1]:.1f}" for b in args.batches)
        lines.append(f"| {label} | {cells} |")
    print("\n".join(lines) if args.markdown else "")
    cpu = {k: v for k, v in results.items() if " cpu" in k}
    if cpu:
        fastest = max(cpu, key=lambda k: statistics.mean(cpu[k][b][1] for b in args.batches))
        print(f"fastest on this CPU (mean img/s over batches): {fastest}")
        print(f"auto picks: {explain_choice(args.model, 'auto', 'cpu')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
