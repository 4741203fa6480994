# The two commands the README promises: `make run` and `make test`.
# Both create (or reuse) ./.venv and install what they need into it; `make test` first
# runs .ci/provision, which installs the system packages the tests need (as root) or
# names the missing ones.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.rail-installed

.PHONY: run test provision lint typecheck unit clean

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

provision:
	.ci/provision

# In this order: provisioning may install python3-venv, which .venv needs.
test:
	.ci/provision
	$(MAKE) --no-print-directory lint typecheck unit

clean:
	rm -rf $(VENV) var _trial_temp* build *.egg-info twisted/plugins/dropin.cache
