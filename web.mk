# The live dashboard (web/ → services/api/internal/web/dist, embedded in the
# api) and its browser test. Included by the Makefile, which provides BUF and
# the tools target.
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
browser-test: $(CHROMIUM) ## Run the dashboard in headless Chromium against the real stack (real Kafka and Valkey).
	@if [ -n "$${BF_TEST_KAFKA_BROKERS:-}" ] && [ -n "$${BF_TEST_VALKEY_ADDR:-}" ]; then \
	  cd test/browser && GOWORK=off go test -count=1 -timeout 10m -v ./...; \
	else \
	  trap '$(CURDIR)/scripts/testenv.sh down >/dev/null 2>&1 || true' EXIT; \
	  eval "$$($(CURDIR)/scripts/testenv.sh up)"; \
	  cd test/browser && GOWORK=off go test -count=1 -timeout 10m -v ./...; \
	fi

.PHONY: web-test
web-test: web-check browser-test ## Every dashboard test: web-check, then the browser test.

# The screenshot in docs/img/dashboard.png and the update latency in
# docs/dashboard.md come from this run (a few thousand sales a second).
.PHONY: dashboard-latency
dashboard-latency: $(CHROMIUM) ## Measure the dashboard's update latency under load; refresh the screenshot.
	@trap '$(CURDIR)/scripts/testenv.sh down >/dev/null 2>&1 || true' EXIT; \
	  eval "$$($(CURDIR)/scripts/testenv.sh up)"; \
	  cd test/browser && GOWORK=off BF_DASHBOARD_SCREENSHOT=$(CURDIR)/docs/img/dashboard.png BF_LATENCY_SECONDS=$${BF_LATENCY_SECONDS:-20} \
	    go test -count=1 -timeout 10m -v -run 'TestDashboard' ./...
