# Every target creates/reuses .venv/ at the repo root first: `make test` and `make demo` work on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install test lint demo bench bench-bin chaos crds krew lock prometheus-bin controlplane clean

install: $(STAMP) prometheus-bin controlplane

# The runtime dependencies at the image's pinned, hashed versions first (requirements.lock), then the package with
# the test and local extras on top: tests run against what the image ships.
$(STAMP): pyproject.toml requirements.lock
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(PY) -m pip install --quiet -e '.[test,local]'
	@touch $(STAMP)

# Real Prometheus (Debian's 2.42) for the metrics provider, integration tests and the demo.
prometheus-bin:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then \
		echo "installing Debian's prometheus package"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus >/dev/null; \
	fi

# etcd, kube-apiserver and helm from the pinned Go modules in controlplane/, once per machine, into
# ~/.cache/mlrollouts/controlplane (outside the venv; seconds once built). Without Go, or if the build fails,
# it says so in one line and exits 0: `mlrollouts apiserver` then uses the emulator.
controlplane:
	@bash controlplane/build.sh

test: install
	$(PY) -m pytest -q -p no:cacheprovider

lint: install
	$(VENV)/bin/ruff check operator tests benchmarks controlplane
	$(VENV)/bin/ruff format --check operator tests benchmarks controlplane

demo: install
	$(VENV)/bin/mlrollouts demo $(if $(SCENARIO),--scenario $(SCENARIO),)

bench: install bench-bin
	$(PY) -m benchmarks

# nginx (the split_clients baseline beside the gateway) and wrk (the compiled load generator), Debian's packages;
# without apt it says so in one line and the gateway benchmark skips what is missing.
bench-bin:
	@if ! command -v wrk >/dev/null || ! { command -v nginx || [ -x /usr/sbin/nginx ]; } >/dev/null; then \
		echo "installing Debian's nginx and wrk packages"; \
		{ $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx wrk >/dev/null; } \
			|| echo "could not install nginx and wrk with apt-get: the gateway benchmark skips what is missing"; \
	fi

# Faults on canaries on the local stack (>= 50 points, a few minutes; not part of `make test`, which runs a sample).
# SEED=N replays a sweep; the table goes to benchmarks/results/chaos.md; exit status 1 on any invariant violation.
chaos: install
	$(PY) -m benchmarks.chaos $(if $(SEED),--seed $(SEED),)

crds: install
	$(VENV)/bin/mlrollouts crd --output crds/modelexperiments.mlrollouts.dev.yaml
	cp crds/modelexperiments.mlrollouts.dev.yaml charts/mlrollouts/crds/modelexperiments.mlrollouts.dev.yaml
	$(VENV)/bin/mlrollouts crd --kind MetricTemplate --output crds/metrictemplates.mlrollouts.dev.yaml
	$(VENV)/bin/mlrollouts crd --kind ClusterMetricTemplate --output crds/clustermetrictemplates.mlrollouts.dev.yaml
	cp crds/metrictemplates.mlrollouts.dev.yaml crds/clustermetrictemplates.mlrollouts.dev.yaml charts/mlrollouts/crds/

# The krew plugin archive (dist/kubectl-mlrollouts_vVERSION.tar.gz, reproducible); for a release, also
# dist/mlrollouts.yaml rendered from krew/mlrollouts.yaml.tmpl: make krew RELEASE_URL=https://... HOMEPAGE=https://...
krew: install
	$(PY) -m mlrollouts.cli.krew dist $(if $(RELEASE_URL),--release-url $(RELEASE_URL) --homepage $(HOMEPAGE))

# The image's pinned, hashed runtime dependencies (Python 3.11, as the Dockerfile's base). Re-run after editing
# the dependencies in pyproject.toml; the test suite fails while the lock and pyproject disagree.
lock: install
	$(PY) -m pip install --quiet 'pip-tools>=7.4'
	$(VENV)/bin/pip-compile --quiet --strip-extras --generate-hashes --allow-unsafe --no-header --no-emit-find-links \
		--output-file requirements.lock pyproject.toml

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
