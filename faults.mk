# faults.mk: the fault suite and the aggregator's fuzzing (see
# docs/reliability.md). Included by the Makefile.
#
#   make faults       the long fault suite: every scenario of test/e2e/faults_test.go
#                     (and the least-privilege tests) with FAULTS_DURATION of load
#                     each, against a real Kafka broker and Valkey started here;
#                     prints the results table of docs/reliability.md
#   make fuzz-short   each fuzz target of the aggregator for its execution
#                     count (make test)
#   make fuzz         the same for FUZZ_LONGTIME each

# Load per fault scenario. make test runs the same tests with the default
# (8s, in test/e2e/load_test.go).
FAULTS_DURATION ?= 60s
# The tests of the suite: the fault scenarios, the two that predate them, and
# least privilege.
FAULTS_RUN      ?= ^(TestFault.*|TestAggregatorSIGKILL|TestKafkaOutage|TestKafkaSCRAMAndACLs|TestValkeyACLs)$$
FAULTS_DIR      := $(CURDIR)/.run/faults
FUZZ_LONGTIME   ?= 10m
# package:target:executions, one per fuzz target of the aggregator. The
# count is about 20 s of fuzzing on a 2-core machine; a count, unlike a
# time, gives Go's fuzz coordinator no deadline to race (scripts/fuzz.sh).
AGGREGATOR_FUZZ := ./internal/aggregate:FuzzDecode:250000x

.PHONY: faults
faults: ## The long fault suite (FAULTS_DURATION=60s of load per scenario); prints the results table.
	@mkdir -p $(FAULTS_DIR)
	@export BF_RUN_DIR=$(FAULTS_DIR); \
	trap 'scripts/testenv.sh down >/dev/null 2>&1 || true' EXIT; \
	scripts/testenv.sh up >/dev/null || exit 1; \
	source $(FAULTS_DIR)/testenv.env; \
	echo "faults: FAULTS_DURATION=$(FAULTS_DURATION), log in $(FAULTS_DIR)/faults.log"; \
	rc=0; FAULTS_DURATION=$(FAULTS_DURATION) go test -count=1 -timeout 90m -v -run '$(FAULTS_RUN)' ./test/e2e/ \
	  > $(FAULTS_DIR)/faults.log 2>&1 || rc=$$?; \
	grep -E '^(--- |ok|FAIL)' $(FAULTS_DIR)/faults.log || true; \
	echo; echo '| scenario | load | faults injected | acknowledged | counted | lost | duplicated | notes |'; \
	echo '|---|---|---|---|---|---|---|---|'; \
	grep -o 'RESULT | .*' $(FAULTS_DIR)/faults.log | sed 's/^RESULT //; s/$$/ |/' || true; \
	exit $$rc

.PHONY: fuzz-short
fuzz-short: ## Run each aggregator fuzz target for its execution count (about 20s each).
	scripts/fuzz.sh services/aggregator $(AGGREGATOR_FUZZ)

.PHONY: fuzz
fuzz: ## Run each aggregator fuzz target for FUZZ_LONGTIME (10m); fails only on a reproducer.
	FUZZ_BUDGET=$(FUZZ_LONGTIME) scripts/fuzz.sh services/aggregator $(AGGREGATOR_FUZZ)
