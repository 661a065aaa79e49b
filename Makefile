# ShadowMesh: `make demo` runs the whole thing locally, `make test` runs every test.
# Each target does its own set-up on a fresh machine: a virtualenv from requirements.lock, npm packages
# from package-lock.json, and (when root) the Debian packages the end-to-end tests use.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     := .venv
PY       := $(VENV)/bin/python
PYTEST   := $(VENV)/bin/pytest
APE      := $(VENV)/bin/ape
# py-solc-x finds `solc-v0.8.28` here: solcjs from npm behind a wrapper, so compiling works offline.
export SOLCX_BINARY_PATH := $(CURDIR)/tools/solc-bin
export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export PYTHONDONTWRITEBYTECODE := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

# prometheus: promtool check/test rules (make ops-check) and the real Prometheus of tests/e2e/test_observability.py;
# postgresql: the relay cluster's shared ledger, a throwaway server started by tests/client/cluster and tests/e2e/test_cluster.py
# nebula, openvpn, v2ray (with wireguard-go): the peers `make bench` runs side by side (bench/peers/, issue 17)
DEBIAN_PACKAGES := iproute2 iptables nftables iperf3 iputils-ping ethtool wireguard-tools wireguard-go nginx-light openssl tcpdump \
                   prometheus postgresql bind9-dnsutils \
                   nebula openvpn v2ray \
                   chromium  # chromium: the dashboard's browser test (tests/e2e/test_dashboard.py, driven by Playwright)

.PHONY: help setup venv npm debs compile test lint ops-venv ops-check coverage test-contracts test-client test-e2e slither gas bench demo anvil chain chain-stop deploy lock clean extension

# `make chain`: the local chain of docs/quickstart.md. CHAIN_DIR holds its pid file, log, deployment record and
# the dev owner's keystore; CHAIN_PORT its port (tests use a free one).
CHAIN_DIR  ?= .state/chain
CHAIN_PORT ?= 8545
CHAIN_HOST ?= 127.0.0.1

help: ## list the targets
	@echo "ShadowMesh — make targets:"
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-15s %s\n", $$1, $$2}'

setup: venv npm extension debs ## install everything (virtualenv, npm packages, Debian packages when root)

venv: $(VENV)/.installed ## the Python virtualenv, from requirements.lock
$(VENV)/.installed: requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade "pip>=24" "setuptools>=68" "wheel==0.45.1"  # wheel 0.46+ wants packaging>=24; the lock has 23.2 (eth-ape)
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps -e .
	grep -q SOLCX_BINARY_PATH $(VENV)/bin/activate || echo 'export SOLCX_BINARY_PATH="$(CURDIR)/tools/solc-bin"' >> $(VENV)/bin/activate
	touch $@

npm: node_modules/.installed ## npm packages: solcjs, OpenZeppelin, anvil (package-lock.json)
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

debs: ## Debian packages for the end-to-end tests and benchmarks (only when root; skipped otherwise)
	@if [ "$$(id -u)" != 0 ]; then echo "not root: skipping Debian packages"; \
	else missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	  if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; fi; fi

compile: venv npm ## compile the contracts (ape + solcjs)
	$(APE) compile

test: setup compile ## run every test: lint, contracts, Slither, client, end-to-end
	$(MAKE) --no-print-directory lint ops-check test-contracts slither test-client test-e2e

LINT_PATHS := shadowmesh_client lab bench tests scripts tools

lint: venv ## ruff (style, imports, bugbear, pyupgrade) and mypy (strict on the pure cores): pyproject.toml
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/mypy shadowmesh_client

coverage: venv npm ## client tests with line and branch coverage of node/, relay/ and rewards/ (report printed)
	$(PYTEST) tests/client -p no:ape_test -q --cov=shadowmesh_client.node --cov=shadowmesh_client.relay \
	  --cov=shadowmesh_client.rewards --cov-branch --cov-report=term-missing:skip-covered

test-contracts: venv npm ## contract tests on Ape's local EVM
	$(APE) test tests/contracts

test-client: venv npm extension ## client unit and integration tests (no root needed; includes the VS Code extension's)
	$(PYTEST) tests/client -p no:ape_test

# The VS Code extension (vscode-extension/, its own package-lock.json): build with tsc, unit tests with node's
# test runner, and a .vsix with @vscode/vsce (works offline). Its integration test runs from test-client.
extension: vscode-extension/out/.tested ## build, unit-test and package the VS Code extension
vscode-extension/out/.tested: vscode-extension/package.json vscode-extension/package-lock.json $(wildcard vscode-extension/src/*.ts vscode-extension/test/*/*.ts)
	cd vscode-extension && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build && npm test --silent \
	  && npm run --silent package
	touch $@

test-e2e: setup ## end-to-end tests: anvil, namespaces, TUN (root)
	$(PYTEST) tests/e2e -p no:ape_test

OPS_VENV := .venv-ops

ops-venv: $(OPS_VENV)/.installed ## checkov in a virtualenv of its own (deploy/requirements-ops.lock says why)
$(OPS_VENV)/.installed: deploy/requirements-ops.lock
	test -x $(OPS_VENV)/bin/python || python3 -m venv $(OPS_VENV)
	$(OPS_VENV)/bin/pip install -q -r deploy/requirements-ops.lock
	touch $@

ops-check: venv ops-venv debs ## deploy/ offline: promtool check + unit tests of the alert rules, checkov, manifests, Terraform
	promtool check rules deploy/prometheus/rules/*.yml
	promtool test rules deploy/prometheus/tests/*.yml
	$(OPS_VENV)/bin/checkov -d deploy --framework terraform kubernetes dockerfile --skip-download --compact --quiet
	$(PYTEST) tests/client/ops/test_deploy.py tests/client/ops/test_rules.py -p no:ape_test -q

slither: venv npm ## static analysis of the contracts
	$(PY) tools/run_slither.py

gas: venv npm compile ## gas table for the README
	$(APE) test tests/contracts --gas -q

bench: setup compile ## benchmarks: protocol, directory sync, the mesh side by side with wireguard-go, Nebula, OpenVPN, v2ray
	$(PY) -m bench all

demo: ## a local chain, contracts deployed, devices registered, a mesh up, traffic through it (root)
	@echo "setting up (first run: about 1 min for the virtualenv, npm packages and contracts; then seconds)"
	@mkdir -p .state && $(MAKE) --no-print-directory setup compile > .state/demo-setup.log 2>&1 \
	  || { tail -n 40 .state/demo-setup.log; echo "error: set-up failed; full log: .state/demo-setup.log"; exit 1; }
	@$(PY) -m lab.demo

anvil: npm ## run a local anvil on 127.0.0.1:8545 (foreground)
	anvil --host 127.0.0.1 --port 8545

chain: venv npm compile ## local chain for the quickstart: anvil on 127.0.0.1:8545 + contracts + a funded dev owner + network 1
	@$(PY) -m lab.chain start --dir $(CHAIN_DIR) --host $(CHAIN_HOST) --port $(CHAIN_PORT)

chain-stop: ## stop the anvil `make chain` started (its state is forgotten)
	@$(PY) -m lab.chain stop --dir $(CHAIN_DIR)

deploy: venv npm compile ## maintainers: deploy both contracts, e.g. make deploy NETWORK=polygon:amoy:node ACCOUNT=alias
	@test -n "$(NETWORK)" || { echo "error: say where: make deploy NETWORK=polygon:amoy:node ACCOUNT=<ape account alias> (local: make chain)"; exit 2; }
	$(APE) run deploy --network $(NETWORK) $(if $(ACCOUNT),--account $(ACCOUNT)) $(DEPLOY_ARGS)

lock: ## re-resolve requirements.in into requirements.lock
	rm -rf /tmp/shadowmesh-lock && python3 -m venv /tmp/shadowmesh-lock
	/tmp/shadowmesh-lock/bin/pip install -q -r requirements.in
	( echo "# Generated by \`make lock\` from requirements.in (pip freeze of a clean venv). Exact versions: CI installs these."; \
	  /tmp/shadowmesh-lock/bin/pip freeze ) > requirements.lock

clean: ## remove build outputs (keeps the virtualenv and node_modules)
	rm -rf .build contracts/.cache .pytest_cache .hypothesis .mypy_cache .ruff_cache .coverage
