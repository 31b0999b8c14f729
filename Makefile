# Refusal Robustness Scaling: one command to run the study, one to test it.
#   make all    set up (if needed), run the organism study (Days 3-7, experiments/organism_scaling), build the book
#   make test   run the test suite (unit, integration, nbval goldens, built-book browser check)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
RR := $(VENV)/bin/rr
EXPERIMENT ?= experiments/organism_scaling/config.yaml
JOBS ?= 2
STAMP := $(VENV)/.setup-done

.PHONY: all setup study book test unit nbval bench pair clean help

all: setup study book
	@echo ""
	@echo "Book: $(CURDIR)/book/_build/html/index.html"

help:
	@sed -n '1,4p' Makefile

# Install torch first with an exact pin: a loose pin pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "from rrlib import book; book.prepare_widgets()"
	touch $(STAMP)

setup: $(STAMP)

study: setup
	$(RR) experiment run $(EXPERIMENT) --jobs $(JOBS)

book: setup
	$(RR) book

test: setup
	$(PY) -m pytest

unit: setup
	$(PY) -m pytest -m "not integration and not browser"

nbval: setup
	$(PY) -m pytest tests/test_nbval_goldens.py

bench: setup
	$(PY) -m bench.run

# Re-sync each Day notebook with its MyST Markdown pair (notebooks/DayN_*.md); the newer file wins.
pair: setup
	$(VENV)/bin/jupytext --sync notebooks/Day*.ipynb

clean:
	rm -rf book/_build results/cache results/attacks .rr_cache
