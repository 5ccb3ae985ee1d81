# JSON vs gRPC, measured: `make compare` runs the load comparison
# against the real binaries and a real Kafka broker and writes docs/results/;
# `make bench` runs the in-process benchmarks and prints their ratios;
# `make k6-check` checks the k6 scripts statically (k6 itself is not
# installed here). Included from the Makefile.

COMPARE_RESULTS ?= docs/results

.PHONY: compare
compare: ## Compare every protocol end to end against a real broker, write docs/results/ (~3½ min; COMPARE_REPS=5 COMPARE_DURATION=10s for longer).
	scripts/compare.sh

# Benchmarks to run, and how long each.
BENCH_PATTERN ?= ^BenchmarkRecordSale(s|Parallel)?$$
BENCH_TIME    ?= 1s
BENCH_COUNT   ?= 3

# With BF_TEST_KAFKA_BROKERS set (eval "$$(scripts/testenv.sh up)"), the
# benchmarks also produce to that real broker ("broker"), whose allocations,
# unlike in-process kfake's, are not counted against the api.
.PHONY: bench
bench: k6-check ## Run the in-process benchmarks (real codecs, real vs no-op recorder) and print the ratios.
	@mkdir -p $(COMPARE_RESULTS)
	go test -run '^$$' -bench '$(BENCH_PATTERN)' -benchmem -benchtime $(BENCH_TIME) -count $(BENCH_COUNT) \
	  ./services/api/internal/server | tee $(COMPARE_RESULTS)/bench.txt
	go run ./services/loadgen benchratio -in $(COMPARE_RESULTS)/bench.txt

.PHONY: k6-check
k6-check: ## Check the k6 scripts: node --check, and every RPC path and proto file they name exists.
	@for f in k6/*.js; do node --check "$$f" || exit 1; done
	go test -count=1 -run '^TestK6Scripts$$' ./services/loadgen/
	@echo "k6-check: k6/*.js parse, and every RPC path and proto file they name exists"
