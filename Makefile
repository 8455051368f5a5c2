# Set-up is part of every target: a fresh clone needs only `make test` or `make demo`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.mtp-installed
PYTEST_ARGS ?= -n 2

.PHONY: test demo demo-clean lint install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(PY) -m pytest $(PYTEST_ARGS)

DEMO_DIR := outputs/demo
DEMO_ARGS ?=

# Does MTP pretraining help? (docs/DEMO.md; about 9 minutes on 2 idle cores, the pretraining is cached): synthetic
# SAMRS -> three-task pretraining of a tiny ViT+RVSA -> few-label LoveDA segmentation and LEVIR change detection from
# scratch / from the MTP encoder / + the reused decoder, 3 seeds each -> table, 2-sigma verdict (exit 1 when it
# fails), outputs/demo/report.html.
demo: $(STAMP)
	$(VENV)/bin/mtp demo --out $(DEMO_DIR) $(DEMO_ARGS)

demo-clean:
	rm -rf $(DEMO_DIR)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
