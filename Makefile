# vivit_edu: the two commands of the README are `make demo` and `make test`.
# Each creates (or refreshes) the virtualenv in .venv and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.vivit_edu-installed
# lessons executed at once by `make test` (each in its own kernel, one torch thread); empty: tools/test_all.sh
# decides (1 while pytest runs alongside, 2 with NB_PARALLEL=0)
NB_WORKERS ?=

.PHONY: demo test venv check-sync nbtest pytest bench clean-venv docs-check gpu-wheels

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[dev]"
	@touch $@

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/vivit-edu demo

test: $(STAMP)
	@NB_WORKERS=$(NB_WORKERS) bash tools/test_all.sh

check-sync: $(STAMP)
	@bash tools/test_all.sh --only-sync

bench: $(STAMP)
	$(BIN)/python bench/video_read.py
	$(BIN)/python bench/vivit_step.py

# execute every lesson, render it to HTML and check it in headless Chromium (math, figures, widgets,
# errors); lessons that `make test` executed from the same sources are rendered, not executed again;
# DOCS_CHECK_ARGS="--only 05 --keep" checks a subset and keeps _docs_check/
docs-check: $(STAMP)
	$(BIN)/python tools/docs_check.py $(DOCS_CHECK_ARGS)

# wheels the GPU machine of the `device` tool lacks (PyAV, for Python 3.12 there), for bench/gpu_session.sh; see that file
AV_VERSION ?= $(shell $(BIN)/python -c "import av; print(av.__version__)" 2>/dev/null || echo 18.1.0)
gpu-wheels: $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
	  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl av==$(AV_VERSION)
	@ls -la .whl

clean-venv:
	rm -rf $(VENV)
