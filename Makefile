# perflab: `make report` (the main job) and `make test`. Each builds .venv when missing, installs the
# Debian packages the lab needs (nginx for the CDN edge, libvips for the pyvips baseline, redis-server
# 7 for the embedded Redis Cluster), starts the shared embedded servers, and does its job. Nothing
# here needs to be installed by hand first.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.perflab-installed
PROFILE ?= smoke
RESUME ?=
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: report help test lab up down status lint sysdeps venv clean-reports
.DEFAULT_GOAL := report

report: venv sysdeps up  ## the main job: migrate, corpus, run the notebooks under PROFILE (default smoke)
	$(BIN)/perflab db migrate
	$(BIN)/perflab corpus
	$(BIN)/perflab report --profile $(PROFILE)$(if $(RESUME), --resume $(RESUME))

help:  ## list the targets
	@echo "make [TARGET] [PROFILE=smoke|ci|full] [RESUME=<run-id>] [PYTEST_ARGS=...]   (bare make = make report)"
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z-]+):.*## (.*)/  \1\t\2/' | expand -t 16

test: venv sysdeps up  ## the test suite on the embedded servers (or staging's, when the URLs are set)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

venv: $(STAMP)  ## build .venv with the ml, lab and dev extras

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip 2>&1 | grep -v '^WARNING: Location' || true
	$(BIN)/python -m pip install -q --config-settings editable_mode=compat -e '.[ml,lab,dev]' 2>&1 | grep -v '^WARNING: Location' ; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/python -m pip install -q --no-deps 'signal-processing-algorithms>=2.1.6' 'more-itertools>=8' 'structlog>=24' 2>&1 | grep -v '^WARNING: Location' ; test $${PIPESTATUS[0]} -eq 0
	$(BIN)/python -m ipykernel install --prefix $(VENV) --name python3 >/dev/null
	touch $(STAMP)

# Debian packages: nginx (the CDN edge in front of the media origin), libvips42 (pyvips baseline) and
# redis-server (7.x: the embedded cluster's nodes, for sharded pub/sub; its own service on :6379 is
# never used by the lab, whose servers all run on free ports).
sysdeps:  ## install the Debian packages the lab needs (nginx, libvips42, redis-server), as root
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || missing="$$missing nginx"; \
	ldconfig -p 2>/dev/null | grep -q 'libvips.so.42' || missing="$$missing libvips42"; \
	test -x /usr/bin/redis-server || missing="$$missing redis-server"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "warning: missing Debian packages:$$missing (install them with apt-get as root)"; fi; \
	fi

up: venv  ## start the embedded Redis and PostgreSQL
	$(BIN)/perflab up

down:  ## stop them
	test -x $(BIN)/perflab && $(BIN)/perflab down || true

status: venv  ## servers, pgvector, and anything a run left behind
	$(BIN)/perflab status

lab: venv up  ## JupyterLab on notebooks/ at 127.0.0.1 (prints the URL with its token; LAB_PORT=8888)
	$(BIN)/perflab lab --port $(or $(LAB_PORT),8888)

lint: venv  ## ruff and mypy
	$(BIN)/ruff check perflab tests loadtests
	$(BIN)/ruff format --check perflab tests loadtests
	$(BIN)/mypy perflab

clean-reports:  ## remove every report run but the baseline
	find reports -mindepth 1 -maxdepth 1 ! -name README.md ! -name baseline -exec rm -rf {} +
