#!/usr/bin/env bash
# Runs Go fuzz targets one after another (make fuzz-short, make fuzz).
#
# Usage: scripts/fuzz.sh MODULE_DIR:PKG:TARGET:BUDGET...
#   BUDGET is each target's -fuzztime when FUZZ_BUDGET is unset: a count of
#   executions, "250000x". FUZZ_BUDGET=10m gives every target that time
#   instead (the long runs). The Makefile's FUZZ_TARGETS lists them all.
#
# A count has no deadline, and Go 1.26's fuzz coordinator can race its own
# -fuzztime deadline under load: the run then fails with "context deadline
# exceeded" and no failing input (golang/go#75804, fixed in Go 1.27). So
# make test fuzzes by count, and a timed run that fails with that error and
# without writing a reproducer into the target's testdata/fuzz/ is reported
# and the next target runs. Any other failure fails. The committed corpora
# also replay as ordinary tests (go test), the deterministic gate.
set -euo pipefail
root=$PWD
for spec in "$@"; do
  IFS=: read -r dir pkg name budget <<<"$spec"
  cd "$root/$dir"
  time=${FUZZ_BUDGET:-$budget}
  corpus="$pkg/testdata/fuzz/$name"
  before=$(ls "$corpus" 2>/dev/null | sort || true)
  echo "fuzz $name ($dir/$pkg) for $time"
  log=$(mktemp)
  if go test -run '^$' -fuzz "^$name\$" -fuzztime "$time" "$pkg" 2>&1 | tee "$log"; then
    rm -f "$log"
    continue
  fi
  written=$(comm -13 <(echo "$before") <(ls "$corpus" 2>/dev/null | sort || true))
  if [[ -z "$written" && "$time" != *x ]] && grep -q 'context deadline exceeded' "$log"; then
    echo "fuzz: $name stopped on its -fuzztime deadline without a failing input (Go's fuzz coordinator); not a failure" >&2
    rm -f "$log"
    continue
  fi
  rm -f "$log"
  [[ -n "$written" ]] && echo "fuzz: $name failed; reproducer: $corpus/$written" >&2
  exit 1
done
