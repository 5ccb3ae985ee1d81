# api-security.mk: the api's security and reliability targets (docs/security.md,
# docs/reliability-api.md). Included by the Makefile.
#
#   make fuzz-api-short   each api fuzz target for its execution count (about
#                         10 s each), from the seed corpora in testdata/fuzz
#                         (make test)
#   make fuzz-api         the same for API_FUZZ_LONGTIME (10m) each
#   make overload-api     the overload test at full length (OVERLOAD_DURATION=30s)
#                         against a real Kafka broker and Valkey started here;
#                         strict latency bounds; figures in .run/overload-api/
#   make test-api-security  the api's security and hostile-input tests alone
#                         (in process, kfake; no service needed)

API_FUZZ_LONGTIME ?= 10m
# package:target:executions, one per fuzz target of the api (module
# services/api). Each count is about 10 s of fuzzing on a 2-core machine; a
# count gives Go's fuzz coordinator no deadline to race (scripts/fuzz.sh).
API_FUZZ := ./internal/server:FuzzRecordSaleJSON:40000x ./internal/server:FuzzRecordSaleProto:25000x \
            ./internal/legacy:FuzzDecodeVenta:100000x ./internal/legacy:FuzzPriceCents:70000x
OVERLOAD_DURATION ?= 30s
OVERLOAD_DIR      := $(CURDIR)/.run/overload-api

.PHONY: fuzz-api-short
fuzz-api-short: ## Run each api fuzz target for its execution count (about 10s each).
	scripts/fuzz.sh services/api $(API_FUZZ)

.PHONY: fuzz-api
fuzz-api: ## Run each api fuzz target for API_FUZZ_LONGTIME (10m); fails only on a reproducer.
	FUZZ_BUDGET=$(API_FUZZ_LONGTIME) scripts/fuzz.sh services/api $(API_FUZZ)

# What both overload targets start with: a real broker and Valkey of their
# own, stopped on exit; and the test they run.
OVERLOAD_STACK = export BF_RUN_DIR=$(OVERLOAD_DIR); \
	trap 'scripts/testenv.sh down >/dev/null 2>&1 || true' EXIT; \
	scripts/testenv.sh up >/dev/null || exit 1; \
	source $(OVERLOAD_DIR)/testenv.env
OVERLOAD_TEST = go test -count=1 -timeout 20m -v -run '^TestOverload$$' ./test/e2e/

.PHONY: overload-api
overload-api: ## The api overload test at full length (OVERLOAD_DURATION=30s), strict bounds; run it on a quiet machine.
	@mkdir -p $(OVERLOAD_DIR)
	@$(OVERLOAD_STACK); \
	echo "overload-api: OVERLOAD_DURATION=$(OVERLOAD_DURATION), load average $$(cut -d' ' -f1-3 /proc/loadavg), log in $(OVERLOAD_DIR)/overload.log"; \
	rc=0; OVERLOAD_STRICT=true OVERLOAD_DURATION=$(OVERLOAD_DURATION) OVERLOAD_OUT=$(OVERLOAD_DIR)/overload.json \
	  $(OVERLOAD_TEST) > $(OVERLOAD_DIR)/overload.log 2>&1 || rc=$$?; \
	grep -E '^(--- |ok|FAIL)|overload_test.go:[0-9]+: ' $(OVERLOAD_DIR)/overload.log | grep -v 'waiting for the aggregates' || true; \
	echo "figures: $(OVERLOAD_DIR)/overload.json"; \
	exit $$rc

.PHONY: test-api-security
test-api-security: ## The api's security and hostile-input tests (in process, no service needed).
	cd services/api && go test -count=1 -race \
	  -run 'Hostile|Load|Check|UnknownFields|SlowHeaders|Inflight|Admission|MaxConnections|MetricsCount|CapsBound|Auth|ReadAuth|LegacyOpen|CORS|Codec|Fits32|Kafka|Fuzz' ./...
