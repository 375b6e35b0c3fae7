# nocrd's developer entry points. `make help` lists them.
#
# Every target installs what it needs on a fresh machine (Debian packages,
# Go modules, npm packages) and is safe to run again.

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
NOCRD := $(BIN)/nocrd
CLUSTER := $(BIN)/nocrd-cluster
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
# Where `make cluster-up` keeps the local cluster (certificates, data, logs).
CLUSTER_DIR ?= $(HOME)/.cache/nocrd-testcluster/cluster
# The test run uses its own cluster directory, so it never touches the demo's.
TEST_CLUSTER_DIR ?= $(HOME)/.cache/nocrd-testcluster/test-run
GOTEST_FLAGS ?= -count=1 -timeout 20m
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
DEMO_PORT ?= 3000

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install the Debian packages the tests use (idempotent)
	@missing=""; \
	command -v docker-registry >/dev/null 2>&1 || missing="$$missing docker-registry"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	command -v wat2wasm >/dev/null 2>&1 || missing="$$missing wabt"; \
	command -v chromium >/dev/null 2>&1 || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "deps: installing$$missing with apt-get"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	else echo "deps: docker-registry, node, npm, wabt and chromium present"; fi

.PHONY: build
build: ## build bin/nocrd and bin/nocrd-cluster
	$(GO) build -ldflags "$(LDFLAGS)" -o $(NOCRD) ./cmd/nocrd
	$(GO) build -o $(CLUSTER) ./internal/testcluster/cmd/nocrd-cluster

# The example policies, built by the standard Go toolchain for WASI.
POLICY_DIR := $(BIN)/policies
POLICIES := $(notdir $(wildcard wasm-policies/examples/*))

.PHONY: policies
policies: ## build the example Wasm policies into bin/policies/
	@mkdir -p $(POLICY_DIR)
	@for p in $(POLICIES); do \
	  GOOS=wasip1 GOARCH=wasm $(GO) build -buildmode=c-shared -o $(POLICY_DIR)/$$p.wasm ./wasm-policies/examples/$$p || exit 1; \
	  echo "policies: $(POLICY_DIR)/$$p.wasm"; \
	done

.PHONY: test
test: deps build policies lint ## run every test against a real cluster started (and stopped) for the run
	$(CLUSTER) run -dir $(TEST_CLUSTER_DIR) -- env NOCRD_BIN=$(NOCRD) $(GO) test $(GOTEST_FLAGS) ./...

# How long `make fuzz` runs each fuzz target.
FUZZTIME ?= 30s

.PHONY: fuzz
fuzz: deps ## run every go test -fuzz target for FUZZTIME (30s) each; an input that fails lands in testdata/fuzz
	@grep -rl --include='*_test.go' '^func Fuzz' . | sort | while read -r file; do \
	  dir=$$(dirname "$$file"); \
	  for target in $$(grep -o '^func Fuzz[A-Za-z0-9_]*' "$$file" | cut -d' ' -f2); do \
	    echo "fuzz: $$dir $$target"; \
	    $(GO) test "$$dir" -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) || exit 1; \
	  done; \
	done

.PHONY: bench
bench: build policies bench-deps ## Go benchmarks (3 runs each) and the whole-system load test vs nginx, HAProxy and configurable-http-proxy, on a cluster started for the run
	@mkdir -p $(BIN)
	$(CLUSTER) run -dir $(TEST_CLUSTER_DIR) -- bash -c '$(GO) test -run "^$$" -bench . -benchmem -count 3 ./... | tee $(BIN)/bench.txt && \
	  $(GO) run ./bench -nocrd $(NOCRD) -runs 30 -out bench/results'

# The CPU profile the Go compiler optimises nocrd with (profile-guided
# optimisation; RATIONALE.md, "nocrd is built with profile-guided
# optimisation"). go build
# picks it up by itself.
PGO_PROFILE := cmd/nocrd/default.pgo

.PHONY: pgo
pgo: build policies bench-deps ## refresh cmd/nocrd/default.pgo: profile every nocrd process under the bench's load (about 3 minutes)
	@rm -rf $(BIN)/pgo && mkdir -p $(BIN)/pgo
	$(GO) build -tags cpuprofile -o $(BIN)/pgo/nocrd ./cmd/nocrd
	$(CLUSTER) run -dir $(TEST_CLUSTER_DIR) -- env NOCRD_CPUPROFILE=$(BIN)/pgo NOCRD_CPUPROFILE_SECONDS=120 \
	  $(GO) run ./bench -nocrd $(BIN)/pgo/nocrd -only nocrd -runs 2 -duration 10s -out $(BIN)/pgo/results
	$(GO) tool pprof -proto $(BIN)/pgo/*.pprof > $(BIN)/pgo/default.pgo
	mv $(BIN)/pgo/default.pgo $(PGO_PROFILE)
	@echo "pgo: $(PGO_PROFILE) from $$(ls $(BIN)/pgo/*.pprof | wc -l) profiles"

.PHONY: bench-deps
bench-deps: ## install nginx, HAProxy, wrk, wabt and configurable-http-proxy for the load test (idempotent)
	@missing=""; \
	command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$$missing nginx"; \
	command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$$missing haproxy"; \
	command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v wat2wasm >/dev/null 2>&1 || missing="$$missing wabt"; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs npm"; \
	if [ -n "$$missing" ]; then \
	  echo "bench-deps: installing$$missing with apt-get"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@[ -d bench/chp/node_modules/configurable-http-proxy ] || (cd bench/chp && npm ci --no-audit --no-fund --loglevel=error)

.PHONY: lint
lint: ## go vet, gofmt check and staticcheck
	$(GO) vet ./...
	GOOS=wasip1 GOARCH=wasm $(GO) vet ./wasm-policies/guest ./wasm-policies/examples/...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) run $(STATICCHECK) ./...

.PHONY: fmt
fmt: ## format the Go code
	gofmt -w $$(git ls-files '*.go')

.PHONY: cluster-up
cluster-up: build ## start the local cluster (first run builds Kubernetes: ~10 min)
	$(CLUSTER) up -dir $(CLUSTER_DIR)

.PHONY: cluster-down
cluster-down: ## stop the local cluster
	@if [ -x $(CLUSTER) ]; then $(CLUSTER) down -dir $(CLUSTER_DIR); else $(GO) run ./internal/testcluster/cmd/nocrd-cluster down -dir $(CLUSTER_DIR); fi

.PHONY: demo
demo: build ## run nocrd on 127.0.0.1:3000 (DEMO_PORT); without a kubeconfig, on the local cluster
	@set -e; \
	if [ -n "$$KUBECONFIG" ] || [ -f "$$HOME/.kube/config" ]; then \
	  echo "demo: using your kubeconfig ($${KUBECONFIG:-$$HOME/.kube/config})"; kc="$${KUBECONFIG:-$$HOME/.kube/config}"; \
	else \
	  $(CLUSTER) up -dir $(CLUSTER_DIR); kc=$(CLUSTER_DIR)/kubeconfig; \
	fi; \
	KUBECONFIG=$$kc $(NOCRD) demo-setup; \
	echo; echo "Paste into your MCP client configuration:"; \
	printf '{\n  "mcpServers": {\n    "nocrd": { "type": "http", "url": "http://127.0.0.1:$(DEMO_PORT)/mcp" }\n  }\n}\n\n'; \
	echo "Or open the Pod Manager: http://127.0.0.1:$(DEMO_PORT)/ui"; \
	echo "Stop with Ctrl-C; stop the local cluster with 'make cluster-down'."; \
	exec env KUBECONFIG=$$kc $(NOCRD) --transport http --host 127.0.0.1 --port $(DEMO_PORT)
