# vpes - every set-up step lives here; nothing is installed by hand.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.installed
STATE ?= .state
export CONTAINERS_CONF ?= $(CURDIR)/images/containers.conf

.PHONY: help install system-deps k8s crds crds-check lint fmt typecheck test test-unit test-integration \
        test-images test-e2e cluster cluster-down demo demo-down bench clean \
        images bench-memory \
        stripe-mock billing bench-billing bench-dns bench-backup

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[dev]'
	touch $@

install: $(STAMP) ## create .venv with the project and its test tools

system-deps: ## install the Debian packages in tools/system-packages.txt that are missing
	@bash tools/install-system-packages.sh

stripe-mock: ## build (once, then cached in ~/.cache/vpes) stripe-mock, the Stripe API test server
	@bash tools/stripe-mock/build.sh >/dev/null

k8s: ## build (once, then cached in ~/.cache/vpes) etcd, kube-*, kubectl, kwok, helm
	@bash tools/k8s/build.sh >/dev/null

crds: $(STAMP) ## regenerate crds/ (and the chart's copy) from the pydantic models
	$(PY) -m vpes_operator.crdgen --out crds
	$(PY) -m vpes_operator.crdgen --out charts/vpes/crds

crds-check: $(STAMP)
	$(PY) -m vpes_operator.crdgen --out crds --check
	$(PY) -m vpes_operator.crdgen --out charts/vpes/crds --check

lint: $(STAMP) ## ruff and mypy
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

test: install system-deps k8s stripe-mock images ## install what the tests need, then run every tier
	$(VENV)/bin/pytest --durations=40 tests

test-unit: install ## the fast tier: no servers
	$(VENV)/bin/pytest -m unit tests/unit

test-integration: install system-deps k8s stripe-mock ## against a real control plane
	$(VENV)/bin/pytest -m integration tests/integration

images: install system-deps k8s ## build the base, tenant, dav, backup, edge, rspamd, webmail, webmail-db, pause, CoreDNS and operator images (cached by a hash of their inputs), save them to ~/.cache/vpes/images
	@bash images/build.sh tenant dav backup edge rspamd webmail webmail-db pause coredns operator

test-images: install system-deps images ## the real tenant image under podman, real mail clients
	$(VENV)/bin/pytest -m images tests/images

test-e2e: install system-deps k8s images ## everything together on a real node (kubelet, containerd, kube-router, CoreDNS): S3, restic
	$(VENV)/bin/pytest -m e2e tests/e2e

cluster: install system-deps k8s images ## start a local control plane (etcd, kube-apiserver, controller-manager, scheduler, kwok) and a real node
	$(VENV)/bin/vpes-cluster up --state $(STATE)/cluster

cluster-down: install ## stop exactly what `make cluster` started
	$(VENV)/bin/vpes-cluster down --state $(STATE)/cluster

demo: install system-deps k8s stripe-mock images ## control plane, a real node, S3, operator, billing and two customers whose servers take and serve mail
	$(PY) -m vpes_devcluster.demo up --state $(STATE)/demo

demo-down: install ## stop the demo
	$(PY) -m vpes_devcluster.demo down --state $(STATE)/demo

bench: install k8s ## benchmarks (figures, not pass/fail)
	$(PY) -m bench.reconcile

billing: install ## run the billing service (needs STRIPE_API_KEY, STRIPE_WEBHOOK_SECRET, a kubeconfig)
	$(VENV)/bin/billing --host 127.0.0.1 --port 8080

bench-billing: install k8s stripe-mock ## time from a signed checkout to the server Ready
	$(PY) -m bench.billing

bench-dns: install k8s system-deps ## time from a new domain (new server, or added to one) to its records published and verified (Knot DNS, 1 and 100 domains)
	$(PY) -m bench.dns

bench-backup: install system-deps images ## backup/restore rates (backup image, moto S3) and a second backup, next to tar | gzip
	$(PY) -m bench.backup

bench-memory: install system-deps images ## tenant memory (PSS) and SMTP throughput next to bare Postfix + Dovecot
	$(PY) -m bench.memory

.PHONY: bench-usage
bench-usage: install system-deps images ## what measuring storage costs: a usage report in a tenant (10 and 1,000 mailboxes), one operator pass over 1,000 servers
	$(PY) -m bench.usage

.PHONY: bench-node
bench-node: install system-deps k8s images ## on the real node: PersonalMailServer to first mail accepted (1 and 20 at once, operator vs direct apply), memory per idle tenant (20 and 50, next to podman), tenants per node
	$(PY) -m bench.node

.PHONY: bench-edge
bench-edge: install system-deps images ## the shared edge: SMTP through the MX (with and without Rspamd) next to straight into a tenant, MX memory and maps-change time for 100 and 1,000 tenants, the maps builder's CPU
	$(PY) -m bench.edge

.PHONY: bench-edge-logins
bench-edge-logins: install system-deps images ## IMAP logins/s through the edge's login proxy next to straight into a tenant (bcrypt cost 10 and 4), the proxy's CPU per login
	$(PY) -m bench.edge_logins

.PHONY: bench-edge-relay
bench-edge-relay: install system-deps images ## the outbound relay: messages/s with Rspamd judging each message next to the same relay without the scan, its memory
	$(PY) -m bench.edge_relay

.PHONY: bench-dav
bench-dav: install system-deps images ## calendars and contacts: the dav container's memory (1 and 20 side by side, idle and after use) next to the tenant container's, per tenant at 100 and 1,000
	$(PY) -m bench.dav

.PHONY: bench-webmail
bench-webmail: install system-deps images ## the shared webmail: inbox list p50/p95 with 1,000 messages next to 10 and to raw IMAP, webmail + database memory and disk idle and after 100 and 1,000 sessions
	$(PY) -m bench.webmail

.PHONY: bench-panel
bench-panel: install k8s ## the customer panel with 1,000 servers (kwok): p50/p95 of its overview, domains and mailboxes pages next to 1 server and to the raw API reads, the panel process's memory
	$(PY) -m bench.panel

.PHONY: bench-web
bench-web: install k8s ## vpes-web (autoconfig, autodiscover, MTA-STS, WKD) with 1,000 servers (kwok): p50/p95 per endpoint next to 1 server, one full listing's time and memory, requests while it lists every second, its memory
	$(PY) -m bench.web

.PHONY: bench-fleet
bench-fleet: install k8s ## fleet upgrades: a FleetUpgrade of 100 servers (kwok; canary 1, maxUnavailable 10 and 25) per wave and in all, next to the StatefulSets patched straight; the real node's part is bench-fleet-real
	$(PY) -m bench.fleet

.PHONY: bench-fleet-real
bench-fleet-real: install system-deps k8s images ## on the real node: 10 servers moved by the chart's operator through the real gate (canary 1, maxUnavailable 3 and 9), the longest window each refused SMTP, next to the StatefulSets patched straight
	$(PY) -m bench.fleet --real

clean: ## remove the venv and local state (not the binary cache)
	rm -rf $(VENV) $(STATE)
