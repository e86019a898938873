# mindprint: two commands set everything up on a fresh machine.
#   make demo   creates .venv, installs pinned dependencies, runs the end-to-end demo
#   make test   installs whatever the tests need and runs ruff, mypy and pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

TOOLS  := tools/node_modules/.installed

.PHONY: install tools demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# anvil and the js-ipfs daemon for the integration tests, pinned by tools/package-lock.json
# (`npm install` rather than `npm ci`: npm 11 rejects the js-ipfs lock over an optional peer)
$(TOOLS): tools/package.json tools/package-lock.json
	cd tools && npm install --no-audit --no-fund --loglevel=error
	touch $(TOOLS)

tools: $(TOOLS)

demo: $(STAMP)
	$(BIN)/mindprint demo --workdir .demo

lint: $(STAMP)
	$(BIN)/ruff check mindprint tests benchmarks
	$(BIN)/mypy

test: $(STAMP) $(TOOLS)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	@for b in benchmarks/*.py; do case $$b in */__init__.py) ;; *) echo "== $$b"; $(BIN)/python $$b ;; esac; done

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache tools/node_modules
