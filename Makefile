# Two commands on a fresh machine (python3 with venv and pip):
#   make demo   -> builds .venv/ and runs the main job on the bundled patient
#   make test   -> builds .venv/ and runs every test suite (what .ci/run calls)
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-output

.PHONY: demo test venv benchmark clean

venv: $(STAMP)

# pyradiomics is published as source only and does not build in pip's isolated environment:
# install numpy and versioneer first, then build it without isolation. We pin 3.0.1: the 3.1.0
# archive's metadata calls itself 3.0.1a1, so pip discards it as inconsistent and would fall
# back to 3.0.1 anyway; saying so keeps the build reproducible.
PYRADIOMICS := 3.0.1
$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet numpy==2.4.6 versioneer==0.29 wheel setuptools
	$(BIN)/python -m pip install --quiet --no-build-isolation pyradiomics==$(PYRADIOMICS)
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m DoseRadiomicsLib.environment --check
	touch $(STAMP)

demo: $(STAMP)
	bash Resources/demo.sh $(DEMO_OUT)

test: $(STAMP)
	bash Testing/Browser/install_chromium.sh  # the reports are checked in headless Chromium (apt, once)
	$(BIN)/python -m pytest -q -n 2 --dist loadfile Testing

benchmark: $(STAMP)
	$(BIN)/python benchmarks/profile_patient.py
	$(BIN)/python benchmarks/bench_extract.py
	$(BIN)/python benchmarks/bench_clinical_ct.py
	$(BIN)/python benchmarks/bench_cohort.py
	$(BIN)/python benchmarks/bench_memory.py

clean:
	rm -rf $(VENV) $(DEMO_OUT)
