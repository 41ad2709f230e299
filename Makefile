# One command each on a fresh clone: `make demo`, `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist

.PHONY: setup data demo test test-slow bench bench-venv lint clean

setup: $(STAMP) data

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps compressai==1.2.8  # see pyproject: entropy
	touch $(STAMP)

data:
	@if [ -d $(FMNIST) ] || [ -n "$$EDGEDISTILL_DATA" ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		echo "installing Fashion-MNIST (Debian package dataset-fashion-mnist)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'"; \
		echo "or set EDGEDISTILL_DATA to a folder with torchvision's FashionMNIST/raw files."; \
	fi

demo: setup
	$(VENV)/bin/edgedistill demo

test: setup
	$(PY) -m pytest

test-slow: setup
	$(PY) -m pytest -m slow

bench: setup bench-venv
	$(PY) -m benchmarks.train_throughput
	$(PY) -m benchmarks.kd_throughput
	$(PY) -m benchmarks.elastic_throughput

# torchdistill in a venv of its own, for the KD comparison in benchmarks/kd_throughput.py
bench-venv: .venv-torchdistill/bin/python
.venv-torchdistill/bin/python:
	$(PYTHON) -m venv .venv-torchdistill
	.venv-torchdistill/bin/pip install -q torch==2.14.1 torchvision==0.29.1 torchdistill==1.1.5 safetensors

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) runs .pytest_cache
