# Two commands on a fresh machine (python3 with venv and pip):
#   make demo   -> builds .venv/ and runs the main job on the bundled patient
#   make test   -> builds .venv/ and runs every test suite (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-output

.PHONY: demo test test-main test-slicer-envs venv slicer-envs benchmark clean

venv: $(STAMP)

# pyradiomics is published as source only and does not build in pip's isolated environment:
# install numpy and versioneer first, then build it without isolation. We pin 3.0.1: the 3.1.0
# archive's metadata calls itself 3.0.1a1, so pip discards it as inconsistent and would fall
# back to 3.0.1 anyway; saying so keeps the build reproducible. (The 3.1.0 archive also lacks two C
# headers; the Slicer-matched environments below build it anyway: install_pyradiomics.py.)
PYRADIOMICS := 3.0.1
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet numpy==2.4.6 versioneer==0.29 wheel setuptools
	$(BIN)/python -m pip install --quiet --no-build-isolation pyradiomics==$(PYRADIOMICS)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps rt-utils==1.2.7
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m DoseRadiomicsLib.environment --check
	touch $(STAMP)

demo: $(STAMP)
	bash Resources/demo.sh $(DEMO_OUT)

# Slicer-matched test environments: the versions real Slicer releases bundle, read from Slicer's
# SuperBuild files (Testing/Environments/slicer-*.txt cite them; docs/slicer-compatibility.md).
# Python: 3.10 for the 5.8-like one (Slicer 5.8 bundles 3.9, which slicer-core and this library do not
# support), 3.12 for the 5.12-like one (what Slicer 5.10-5.12 bundle). pyenv keeps them outside PATH.
SLICER_ENVS := 5.8 5.12
# The first candidate that runs (a pyenv shim exists but fails when its version is not selected).
find_python = $(firstword $(foreach p,$(1) $(wildcard $(HOME)/.pyenv/versions/$(2)*/bin/python$(2)),\
	$(shell $(p) -c 'import sys; print(sys.executable)' 2>/dev/null)))
PYTHON_SLICER_5.8 ?= $(call find_python,python3.10,3.10)
PYTHON_SLICER_5.12 ?= $(call find_python,python3.12,3.12)
SLICER_STAMPS := $(foreach e,$(SLICER_ENVS),.venv-slicer-$(e)/.installed)
# In a matched environment: the library suite and the Slicer module's suite (Testing/BadInputs holds
# no tests, only the corpus generator).
SLICER_ENV_TESTS := Testing/Python Testing/Slicer

slicer-envs: $(SLICER_STAMPS)

# pyradiomics: PyPI's 3.1.0 source archive (v3.1.0's code; SlicerRadiomics pins v3.1.0 + 2 CLI
# commits), which does not build as published: see Testing/Environments/install_pyradiomics.py.
.venv-slicer-%/.installed: Testing/Environments/slicer-%.txt Testing/Environments/install_pyradiomics.py pyproject.toml $(STAMP)
	@test -n "$(PYTHON_SLICER_$*)" || { echo "no Python for .venv-slicer-$*: set PYTHON_SLICER_$*"; exit 1; }
	rm -rf .venv-slicer-$*
	$(PYTHON_SLICER_$*) -m venv .venv-slicer-$*
	.venv-slicer-$*/bin/python -m pip install --quiet pip==26.3
	.venv-slicer-$*/bin/python -m pip install --quiet -r Testing/Environments/slicer-$*.txt
	.venv-slicer-$*/bin/python Testing/Environments/install_pyradiomics.py --download-with $(BIN)/python
	.venv-slicer-$*/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
	.venv-slicer-$*/bin/python -m pip check
	.venv-slicer-$*/bin/python -m DoseRadiomicsLib.environment --check
	touch $@

# Every suite in .venv, then the library and Slicer suites in each matched environment; the first
# failure fails make, every run prints pytest's summary line. The environments are built side by side
# (installing is mostly waiting for downloads and disk), the tests one run after another.
test:
	$(MAKE) -j3 --output-sync=target $(STAMP) $(SLICER_STAMPS)
	$(MAKE) test-main
	$(MAKE) test-slicer-envs

test-main: $(STAMP)
	bash Testing/Browser/install_chromium.sh  # the reports are checked in headless Chromium (apt, once)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile Testing

test-slicer-envs: $(SLICER_STAMPS)
	@set -e; for e in $(SLICER_ENVS); do \
	  echo "== Slicer-$$e-like environment (.venv-slicer-$$e)"; \
	  .venv-slicer-$$e/bin/python -m pytest -q -n 2 --dist loadfile --durations=10 $(SLICER_ENV_TESTS); \
	done

benchmark: $(STAMP)
	$(BIN)/python benchmarks/profile_patient.py
	$(BIN)/python benchmarks/bench_extract.py
	$(BIN)/python benchmarks/bench_clinical_ct.py
	$(BIN)/python benchmarks/bench_cohort.py
	$(BIN)/python benchmarks/bench_memory.py

clean:
	rm -rf $(VENV) $(DEMO_OUT) .venv-slicer-*
