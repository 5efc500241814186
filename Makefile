# The two commands of the README:
#   make report   demo study -> validate -> full evaluation report in reports/<study name>/
#   make test     the test suite
# Each sets up its own virtual environment (.venv) from pyproject.toml, pinned by constraints.txt.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HBEVAL := $(VENV)/bin/hbeval
DEMO   ?= demo_study
JOBS   ?= 2

# Byte-identical results across x86-64 machines: OpenBLAS picks its kernels by processor, and
# the AVX-512 kernels round some sums differently from the AVX2 ones (the demo's effects.csv
# and ceac.csv differ in the 10th digit). The Haswell (AVX2) kernels run on every x86-64
# machine from 2013 on, so the golden manifest holds everywhere. A value already set wins.
ifeq ($(shell uname -m),x86_64)
export OPENBLAS_CORETYPE ?= Haswell
endif

.PHONY: report test env env-dev sysdeps analyze clean check-golden lint

# Bytecode: with PYTHONDONTWRITEBYTECODE set, as in many CI images, Python would compile numpy, pandas,
# scipy, ... from source in every process (seconds per command, per notebook kernel). The commands make
# runs write the bytecode of the modules they import, once, into .venv (about 1,000 files for a report);
# compiling all of site-packages at install (`uv pip install --compile-bytecode`, about 11,800 files,
# JupyterLab's server and the dev tools included) took most of a fresh `make report`. hbeval's own
# (editable) source is compiled on every `make env` (compileall skips files whose bytecode is current).
unexport PYTHONDONTWRITEBYTECODE

env: $(VENV)/.installed
	@$(PY) -m compileall -q hbeval

# The dev extras (pytest, pyfixest, numba, mypy, ...) only for the targets that need them.
env-dev: $(VENV)/.installed-dev
	@$(PY) -m compileall -q hbeval

# uv installs the pinned set in parallel (about 6x faster than pip here); pip is the fallback. The venv is
# made without pip (ensurepip took seconds) and uv comes from the system's pip (`pip --python`, pip >= 22.3),
# else from a pip bootstrapped into the venv.
install = $(VENV)/bin/uv pip install --python $(PY) --quiet -c constraints.txt -e $(1) \
  || { $(PY) -m ensurepip --upgrade >/dev/null && $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e $(1); }

$(VENV)/.installed: pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv --without-pip $(VENV)
	@test -x $(VENV)/bin/uv || $(PYTHON) -m pip --python $(PY) install --quiet --disable-pip-version-check uv 2>/dev/null \
	  || { $(PY) -m ensurepip --upgrade >/dev/null && $(PY) -m pip install --quiet --disable-pip-version-check uv; }
	$(call install,.)
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(call install,'.[dev]')
	@touch $@

# Debian packages the browser and PDF tests use (skipped, not failed, where they are missing
# and this is not root).
sysdeps:
	@if command -v chromium >/dev/null && command -v pdftotext >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium poppler-utils >/dev/null) \
	  || echo "sysdeps: could not install chromium/poppler-utils; the browser and PDF-text tests will be skipped"; \
	else echo "sysdeps: chromium or poppler-utils missing; the browser and PDF-text tests will be skipped"; fi

report: env
	$(HBEVAL) demo $(DEMO)
	$(HBEVAL) validate $(DEMO)
	$(HBEVAL) report $(DEMO)

analyze: env
	$(HBEVAL) demo $(DEMO)
	$(HBEVAL) validate $(DEMO)
	$(HBEVAL) analyze $(DEMO) --out reports/analysis

# The demo's result tables against the committed golden manifest, without the notebooks
# (about a minute): the check a refactoring must pass.
check-golden: env
	$(HBEVAL) demo $(DEMO)
	$(HBEVAL) analyze $(DEMO) --out reports/analysis
	$(PY) -c 'import sys; from hbeval.report.render import compare_golden; sys.exit(compare_golden("reports/analysis", "reports/golden/manifest.json"))'

# The gates CI runs: ruff (lint) and mypy (types; strict on stats/, arms, outdir, errors).
lint: env-dev
	$(VENV)/bin/ruff check hbeval tests benchmarks
	$(VENV)/bin/mypy

# --dist loadgroup: the tests of a module with an expensive module fixture (a built report, an analysed
# study) run on one worker, which builds it once (tests/conftest.py); every other test is balanced singly.
test: env-dev sysdeps
	$(PY) -m pytest -n $(JOBS) --dist loadgroup -q

# Untracked build outputs only (tests/test_make_clean.py checks that none of them holds a tracked file); the
# guard refuses to run when DEMO or a path below names something git tracks.
CLEAN_PATHS := $(DEMO) reports/hb-demo-study reports/analysis .pytest_cache
clean:
	@tracked="$$(git ls-files -- $(CLEAN_PATHS) 2>/dev/null)"; \
	if [ -n "$$tracked" ]; then echo "make clean: refusing to delete tracked files:" $$tracked >&2; exit 1; fi
	rm -rf $(CLEAN_PATHS)
