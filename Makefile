# Two commands for a fresh machine (see README): `make reproduce` and `make test`.
# Each makes (or reuses) the local virtual environment .venv and installs what it needs itself.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The stamp changes when pyproject.toml changes, so edited dependencies get installed.
STAMP := $(VENV)/.installed
TORCH_VERSION := 2.13.0
ARGS ?=

.PHONY: reproduce reproduce-quick test notebooks-refresh lab clean-quick

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch pinned here (pyproject keeps torch>=2.2 loose); 2.13.0 has a CPU wheel on the local disk
	$(PY) -m pip install --disable-pip-version-check -q torch==$(TORCH_VERSION)
	$(PY) -m pip install --disable-pip-version-check -q -e ".[notebooks,test]"
	@touch $(STAMP)

# The main job: execute every notebook (full mode) into runs/<timestamp>/ and write a report.
reproduce: $(STAMP)
	$(VENV)/bin/mtl reproduce $(ARGS)

reproduce-quick: $(STAMP)
	$(VENV)/bin/mtl reproduce --quick $(ARGS)

# The test command (CI runs exactly this): unit tests + every notebook in quick mode under nbval.
test: $(STAMP)
	MTL_QUICK=1 MPLBACKEND=Agg $(PY) -m pytest tests notebooks --nbval-lax --nbval-current-env -p no:cacheprovider $(ARGS)

# Refresh the outputs stored in notebooks/ from a full papermill run of the notebooks themselves.
notebooks-refresh: $(STAMP)
	$(VENV)/bin/mtl reproduce --update-notebooks $(ARGS)

lab: $(STAMP)
	$(VENV)/bin/jupyter lab notebooks/

clean-quick:
	rm -rf runs/quick
