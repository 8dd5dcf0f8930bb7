# ragloop: `make run` and `make test` do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ragloop-installed
PYTEST_ARGS ?=
# Arize Phoenix (local trace viewer) lives in its own venv: ~850 MB, pinned.
PHOENIX_VERSION ?= 20.26.1
PHOENIX_STAMP := .venv-tools/phoenix/.installed-$(PHOENIX_VERSION)

.PHONY: help install system-deps fetch run serve test lint bench clean phoenix audit

help:  ## List the targets.
	@grep -E '^[a-z-]+:.*## ' Makefile | sed 's/:.*## /\t/'

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@# torch first, pinned: an unpinned torch (pulled by sentence-transformers) is a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -c constraints.txt -e '.[all,dev]'
	touch $@

install: $(STAMP)  ## Create .venv with pinned dependencies.

system-deps:  ## Debian packages for tests and the local stack (chromium, postgresql, prometheus, docker-compose).
	bash scripts/system-deps.sh

fetch: install  ## Fetch the local model (sha256-checked) and the default corpus; export the embedding variant.
	$(BIN)/ragloop llm fetch
	$(BIN)/ragloop corpus fetch
	$(BIN)/ragloop embeddings export

run: install fetch phoenix argilla  ## Index the corpus, start the local LLM, monitoring and the chatbot.
	$(BIN)/ragloop run

test: install system-deps phoenix labeling-servers audit  ## Install, fetch test data and run the whole test suite.
	$(BIN)/ragloop llm fetch
	$(BIN)/ragloop embeddings export --backend auto --backend onnx-int8
	$(BIN)/python -m pytest $(PYTEST_ARGS)

audit: install  ## pip-audit of .venv; fails on unlisted findings (docs/security.md), says INCOMPLETE when PyPI is unreachable.
	$(BIN)/python scripts/audit.py

lint: install  ## ruff + mypy.
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install fetch  ## Run every benchmark; results in bench/results/.
	for b in bench/bench_*.py; do $(BIN)/python $$b || exit 1; done
	python3 ../shared/check_targets.py || true

$(PHOENIX_STAMP):
	test -x .venv-tools/phoenix/bin/python || $(PYTHON) -m venv .venv-tools/phoenix
	.venv-tools/phoenix/bin/pip install -q --upgrade pip
	.venv-tools/phoenix/bin/pip install -q 'arize-phoenix==$(PHOENIX_VERSION)'
	touch $@

phoenix: $(PHOENIX_STAMP)  ## Arize Phoenix in .venv-tools/phoenix (the local trace viewer).

GRAFANA_NPM := grafana/validate/node_modules/.package-lock.json
$(GRAFANA_NPM): grafana/validate/package-lock.json
	@command -v npm >/dev/null || { echo "node and npm are needed: apt-get install nodejs npm"; exit 1; }
	cd grafana/validate && npm ci --no-audit --no-fund
	touch $@

.PHONY: grafana-validate
grafana-validate: install $(GRAFANA_NPM)  ## Check dashboards (tsc vs @grafana/schema), PromQL, alert rules (promtool), compose file.
	$(BIN)/python grafana/build_dashboards.py --check
	$(BIN)/python grafana/validate/check.py
	docker-compose -f docker-compose.yml config -q

.PHONY: drift drift-ui dagster
drift: install  ## One drift run over the chat log (window/reference from RAGLOOP_DRIFT_*).
	$(BIN)/ragloop drift run

drift-ui: install  ## Evidently UI over the drift snapshots (RAGLOOP_DRIFT_UI_PORT, default 8085).
	$(BIN)/ragloop drift ui

dagster: install  ## Dagster UI with the drift assets, checks, schedule and sensor.
	DAGSTER_HOME=$${DAGSTER_HOME:-$$PWD/data/dagster} && mkdir -p $$DAGSTER_HOME && \
	DAGSTER_HOME=$$DAGSTER_HOME $(BIN)/dagster dev -h 127.0.0.1 -p $${DAGSTER_PORT:-3070} -m monitoring.drift.pipeline

clean:  ## Remove the virtual environments (data/ and the model cache stay).
	rm -rf $(VENV) .venv-tools

# Labeling servers, each in its own venv (tests start them in session fixtures; `ragloop run` starts Argilla).
# argilla-server 2.8 with noida-db standing in for Elasticsearch + Redis (../shared/RECIPES.md).
ARGILLA_SERVER_VERSION ?= 2.8.0
NOIDA_DB_VERSION ?= 0.2.3
ARGILLA_STAMP := .venv-tools/argilla/.installed-$(ARGILLA_SERVER_VERSION)-$(NOIDA_DB_VERSION)
LABEL_STUDIO_VERSION ?= 1.23.2
LABEL_STUDIO_STAMP := .venv-tools/label-studio/.installed-$(LABEL_STUDIO_VERSION)

.PHONY: argilla label-studio labeling-servers
$(ARGILLA_STAMP):
	test -x .venv-tools/argilla/bin/python || $(PYTHON) -m venv .venv-tools/argilla
	.venv-tools/argilla/bin/pip install -q --upgrade pip
	.venv-tools/argilla/bin/pip install -q 'argilla-server==$(ARGILLA_SERVER_VERSION)' 'click<8.2' \
		'noida-db==$(NOIDA_DB_VERSION)'
	touch $@

argilla: $(ARGILLA_STAMP)  ## argilla-server + noida-db (Elasticsearch/Redis stand-in) in .venv-tools/argilla.

$(LABEL_STUDIO_STAMP):
	test -x .venv-tools/label-studio/bin/python || $(PYTHON) -m venv .venv-tools/label-studio
	.venv-tools/label-studio/bin/pip install -q --upgrade pip
	.venv-tools/label-studio/bin/pip install -q 'label-studio==$(LABEL_STUDIO_VERSION)'
	touch $@

label-studio: $(LABEL_STUDIO_STAMP)  ## Label Studio server in .venv-tools/label-studio (never run `label-studio --version`).

labeling-servers: argilla label-studio  ## Both labeling servers (the tests use both).
