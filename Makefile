# mindprint: two commands set everything up on a fresh machine.
#   make demo   creates .venv, installs pinned dependencies, runs the end-to-end demo
#   make test   installs whatever the tests need and runs ruff, mypy and pytest
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

TOOLS  := tools/node_modules/.installed

.PHONY: install tools postgres chromium demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	@echo "installing pinned Python dependencies into $(VENV) (a few minutes the first time)…"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# anvil and the js-ipfs daemon for the integration tests, pinned by tools/package-lock.json
# (`npm install` rather than `npm ci`: npm 11 rejects the js-ipfs lock over an optional peer)
$(TOOLS): tools/package.json tools/package-lock.json
	@echo "installing anvil and the js-ipfs daemon for the integration tests (npm, pinned)…"
	cd tools && npm install --no-audit --no-fund --loglevel=error
	touch $(TOOLS)

tools: $(TOOLS)

# Debian's PostgreSQL server binaries for the PostgreSQL test suite (the tests start and
# stop their own server on a free loopback port; the package's own service is kept
# from starting by a temporary policy-rc.d)
postgres:
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  POLICY=/usr/sbin/policy-rc.d; CREATED=; \
	  if [ ! -e $$POLICY ]; then printf '#!/bin/sh\nexit 101\n' | $$SUDO tee $$POLICY >/dev/null && $$SUDO chmod +x $$POLICY && CREATED=1; fi; \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  STATUS=$$?; [ -n "$$CREATED" ] && $$SUDO rm -f $$POLICY; exit $$STATUS; \
	fi

# Debian's chromium for the browser tests (Playwright drives it through executable_path;
# no browser is downloaded)
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	fi

demo: $(STAMP)
	$(BIN)/mindprint demo --workdir .demo

lint: $(STAMP)
	$(BIN)/ruff check mindprint tests benchmarks
	$(BIN)/mypy

test: $(STAMP) $(TOOLS) postgres chromium
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	@for b in benchmarks/*.py; do case $$b in */__init__.py) ;; *) echo "== $$b"; $(BIN)/python $$b ;; esac; done

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache tools/node_modules
