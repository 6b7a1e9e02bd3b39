# Two commands for a fresh machine:  make demo  and  make test
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

demo: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[onnxruntime]"
	$(BIN)/python -m pip install --quiet --no-deps nudenet==3.4.2
	$(BIN)/python examples/demo.py

test: $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	$(BIN)/python -m pytest -q

clean:
	rm -rf build dist *.egg-info modelserve/_kernels/*.c modelserve/_kernels/*.so
