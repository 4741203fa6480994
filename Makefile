# The two commands the README promises: `make run` and `make test`.
# Both create (or reuse) ./.venv and install what they need into it.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rail-installed

.PHONY: run test lint typecheck unit clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	# compat editable mode puts the checkout on sys.path, so twistd finds
	# twisted/plugins/rail_plugin.py and runs the code you are editing.
	$(BIN)/python -m pip install -q --disable-pip-version-check \
		--config-settings editable_mode=compat -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/rail init --dev var
	$(BIN)/twistd -n --pidfile= rail --config var/rail.yaml

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m twisted.trial tests

test: lint typecheck unit

clean:
	rm -rf $(VENV) var _trial_temp* build *.egg-info twisted/plugins/dropin.cache
