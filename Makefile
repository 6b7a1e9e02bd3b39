# Two commands for a fresh machine:  make demo  and  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The reference environment (torch, Ultralytics, OpenCV): benchmarks and golden generators only.
REFENV ?= .refenv
REF := $(REFENV)/bin

.PHONY: demo test check lint typecheck bench refenv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[onnxruntime]"
	$(BIN)/python -m pip install --quiet --no-deps nudenet==3.4.2
	$(BIN)/python examples/demo.py

test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pytest -q

# What CI runs: lint, type check, then the tests.
check: test lint typecheck

lint: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m ruff check modelserve engines tests benchmarks examples setup.py

typecheck: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m mypy modelserve engines

$(REF)/python:
	$(PYTHON) -m venv $(REFENV)
	$(REF)/python -m pip install --quiet -r requirements-dev-ref.txt
	$(REF)/python -m pip install --quiet --no-deps nudenet==3.4.2
	$(REF)/python -m pip install --quiet -e . --no-build-isolation

refenv: $(REF)/python

# Every benchmark once, quick where it has a quick mode, against torch/OpenCV/Ultralytics in the same run
# (figures for benchmarks/RESULTS.md come from the full runs each file's docstring gives).
bench: $(REF)/python
	for b in kernels batcher; do OMP_NUM_THREADS=1 YOLO_OFFLINE=1 $(REF)/python benchmarks/$$b.py --quick || exit 1; done
	for b in rotated_nms masks segment_masks contours predictor_overhead engines; do \
		OMP_NUM_THREADS=1 YOLO_OFFLINE=1 $(REF)/python benchmarks/$$b.py || exit 1; done

clean:
	rm -rf build dist *.egg-info modelserve/_kernels/*.c modelserve/_kernels/*.so
