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

setup: $(VENV)/.installed .jvm/.resolved .debian-packages .k8s-schemas/.resolved ## venv + pip install -e .[dev] + Maven jars + Debian packages + the operators' CRD schemas (idempotent)

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

# The schemas k8s/ and docker-compose.kafka.yml are validated against (tests/unit/test_manifests.py,
# test_compose.py): the Spark operator's SparkApplication CRD and the Compose specification from
# their Go modules (pinned by hash), Strimzi's CRDs as compiled validators from npm (pinned by
# k8s/validate/package-lock.json).
SPARK_OPERATOR_VERSION := v2.3.0
SPARK_OPERATOR_SHA256  := 13d5fdaa278e372798205582e22fd8083dbdc817f1b1e8e7d36fa84a7d9703b3
COMPOSE_GO_VERSION     := v2.9.1
COMPOSE_GO_SHA256      := 4784e326b7c0541f05f0564d2518d3729acab5751c0f89842cc65aa601449fcc
UNZIP_ONE := $(PY) -c "import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); n = [f for f in z.namelist() if f.endswith(sys.argv[2])]; open(sys.argv[3], 'wb').write(z.read(n[0]))"
.k8s-schemas/.resolved: Makefile $(VENV)/.installed k8s/validate/package.json k8s/validate/package-lock.json k8s/validate/strimzi.mjs
	@command -v kubectl >/dev/null || { echo "error: kubectl not found (it renders k8s/ with kustomize): apt-get install kubectl, or put kustomize's kubectl on PATH"; exit 1; }
	@command -v npm >/dev/null || { echo "error: npm not found: apt-get install nodejs npm"; exit 1; }
	mkdir -p .k8s-schemas
	curl -fsSL --retry 3 -o .k8s-schemas/spark-operator.zip https://proxy.golang.org/github.com/kubeflow/spark-operator/v2/@v/$(SPARK_OPERATOR_VERSION).zip
	echo "$(SPARK_OPERATOR_SHA256)  .k8s-schemas/spark-operator.zip" | sha256sum -c --quiet
	$(UNZIP_ONE) .k8s-schemas/spark-operator.zip config/crd/bases/sparkoperator.k8s.io_sparkapplications.yaml .k8s-schemas/sparkapplications.crd.yaml
	curl -fsSL --retry 3 -o .k8s-schemas/compose-go.zip https://proxy.golang.org/github.com/compose-spec/compose-go/v2/@v/$(COMPOSE_GO_VERSION).zip
	echo "$(COMPOSE_GO_SHA256)  .k8s-schemas/compose-go.zip" | sha256sum -c --quiet
	$(UNZIP_ONE) .k8s-schemas/compose-go.zip schema/compose-spec.json .k8s-schemas/compose-spec.json
	rm .k8s-schemas/spark-operator.zip .k8s-schemas/compose-go.zip
	cp k8s/validate/package.json k8s/validate/package-lock.json k8s/validate/strimzi.mjs .k8s-schemas/
	cd .k8s-schemas && npm ci --no-audit --no-fund --silent
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
	rm -rf $(VENV) .jvm .debian-packages .k8s-schemas *.egg-info
