# blackfriday: `make run` starts the whole pipeline locally; `make test` runs every test.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# Pinned tool versions, installed from the Go module proxy into .bin/.
BUF_VERSION                   := v1.75.0
PROTOC_GEN_GO_VERSION         := v1.36.12
PROTOC_GEN_CONNECT_GO_VERSION := v1.21.1
PROTOC_GEN_GO_GRPC_VERSION    := v1.6.2
PROTOVALIDATE_VERSION         := v1.2.2

BIN      := $(CURDIR)/.bin
BUF      := $(BIN)/buf
PV_DIR   := third_party/protovalidate
PV_STAMP := $(PV_DIR)/.version-$(PROTOVALIDATE_VERSION)
MODULES  := gen contract services/api services/aggregator tooling/stack tooling/loadgen test/e2e test/deploy test/browser test/alerts
# The ref `buf breaking` compares the schemas against, when it exists.
BREAKING_AGAINST ?= main

# The stack launcher (tooling/stack, `bin/stack -h`). `make run` is
# `bin/stack run`; a target that needs a real Kafka and Valkey runs its
# command under `bin/stack -dir .run/<target> with kafka valkey -- ...`,
# which starts them, names them in the command's environment
# (contract/testenv) and stops them after; or uses the ones that
# environment already names, so that the targets make test runs share its.
STACK := bin/stack
WITH   = $(STACK) -dir $(CURDIR)/.run/$@ with

.PHONY: help
help: ## Show the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(BIN)/.buf-$(BUF_VERSION):
	GOBIN=$(BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@touch $@
$(BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION):
	GOBIN=$(BIN) go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@touch $@
$(BIN)/.protoc-gen-connect-go-$(PROTOC_GEN_CONNECT_GO_VERSION):
	GOBIN=$(BIN) go install connectrpc.com/connect/cmd/protoc-gen-connect-go@$(PROTOC_GEN_CONNECT_GO_VERSION)
	@touch $@
$(BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION):
	GOBIN=$(BIN) go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
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
tools: $(BIN)/.buf-$(BUF_VERSION) $(BIN)/.protoc-gen-go-$(PROTOC_GEN_GO_VERSION) $(BIN)/.protoc-gen-connect-go-$(PROTOC_GEN_CONNECT_GO_VERSION) $(BIN)/.protoc-gen-go-grpc-$(PROTOC_GEN_GO_GRPC_VERSION) $(PV_STAMP) ## Install the pinned tools.

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

.PHONY: stack
stack: ## Build the stack launcher, bin/stack (bin/stack -h says what it does).
	go build -o bin/ ./tooling/stack/cmd/stack

.PHONY: build
build: ## Build the binaries into bin/: api, aggregator, stack.
	go build -o bin/ ./services/api ./services/aggregator ./tooling/stack/cmd/stack

.PHONY: run
run: build ## Start the whole pipeline locally (embedded Kafka unless KAFKA_BROKERS is set); Ctrl-C stops it.
	$(STACK) run

# make test runs every Go test and check under one real Kafka broker and one
# real Valkey, which the targets it runs share.
.PHONY: test
test: lint checkgenerate stack ## Run every test against a real Kafka broker and a real Valkey/Redis.
	$(WITH) kafka valkey -- $(MAKE) --no-print-directory test-go fuzz-short k6-check deploy-test alerts-test web-test
	$(MAKE) --no-print-directory prod-faults-short

# The race detector runs on the service and tooling packages; the end-to-end
# tests build and run the real binaries.
.PHONY: test-go
test-go: ## The Go tests (services and e2e); real Kafka and Valkey from the environment, as make test gives them.
	go test -count=1 -race -timeout 20m ./gen/... ./contract/... ./services/api/... ./services/aggregator/... ./tooling/stack/... ./tooling/loadgen/...
	@# The api's server tests again with native gRPC on connect-go (GRPC_SERVER=connect); the run above serves it with grpc-go.
	BF_TEST_GRPC_SERVER=connect go test -count=1 -race -timeout 20m ./services/api/internal/server/...
	go test -count=1 -timeout 20m -v ./test/e2e/...

.PHONY: test-unit
test-unit: ## Run the tests that need no external service.
	go test -count=1 $(addprefix ./,$(addsuffix /...,$(MODULES)))

# ---- Faults, overload and fuzzing (docs/reliability.md, docs/results/)

# Load per fault scenario. make test runs the same tests with the default
# (8s, in test/e2e/load_test.go).
FAULTS_DURATION ?= 60s
# The tests of the suite: the fault scenarios, the two that predate them, and
# least privilege.
FAULTS_RUN      ?= ^(TestFault.*|TestAggregatorSIGKILL|TestKafkaOutage|TestKafkaSCRAMAndACLs|TestValkeyACLs)$$
FAULTS_DIR      := $(CURDIR)/.run/faults

.PHONY: faults
faults: stack ## The long fault suite (FAULTS_DURATION=60s of load per scenario); prints the results table.
	@mkdir -p $(FAULTS_DIR)
	@echo "faults: FAULTS_DURATION=$(FAULTS_DURATION), log in $(FAULTS_DIR)/faults.log"; \
	rc=0; FAULTS_DURATION=$(FAULTS_DURATION) $(STACK) -dir $(FAULTS_DIR)/stack with kafka valkey -- \
	  go test -count=1 -timeout 90m -v -run '$(FAULTS_RUN)' ./test/e2e/ > $(FAULTS_DIR)/faults.log 2>&1 || rc=$$?; \
	grep -E '^(--- |ok|FAIL)' $(FAULTS_DIR)/faults.log || true; \
	echo; echo '| scenario | load | faults injected | acknowledged | counted | lost | duplicated | notes |'; \
	echo '|---|---|---|---|---|---|---|---|'; \
	grep -o 'RESULT | .*' $(FAULTS_DIR)/faults.log | sed 's/^RESULT //; s/$$/ |/' || true; \
	exit $$rc

OVERLOAD_DURATION ?= 30s
# The api on a core of its own, the driver, broker, Valkey and aggregator
# on the other (taskset); OVERLOAD_PIN=false shares both cores.
OVERLOAD_PIN      ?= true
OVERLOAD_DIR      := $(CURDIR)/.run/overload-api

.PHONY: overload-api
overload-api: stack ## The api overload test at full length (OVERLOAD_DURATION=30s, OVERLOAD_PIN=true), strict bounds; run it on a quiet machine.
	@mkdir -p $(OVERLOAD_DIR)
	@echo "overload-api: OVERLOAD_DURATION=$(OVERLOAD_DURATION) OVERLOAD_PIN=$(OVERLOAD_PIN), load average $$(cut -d' ' -f1-3 /proc/loadavg), log in $(OVERLOAD_DIR)/overload.log"; \
	rc=0; OVERLOAD_STRICT=true OVERLOAD_PIN=$(OVERLOAD_PIN) OVERLOAD_DURATION=$(OVERLOAD_DURATION) OVERLOAD_OUT=$(OVERLOAD_DIR)/overload.json \
	  $(STACK) -dir $(OVERLOAD_DIR)/stack with kafka valkey -- \
	  go test -count=1 -timeout 20m -v -run '^TestOverload$$' ./test/e2e/ > $(OVERLOAD_DIR)/overload.log 2>&1 || rc=$$?; \
	grep -E '^(--- |ok|FAIL)|overload_test.go:[0-9]+: ' $(OVERLOAD_DIR)/overload.log | grep -v 'waiting for the aggregates' || true; \
	echo "figures: $(OVERLOAD_DIR)/overload.json"; \
	exit $$rc

.PHONY: test-api-security
test-api-security: ## The api's security and hostile-input tests (in process, no service needed).
	cd services/api && go test -count=1 -race \
	  -run 'Hostile|Load|Check|UnknownFields|SlowHeaders|Inflight|Admission|MaxConnections|MetricsCount|CapsBound|Auth|ReadAuth|LegacyOpen|CORS|Codec|Fits32|Kafka|Fuzz' ./...

# Every fuzz target, as module:package:target:executions. Each count is
# about 10 to 20 s of fuzzing on a 2-core machine; a count, unlike a time,
# gives Go's fuzz coordinator no deadline to race (scripts/fuzz.sh).
FUZZ_TARGETS := services/aggregator:./internal/aggregate:FuzzDecode:250000x \
  services/api:./internal/server:FuzzRecordSaleJSON:40000x \
  services/api:./internal/server:FuzzRecordSaleProto:25000x \
  services/api:./internal/legacy:FuzzDecodeVenta:100000x \
  services/api:./internal/legacy:FuzzPriceCents:70000x
# How long make fuzz runs each target; FUZZ_ONLY=api (or aggregator) keeps
# one service's targets.
FUZZ_LONGTIME ?= 10m
FUZZ_ONLY     ?=
FUZZ           = $(if $(FUZZ_ONLY),$(filter services/$(FUZZ_ONLY):%,$(FUZZ_TARGETS)),$(FUZZ_TARGETS))

.PHONY: fuzz-short
fuzz-short: ## Run every fuzz target for its execution count (10-20s each; FUZZ_ONLY=api or aggregator).
	scripts/fuzz.sh $(FUZZ)

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZ_LONGTIME (10m) each; fails only on a reproducer.
	FUZZ_BUDGET=$(FUZZ_LONGTIME) scripts/fuzz.sh $(FUZZ)

.PHONY: fuzz-api-short fuzz-api
fuzz-api-short: ## fuzz-short for the api's targets alone.
	@$(MAKE) --no-print-directory fuzz-short FUZZ_ONLY=api
fuzz-api: ## fuzz for the api's targets alone.
	@$(MAKE) --no-print-directory fuzz FUZZ_ONLY=api

# ---- JSON against gRPC, measured (docs/results/)

# Where make compare and make bench write: by default a fresh scratch
# directory per invocation (printed at the end); the committed results only
# when asked for, with COMPARE_RESULTS=docs/results.
COMPARE_STAMP   := $(shell date -u +%Y%m%dT%H%M%SZ)
COMPARE_RESULTS ?= .run/compare/$(COMPARE_STAMP)
# The comparison's knobs: repetitions, each run's measured window and
# warm-up, load before anything is measured (the broker's JIT), closed-loop
# callers for every protocol, extra gRPC concurrencies (empty: none), the
# open-loop rate (0: half the slowest unary saturation), the freshness
# probe's length, a subset of protocols (empty: all), and more `loadgen
# compare` flags. For a longer, steadier run: make compare COMPARE_REPS=5
# COMPARE_DURATION=10s.
COMPARE_REPS          ?= 3
COMPARE_DURATION      ?= 1500ms
COMPARE_WARMUP        ?= 500ms
COMPARE_BROKER_WARMUP ?= 8s
COMPARE_CONCURRENCY   ?= 128
COMPARE_SWEEP         ?= 1,8,32,512
COMPARE_RATE          ?= 0
COMPARE_FRESHNESS     ?= 20s
COMPARE_PROTOCOLS     ?=
COMPARE_ARGS          ?=
# The command that reproduces a run, for its report: make compare and the
# knobs given on the command line or in the environment.
COMPARE_KNOBS   := REPS DURATION WARMUP BROKER_WARMUP CONCURRENCY SWEEP RATE FRESHNESS PROTOCOLS ARGS
COMPARE_COMMAND  = $(strip make compare $(foreach k,$(COMPARE_KNOBS),$(if $(filter command line environment,$(origin COMPARE_$(k))),COMPARE_$(k)=$(COMPARE_$(k)))))

# loadgen compare starts a real Kafka broker and Valkey with the stack
# launcher (in .run/compare-env), unless BF_TEST_KAFKA_BROKERS and
# BF_TEST_VALKEY_ADDR name running ones, and stops them after.
.PHONY: compare
compare: build ## Compare every protocol end to end against a real broker into COMPARE_RESULTS (default .run/compare/<UTC time>; docs/results to publish; ~6½ min).
	@revision=$$(git rev-parse --short HEAD 2>/dev/null || echo unknown); \
	git diff --quiet HEAD -- services gen proto 2>/dev/null || revision+=" with local changes"; \
	echo "compare: load average $$(cut -d' ' -f1-3 /proc/loadavg)"; \
	go run ./tooling/loadgen compare -api-bin bin/api -aggregator-bin bin/aggregator \
	  -reps $(COMPARE_REPS) -duration $(COMPARE_DURATION) -warmup $(COMPARE_WARMUP) -broker-warmup $(COMPARE_BROKER_WARMUP) \
	  -concurrency $(COMPARE_CONCURRENCY) -sweep '$(COMPARE_SWEEP)' -rate $(COMPARE_RATE) -freshness $(COMPARE_FRESHNESS) \
	  $(if $(COMPARE_PROTOCOLS),-protocols '$(COMPARE_PROTOCOLS)') $(if $(wildcard $(COMPARE_RESULTS)/bench.txt),-bench $(COMPARE_RESULTS)/bench.txt) \
	  -work .run/compare -out $(COMPARE_RESULTS) -revision "$$revision" -command '$(COMPARE_COMMAND)' $(COMPARE_ARGS) $(COMPARE_CAPACITY_ARGS)
	@echo "compare: results, CSV, .hgrm and plots in $(COMPARE_RESULTS)/"

# What a durable gRPC call's api CPU is made of on each server of native
# gRPC: CPU profiles under the same load, summed by part.
.PHONY: grpc-profile
grpc-profile: build ## Profile a durable gRPC call's api CPU on grpc-go and on connect-go; prints µs per call by part (~1 min).
	$(WITH) kafka valkey -- scripts/grpc-profile.sh

# ---- Capacity: costs per unit measured by compare, and the plan from them (docs/capacity.md)
#
# COMPARE_PIN=1 pins the broker, Valkey and loadgen to CPU 0 and the apis and
# the aggregator to CPU 1 (needs 2 CPUs); COMPARE_COST_DURATION is each
# protocol's window in compare's cost phase (0 skips it). capacity-measure
# runs one repetition with no sweep, freshness probe or reruns of disturbed
# runs, and CAPACITY_COST_DURATION windows: it needs the cost phase, not
# the comparison's spread.
COMPARE_PIN           ?= 0
COMPARE_COST_DURATION ?= 3s
COMPARE_KNOBS         += PIN COST_DURATION
COMPARE_CAPACITY_ARGS  = $(if $(filter 1,$(COMPARE_PIN)),-pin) -cost-duration $(COMPARE_COST_DURATION)
# Where make capacity-measure writes (docs/results/capacity to publish), and
# the results make capacity plans from.
CAPACITY_RESULTS ?= .run/capacity/$(COMPARE_STAMP)
CAPACITY_IN      ?= docs/results/capacity/results.json
CAPACITY_RATES   ?= 10000,100000,1000000
CAPACITY_COST_DURATION ?= 5s

.PHONY: capacity-measure
capacity-measure: ## Measure the costs per unit, pinned, into CAPACITY_RESULTS (docs/results/capacity to publish; ~3 min).
	@mkdir -p $(CAPACITY_RESULTS)
	$(MAKE) --no-print-directory compare COMPARE_PIN=1 COMPARE_REPS=1 COMPARE_SWEEP= COMPARE_FRESHNESS=0 \
	  COMPARE_COST_DURATION=$(CAPACITY_COST_DURATION) COMPARE_RESULTS=$(CAPACITY_RESULTS) COMPARE_ARGS='-max-other-load 0 $(COMPARE_ARGS)' \
	  COMPARE_COMMAND='make capacity-measure$(if $(filter command line,$(origin CAPACITY_RESULTS)), CAPACITY_RESULTS=$(CAPACITY_RESULTS))' \
	  2>&1 | tee $(CAPACITY_RESULTS)/compare.log
	go run ./tooling/loadgen size -in $(CAPACITY_RESULTS)/results.json -rate $(CAPACITY_RATES) -check | tee $(CAPACITY_RESULTS)/size.txt

.PHONY: capacity
capacity: ## Print the capacity plan for 10k, 100k and 1M sales/s from the committed costs (CAPACITY_IN).
	go run ./tooling/loadgen size -in $(CAPACITY_IN) -rate $(CAPACITY_RATES) -check

# Benchmarks to run, and how long each.
BENCH_PATTERN ?= ^BenchmarkRecordSale(s|Parallel)?$$
BENCH_TIME    ?= 1s
BENCH_COUNT   ?= 3

# With BF_TEST_KAFKA_BROKERS set (eval "$$(bin/stack up kafka)"), the
# benchmarks also produce to that real broker ("broker"), whose allocations,
# unlike in-process kfake's, are not counted against the api.
.PHONY: bench
bench: k6-check ## Run the in-process benchmarks and print the ratios; bench.txt into COMPARE_RESULTS (default .run/compare/<UTC time>).
	@mkdir -p $(COMPARE_RESULTS)
	go test -run '^$$' -bench '$(BENCH_PATTERN)' -benchmem -benchtime $(BENCH_TIME) -count $(BENCH_COUNT) \
	  ./services/api/internal/server | tee $(COMPARE_RESULTS)/bench.txt
	go run ./tooling/loadgen benchratio -in $(COMPARE_RESULTS)/bench.txt
	@echo "bench: wrote $(COMPARE_RESULTS)/bench.txt (make compare COMPARE_RESULTS=$(COMPARE_RESULTS) includes it)"

.PHONY: k6-check
k6-check: ## Check the k6 scripts: they parse, name real RPCs and protos, honour TOKEN and PLAINTEXT, bound dropped iterations.
	@for f in k6/*.js; do node --check "$$f" || exit 1; done
	go test -count=1 -run '^TestK6Scripts$$' ./tooling/loadgen/
	@echo "k6-check: k6/*.js parse, and every RPC path and proto file they name exists"
	@# The scripts run under node with k6's modules stubbed (k6/check/check.mjs).
	node k6/check/check.mjs

# ---- The live dashboard: web/ → services/api/internal/web/dist, embedded in the api
#
# The built bundle and the TypeScript generated from proto/ are committed, so
# a fresh clone builds the api with Go alone. web-check proves they are what
# the sources and web/package-lock.json produce: it regenerates and rebuilds
# into temporary directories and compares, byte for byte.

WEB_DIR      := web
WEB_DIST     := services/api/internal/web/dist
WEB_GEN      := $(WEB_DIR)/src/gen
WEB_DEPS     := $(WEB_DIR)/node_modules/.package-lock.json
CHROMIUM     ?= /usr/bin/chromium

# npm ci installs exactly what the lockfile pins; node_modules/.package-lock.json
# is npm's own record of the last install.
$(WEB_DEPS): $(WEB_DIR)/package.json $(WEB_DIR)/package-lock.json
	cd $(WEB_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

.PHONY: web-deps
web-deps: $(WEB_DEPS) ## Install the dashboard's npm packages from the lockfile.

.PHONY: web-generate
web-generate: tools $(WEB_DEPS) ## Regenerate the dashboard's TypeScript from proto/ (protoc-gen-es).
	$(BUF) generate --template $(WEB_DIR)/buf.gen.yaml

.PHONY: web-build
web-build: $(WEB_DEPS) ## Type-check and rebuild the dashboard bundle the api embeds.
	cd $(WEB_DIR) && npx --no-install tsc --noEmit -p .
	cd $(WEB_DIR) && node build.mjs

.PHONY: web-check
web-check: tools $(WEB_DEPS) ## Type-check and unit-test the dashboard; fail if the committed TS or bundle is stale.
	cd $(WEB_DIR) && npx --no-install tsc --noEmit -p .
	cd $(WEB_DIR) && node build.mjs --test
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	  sed 's|out: $(WEB_GEN)$$|out: '"$$tmp"'/gen|' $(WEB_DIR)/buf.gen.yaml >"$$tmp/buf.gen.yaml"; \
	  $(BUF) generate --template "$$tmp/buf.gen.yaml"; \
	  if ! diff -r "$$tmp/gen" $(WEB_GEN) >"$$tmp/gen.diff"; then head -40 "$$tmp/gen.diff"; \
	    echo "web-check: $(WEB_GEN) is stale; run make web-generate web-build and commit" >&2; exit 1; fi; \
	  (cd $(WEB_DIR) && node build.mjs --out "$$tmp/dist"); \
	  if ! diff -r "$$tmp/dist" $(WEB_DIST) >/dev/null; then diff -rq "$$tmp/dist" $(WEB_DIST) || true; \
	    echo "web-check: $(WEB_DIST) is stale; run make web-build and commit" >&2; exit 1; fi
	@echo "web-check: generated TypeScript and the embedded bundle are up to date"

# Debian's chromium, installed when missing (apt needs root).
$(CHROMIUM):
	@if [ "$$(id -u)" != 0 ]; then echo "browser test: $(CHROMIUM) is missing; install Debian's chromium (apt-get install chromium)" >&2; exit 1; fi
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null

.PHONY: browser-test
browser-test: $(CHROMIUM) stack ## Run the dashboard in headless Chromium against the real stack (real Kafka and Valkey).
	GOWORK=off $(WITH) kafka valkey -- go -C test/browser test -count=1 -timeout 10m -v ./...

.PHONY: web-test
web-test: web-check browser-test ## Every dashboard test: web-check, then the browser test.

# The screenshot in docs/img/dashboard.png and the update latency in
# docs/results/dashboard-latency.md come from this run (a few thousand sales a second).
.PHONY: dashboard-latency
dashboard-latency: $(CHROMIUM) stack ## Measure the dashboard's update latency under load; refresh the screenshot.
	GOWORK=off BF_DASHBOARD_SCREENSHOT=$(CURDIR)/docs/img/dashboard.png BF_LATENCY_SECONDS=$${BF_LATENCY_SECONDS:-20} \
	  $(WITH) kafka valkey -- go -C test/browser test -count=1 -timeout 10m -v -run 'TestDashboard' ./...

# ---- Alerts: promtool's unit tests of the PrometheusRule (test/alerts)

# promtool from the Prometheus Go module (v0.316.0 is Prometheus 3.16.0).
# remove_all_sd leaves out the service-discovery SDKs (AWS, Azure, GCE, ...),
# which rule tests never use: about 2 minutes to build on 2 cores, once.
PROMTOOL_VERSION := v0.316.0
PROMTOOL         := $(BIN)/promtool

$(BIN)/.promtool-$(PROMTOOL_VERSION):
	GOBIN=$(BIN) GOWORK=off go install -tags remove_all_sd github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)
	@touch $@

# The rules promtool reads are kustomize/components/service-monitor's
# PrometheusRule as the prod build renders it; every alert has a firing and
# a quiet case, and each case fails with its alert broken.
.PHONY: alerts-test
alerts-test: $(BIN)/.promtool-$(PROMTOOL_VERSION) ## promtool test rules on every alert, as the prod build renders the PrometheusRule.
	PROMTOOL=$(PROMTOOL) GOWORK=off go -C test/alerts test -count=1 -v ./... | grep -vE '^(=== |    --- PASS)'

# The prod overlay's shape on this machine (tooling/stack/prodshape): three
# KRaft nodes with its topics, SCRAM users and ACLs, Valkey with its ACL
# users, two api and three aggregator processes with their Deployments'
# settings; sales through both apis, counted, and every probe and port
# compared with the manifests. About a minute of two cores, so not in
# make test. By hand: bin/stack -dir .run/prod up-prod, check-prod, down.
.PHONY: prod-shape-test
prod-shape-test: ## Run the prod overlay's shape locally and check it against its manifests (~1 min).
	BF_TEST_PRODSHAPE=1 go test -count=1 -v -timeout 10m -run '^TestProdShape$$' ./tooling/stack/prodshape/

# The fault scenarios on the production shape (test/e2e/prodfaults_test.go,
# docs/results/prod-faults.md): one shape brought up once, each scenario
# under PROD_FAULTS_DURATION of mixed-protocol load through both api
# replicas, audited exactly; PROD_FAULTS_JSON=path writes the table as JSON.
PROD_FAULTS_DURATION ?= 30s
PROD_FAULTS_DIR      := $(CURDIR)/.run/prod-faults

.PHONY: prod-faults
prod-faults: ## The fault scenarios on the prod shape (PROD_FAULTS_DURATION=30s of load each); prints the table.
	@mkdir -p $(PROD_FAULTS_DIR)
	@echo "prod-faults: PROD_FAULTS_DURATION=$(PROD_FAULTS_DURATION), log in $(PROD_FAULTS_DIR)/prod-faults.log"; \
	rc=0; BF_TEST_PRODFAULTS=1 PROD_FAULTS_DURATION=$(PROD_FAULTS_DURATION) PROD_FAULTS_JSON=$(PROD_FAULTS_JSON) \
	  go test -count=1 -timeout 60m -v -run '^TestProdFaults$$' ./test/e2e/ > $(PROD_FAULTS_DIR)/prod-faults.log 2>&1 || rc=$$?; \
	grep -E '^\s*(--- |ok|FAIL)|prodfaults_test.go:[0-9]+: .*(want|failed)' $(PROD_FAULTS_DIR)/prod-faults.log || true; \
	echo; echo '| scenario | acknowledged | counted | failed calls | recovery s |'; echo '|---|---|---|---|---|'; \
	grep -o 'PRODRESULT | .*' $(PROD_FAULTS_DIR)/prod-faults.log | sed 's/^PRODRESULT //' || true; \
	if [ $$rc -ne 0 ]; then echo; echo "prod-faults: FAILED; the log's end:"; tail -150 $(PROD_FAULTS_DIR)/prod-faults.log; fi; \
	exit $$rc

# The same scenarios, shorter, as make test runs them (about 5 minutes).
.PHONY: prod-faults-short
prod-faults-short: ## The fault scenarios on the prod shape with 6s of load each (part of make test).
	@$(MAKE) --no-print-directory prod-faults PROD_FAULTS_DURATION=6s

# ---- Kubernetes delivery: images, kustomize builds and their offline validation
include deploy.mk

.PHONY: clean
clean: ## Stop every stack under .run/, then remove build output and local state.
	@if [ -x $(STACK) ]; then find .run -name stack.json 2>/dev/null | while read -r f; do $(STACK) -dir "$$(dirname "$$f")" down || true; done; fi
	rm -rf bin .run
