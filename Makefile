# streamwatch — the two commands a newcomer needs are `make demo` and `make test`; both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
VENV_CHECKOV := .venv-checkov
VENV_AIRFLOW := .venv-airflow
TEMPLATES := cdk.out/Streamwatch.template.json cdk.out/existing/OrdersPipeline.template.json \
	cdk.out/stepfunctions/OrdersWorkflow.template.json
PYTEST := $(BIN)/python -m pytest -n 2 --durations=12 --ignore=tests/airflow
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup checkov airflow synth lint test test-unit test-cli test-handlers test-infra test-e2e test-security test-airflow demo bench dist clean

setup: .setup-stamp ## venv with pinned requirements, the streamwatch command, and the pinned CDK CLI

.setup-stamp: requirements.txt requirements-dev.txt constraints.txt pyproject.toml package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt -c constraints.txt
	$(BIN)/pip install -q --disable-pip-version-check --no-deps -e .
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

checkov: .checkov-stamp ## checkov in its own venv (.venv-checkov): its dependencies clash with constraints.txt

.checkov-stamp: requirements-checkov.txt
	rm -rf $(VENV_CHECKOV)
	$(PYTHON) -m venv $(VENV_CHECKOV)
	$(VENV_CHECKOV)/bin/pip install -q --disable-pip-version-check -r requirements-checkov.txt
	touch $@

airflow: .airflow-stamp ## Airflow 3 in its own venv (.venv-airflow), pinned by constraints-airflow.txt, with streamwatch[airflow]

.airflow-stamp: requirements-airflow.txt constraints-airflow.txt pyproject.toml
	rm -rf $(VENV_AIRFLOW)
	$(PYTHON) -m venv $(VENV_AIRFLOW)
	$(VENV_AIRFLOW)/bin/pip install -q --disable-pip-version-check -r requirements-airflow.txt -c constraints-airflow.txt
	$(VENV_AIRFLOW)/bin/pip install -q --disable-pip-version-check --no-deps -e .
	touch $@

synth: setup ## the example app (cdk.out/), examples/existing_pipeline and examples/step_functions, through cdk-nag (findings fail synth)
	npx cdk synth --quiet
	cd examples/existing_pipeline && CDK_OUTDIR=$(CURDIR)/cdk.out/existing PYTHONPATH=$(CURDIR)/lambdas \
		$(CURDIR)/$(BIN)/python app.py
	cd examples/step_functions && CDK_OUTDIR=$(CURDIR)/cdk.out/stepfunctions PYTHONPATH=$(CURDIR)/lambdas \
		$(CURDIR)/$(BIN)/python app.py

lint: synth checkov ## ruff and the rooms' import contracts (pyproject.toml) on the code; cfn-lint, then checkov, on both templates
	$(BIN)/ruff check .
	$(BIN)/lint-imports pyproject.toml
	$(BIN)/cfn-lint -- $(TEMPLATES)
	CKV_SKIP_PACKAGE_UPDATE_CHECK=true $(VENV_CHECKOV)/bin/checkov --config-file .checkov.yaml $(addprefix -f ,$(TEMPLATES))

test: lint ## everything CI runs
	$(PYTEST)

test-unit: setup ## pure code: rules, settings, policy, envelope, simulator, public imports (seconds)
	$(PYTEST) tests/unit

test-cli: setup ## the streamwatch command: its errors, its commands against a local run, put's refusals
	$(PYTEST) tests/cli

test-handlers: setup ## the handlers and the client against a moto server
	$(PYTEST) tests/handlers

test-infra: setup ## the construct: templates, cdk-nag, the example app, the Lambda asset
	$(PYTEST) tests/infra

test-e2e: setup ## the local run end to end, with chaos
	$(PYTEST) tests/e2e

test-security: setup ## the trust boundaries: a hostile writer, poison objects, fetch's safe names, who may write what
	$(PYTEST) tests/security

test-airflow: .airflow-stamp ## the Airflow tier: the sensor, the triggers and the example DAGs in a real Airflow 3, against a local run
	$(VENV_AIRFLOW)/bin/python -m pytest -p no:cacheprovider --durations=8 tests/airflow

demo: setup ## the whole pipeline on this machine, no AWS account
	$(BIN)/streamwatch demo

bench: setup ## benchmarks; each prints a JSON line last
	$(BIN)/python bench/monitor.py
	$(BIN)/python bench/completion.py
	$(BIN)/python bench/windows.py
	$(BIN)/python bench/records.py
	$(BIN)/python bench/producer.py
	$(BIN)/python bench/reader.py
	$(BIN)/python bench/scale.py

dist: setup ## the wheel (dist/): `pip install 'dist/streamwatch-*.whl[cdk]'` gives `from streamwatch.cdk import Streamwatch`
	rm -rf dist build
	$(BIN)/pip wheel -q --no-deps --no-build-isolation -w dist .

clean:
	rm -rf cdk.out .setup-stamp .airflow-stamp dist build
