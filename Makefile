# streamwatch — the two commands a newcomer needs are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup synth lint test demo bench clean

setup: .setup-stamp ## venv with pinned requirements, the streamwatch command, and the pinned CDK CLI

.setup-stamp: requirements.txt requirements-dev.txt constraints.txt pyproject.toml package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

synth: setup ## cdk.out/Streamwatch.template.json, through cdk-nag (findings fail synth)
	npx cdk synth --quiet

lint: synth ## ruff on the code, cfn-lint on the synthesized template
	$(BIN)/ruff check .
	$(BIN)/cfn-lint -- cdk.out/*.template.json

test: lint ## everything CI runs
	$(BIN)/python -m pytest -n 2

demo: setup ## the whole pipeline on this machine, no AWS account
	$(BIN)/streamwatch demo

bench: setup ## benchmarks; each prints a JSON line last
	$(BIN)/python bench/monitor.py
	$(BIN)/python bench/completion.py
	$(BIN)/python bench/reader.py

clean:
	rm -rf cdk.out .setup-stamp
