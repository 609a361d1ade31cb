# heartrisk-stream: the whole set-up is `make run` and `make test`.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
HR     := $(VENV)/bin/heartrisk
DEBIAN_PACKAGES := kcat prometheus prometheus-pushgateway hey
PYTEST_ARGS ?=

.PHONY: help setup test test-unit test-integration run lint clean distclean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

setup: $(VENV)/.installed .jvm/.resolved .debian-packages ## venv + pip install -e .[dev] + Maven jars + Debian packages (idempotent)

$(VENV)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found: install Python 3.10+"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

.jvm/.resolved: $(VENV)/.installed jvm/kafka/pom.xml jvm/spark/pom.xml jvm/registry/pom.xml $(wildcard jvm/functions/src/*/*/*/*.java) stream/local/jvm.py
	@command -v java >/dev/null || { echo "error: java not found: install a JDK 17+ (apt-get install openjdk-17-jdk-headless)"; exit 1; }
	@command -v mvn  >/dev/null || { echo "error: mvn not found: install Maven (apt-get install maven)"; exit 1; }
	$(PY) -m stream.local.jvm
	@touch $@

.debian-packages: Makefile
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing \
	    || { echo "error: could not apt-get install$$missing: install them by hand"; exit 1; }; \
	fi
	@touch $@

test: setup ## setup, then the whole test suite (unit + integration, on a real broker)
	$(VENV)/bin/pytest tests $(PYTEST_ARGS)

test-unit: setup ## only the tests that need no broker
	$(VENV)/bin/pytest tests/unit $(PYTEST_ARGS)

test-integration: setup ## only the tests on real services
	$(VENV)/bin/pytest tests/integration $(PYTEST_ARGS)

run: setup ## the main job: local broker + scorer + data-set replay, live predictions until Ctrl-C
	$(HR) run

lint: setup ## ruff + mypy on stream/, hadolint on k8s/Dockerfile
	$(VENV)/bin/ruff check stream tests
	$(VENV)/bin/mypy stream
	$(VENV)/bin/hadolint k8s/Dockerfile

clean: ## stop the local broker, delete its data, checkpoints and caches (keeps .venv and .jvm)
	-@test -x $(HR) && $(HR) kafka down
	-@test -x $(HR) && $(HR) registry down
	-@test -x $(HR) && $(HR) cluster down
	rm -rf .kafka-local .registry-local .spark-cluster .services .pytest_cache .mypy_cache .ruff_cache spark-warehouse
	find checkpoints -mindepth 1 -maxdepth 1 ! -name README.md -exec rm -rf {} +

distclean: clean ## clean, and remove .venv and .jvm too
	rm -rf $(VENV) .jvm .debian-packages *.egg-info
