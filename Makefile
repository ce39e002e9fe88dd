# Two commands on a fresh machine: `make demo` and `make test`.
# Each provisions what it needs (Node 24, npm packages, the real local stack)
# into ~/.cache/ai-operator, so only the first run pays for downloads and builds.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PROVISION := dev/scripts/provision.sh
# The pinned Node when the machine's is not Node 24 (the image's, see Dockerfile); every target runs on it.
NODE := $(shell $(PROVISION) node | sed -n 's/^node=//p')
export PATH := $(dir $(NODE)):$(PATH)
# Node's compile cache, outside the clone: the tests start some 600 operator processes, and each spends a third
# less CPU loading its modules with it (test/e2e/support/operator.ts inheritedEnv).
export NODE_COMPILE_CACHE ?= $(HOME)/.cache/ai-operator/node-compile-cache

.PHONY: help deps stack image typecheck lint-layers test test-unit test-e2e demo bench soak clean

help:
	@echo "make demo   - bring up the local real stack and show the operator at work"
	@echo "make test   - typecheck, layer check, unit tests and end-to-end tests on the real stack"
	@echo "make image  - build the operator's image from the Dockerfile with buildah (no Docker engine needed)"
	@echo "make bench  - benchmarks (not part of make test)"
	@echo "make soak   - an hour of the 10,000-app bench through restarts and kills (not part of make test)"

node_modules/.installed: package.json package-lock.json
	@[ -x "$(NODE)" ] || { echo "make: no Node.js 24 could be provisioned" >&2; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

deps: node_modules/.installed

# Builds or downloads etcd, kube-apiserver + kubectl, nats-server, Prometheus,
# Elasticsearch, helm, kustomize, the GitOps loop, and the image tools (buildah, podman)
# once per machine; later runs only check the cache. The image itself is built
# by the test that runs it (test/e2e/image.test.ts), cached the same way.
stack:
	@$(PROVISION) all >/dev/null

# The Dockerfile, built by buildah (no Docker engine) into an image store in the
# cache, and reused while its inputs (Dockerfile, package*.json, src/, schemas/,
# the base) are unchanged. Its base, node:<NODE_VERSION>-bookworm-slim, is built
# locally once when no registry is reachable (dev/scripts/image.sh).
image:
	@dev/scripts/image.sh build

typecheck: deps
	node node_modules/typescript/bin/tsc --noEmit

# The import layers of src/ (README: Layout; rules and reasons in .dependency-cruiser.cjs).
lint-layers: deps
	node node_modules/dependency-cruiser/bin/dependency-cruiser.mjs --config .dependency-cruiser.cjs --output-type err-long src

test-unit: deps
	node node_modules/vitest/vitest.mjs run --project unit

test-e2e: deps stack
	node node_modules/vitest/vitest.mjs run --project e2e

test: deps stack typecheck lint-layers
	node node_modules/vitest/vitest.mjs run

# On real Argo CD, kube-controller-manager, kube-scheduler and KWOK (built once: see the README's
# provisioning table); `make demo SIM=1` tells the same story on the Argo CD simulator, so it
# provisions only the base stack (not `stack`, which is everything the tests need).
demo: deps
	@$(PROVISION) node etcd kube nats prometheus elasticsearch jaeger $(if $(SIM),,argocd-stack) >/dev/null
	node dev/demo.ts $(if $(SIM),--sim)

bench: deps stack
	node bench/run.ts

soak: deps stack
	node bench/soak.ts

clean:
	rm -rf node_modules dist
