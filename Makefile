# pacsmigrate: `make demo` runs a whole migration between two temporary Orthanc
# servers; `make test` runs every test. Both install what they need first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEBS := orthanc orthanc-dicomweb dcmtk
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all deps system-deps python-deps demo test lint bench clean

all: test

deps: system-deps python-deps

# Debian packages: Orthanc (+ DICOMweb plugin) and DCMTK, installed when missing.
system-deps:
	@missing=""; for p in $(DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

python-deps: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

demo: deps
	$(BIN)/python -m pacsmigrate.testing.demo

test: deps
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: python-deps
	$(BIN)/pip install -q ruff mypy
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: deps
	$(BIN)/python bench/e2e.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
