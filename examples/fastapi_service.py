"""An asyncio web service with FastAPI (``pip install fastapi uvicorn python-multipart``).

    uvicorn examples.fastapi_service:app  (with MODEL=path/to/model.onnx in the environment)

``apredict`` never blocks the event loop: decoding and letterboxing run in the executor, and the
requests in flight share engine batches through the Predictor's micro-batcher.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, HTTPException, Request

import modelserve as ms

app = FastAPI()
predictor = ms.load(os.environ.get("MODEL", "yolov8n.onnx"), batching=ms.Batching(max_batch_size=16, max_delay_ms=2))


@app.post("/detect")
async def detect(request: Request, conf: float = 0.25) -> dict:
    try:
        result = await predictor.apredict(await request.body(), conf=conf)
    except ms.InvalidInputError as exc:
        raise HTTPException(status_code=400, detail=str(exc)) from exc
    except ms.QueueFullError as exc:
        raise HTTPException(status_code=503, detail=str(exc)) from exc
    return result.to_dict()


@app.on_event("shutdown")
def _close() -> None:
    predictor.close()
