# blackfriday: `make run` starts the whole pipeline locally; `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Pinned tool versions, installed from the Go module proxy into .bin/.
BUF_VERSION                   := v1.75.0
PROTOC_GEN_GO_VERSION         := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1
PROTOVALIDATE_VERSION         := v1.2.2

BIN      := $(CURDIR)/.bin
BUF      := $(BIN)/buf
PV_DIR   := third_party/protovalidate
PV_STAMP := $(PV_DIR)/.version-$(PROTOVALIDATE_VERSION)
MODULES  := gen contract services/api services/aggregator services/devstack services/loadgen test/e2e test/deploy test/browser test/pipelinetest
# The ref `buf breaking` compares the schemas against, when it exists.
BREAKING_AGAINST ?= main

.PHONY: help
help: ## Show the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/.buf-$(BUF_VERSION):
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@touch $@
$(BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION):
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@touch $@
$(BIN)/.protoc-gen-connect-go-$(PROTOC_GEN_CONNECT_GO_VERSION):
	GOBIN=$(BIN) go install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)
	@touch $@

# protovalidate's validate.proto comes from the Go module cache at a pinned
# version, so buf needs no registry access.
$(PV_STAMP):
	rm -rf $(PV_DIR) && mkdir -p $(PV_DIR)
	dir=$$(cd $(PV_DIR) && GOWORK=off GOFLAGS=-mod=mod go mod download -json github.com/bufbuild/protovalidate@$(PROTOVALIDATE_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p'); \
	  cp -r "$$dir/proto/protovalidate/buf" $(PV_DIR)/
	chmod -R u+w $(PV_DIR) && find $(PV_DIR) -name BUILD.bazel -delete
	@touch $@

.PHONY: tools
tools: $(BIN)/.buf-$(BUF_VERSION) $(BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION) $(BIN)/.protoc-gen-connect-go-$(PROTOC_GEN_CONNECT_GO_VERSION) $(PV_STAMP) ## Install the pinned tools.

.PHONY: generate
generate: tools ## Regenerate gen/ from proto/.
	$(BUF) format -w
	$(BUF) generate
	cd gen && go mod tidy

.PHONY: checkgenerate
checkgenerate: generate ## Fail if regenerating changes gen/ or proto/.
	@if [ -n "$$(git status --porcelain -- gen proto)" ]; then \
	  git status --porcelain -- gen proto; echo "checkgenerate: generated code is stale; run make generate and commit" >&2; exit 1; fi
	@echo "checkgenerate: gen/ is up to date"

.PHONY: lint
lint: tools ## buf lint, format and breaking; gofmt; go vet.
	$(BUF) lint
	$(BUF) format -d --exit-code
	@if git rev-parse -q --verify "$(BREAKING_AGAINST)^{commit}" >/dev/null && git cat-file -e "$(BREAKING_AGAINST):buf.yaml" 2>/dev/null; then \
	  tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  git archive "$(BREAKING_AGAINST)" buf.yaml proto | tar -x -C "$$tmp"; \
	  mkdir -p "$$tmp/third_party" && cp -r $(PV_DIR) "$$tmp/third_party/"; \
	  echo "buf breaking --against $(BREAKING_AGAINST)"; $(BUF) breaking --against "$$tmp"; \
	else echo "buf breaking: no $(BREAKING_AGAINST) with schemas yet, skipped"; fi
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:" >&2; echo "$$out" >&2; exit 1; fi
	go vet $(addprefix ./,$(addsuffix /...,$(MODULES)))
	@# Each module also builds alone, as container builds need.
	@for m in $(MODULES); do (cd $$m && GOWORK=off go vet ./...) || { echo "$$m does not build alone (GOWORK=off)" >&2; exit 1; }; done
	@echo "every module builds alone (GOWORK=off)"

.PHONY: build
build: ## Build the binaries into bin/.
	go build -o bin/ ./services/api ./services/aggregator ./services/devstack

.PHONY: run
run: build ## Start the whole pipeline locally (embedded Kafka unless KAFKA_BROKERS is set).
	bin/devstack

.PHONY: test
test: lint checkgenerate ## Run every test against a real Kafka broker and a real Valkey/Redis.
	scripts/test.sh
	$(MAKE) fuzz-short
	$(MAKE) fuzz-api-short
	$(MAKE) k6-check
	$(MAKE) deploy-test
	$(MAKE) web-test

.PHONY: test-unit
test-unit: ## Run the tests that need no external service.
	go test -count=1 $(addprefix ./,$(addsuffix /...,$(MODULES)))

# Kubernetes delivery: images, kustomize builds and their offline validation.
include deploy.mk
# The live dashboard: its build, the check that the embedded bundle is fresh,
# and the headless-Chromium test.
include web.mk
# The long fault suite (`make faults`) and the fuzz targets.
include faults.mk
# The api's security targets: fuzzing, the overload run, the hostile-input tests.
include api-security.mk
# The JSON-vs-gRPC comparison (`make compare`) and the handler benchmarks (`make bench`).
include compare.mk

.PHONY: clean
clean: ## Remove build output and local state.
	rm -rf bin .run
