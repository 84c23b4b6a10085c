# The README's commands. `make demo` and `make test` each create .venv and install what they need.
# On the reference CPU machine torch is pinned (a local CPU wheel); GPU users override TORCH_SPEC,
# e.g. `make install TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.vmed-installed
DEMO_DIR ?= demo_output

.PHONY: install demo test test-fast bench browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job: phantoms -> 3 training stages -> evaluation -> a sample dialogue (offline, CPU).
demo: $(STAMP)
	$(BIN)/vmed demo --output $(DEMO_DIR)

## The test suite (offline). Installs Debian's chromium for the browser test when it can.
test: $(STAMP) browser
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not browser"

browser:
	@bash scripts/install_browser.sh

bench: $(STAMP)
	bash benchmarks/run_all.sh

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
