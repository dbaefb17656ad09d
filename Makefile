# Basalt — build, generate, test, demo. `make help` lists the targets.
SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

# Everything built from outside the tree (Kubernetes artifacts, node images, tools) is cached
# here, keyed on versions, so a rerun takes seconds.
BASALT_CACHE ?= $(HOME)/.cache/basalt
export BASALT_CACHE
# The Kubernetes version of the default artifact set, and the older minor for upgrade tests.
KUBE_VERSION ?= v1.37.2
KUBE_VERSION_PREV ?= v1.36.3
# FAULTS_RUN selects the fault tests make test-faults runs (a go test -run pattern).
FAULTS_RUN ?= ^TestFault
ARTIFACTS_DIR = $(BASALT_CACHE)/artifacts/$(KUBE_VERSION)

LOCALBIN ?= $(CURDIR)/bin
CONTROLLER_GEN_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
CONTROLLER_GEN ?= $(BASALT_CACHE)/tools/controller-gen-$(CONTROLLER_GEN_VERSION)
GOLANGCI_LINT ?= $(BASALT_CACHE)/tools/golangci-lint-$(GOLANGCI_LINT_VERSION)

GO_TEST_FLAGS ?= -count=1 -timeout 75m
# FUZZTIME, when set, is every fuzz target's budget; empty: 50000 executions, or what a target
# declares with "// fuzz-budget:" (hack/fuzz.sh).
FUZZTIME ?=
# make test writes the whole go test output here too; on a failure it ends with what failed.
TEST_LOG ?= $(BASALT_CACHE)/logs/test.log

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code for the API types
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC into config/
	$(CONTROLLER_GEN) rbac:roleName=basalt-manager crd:allowDangerousTypes=false webhook paths="./api/...;./controllers/...;./agents/agentserver/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac
	$(MAKE) --no-print-directory chart

.PHONY: chart
chart: ## Copy the CRDs and RBAC rules of config/ into the Helm chart (charts/basalt/files; make manifests runs it)
	hack/chart-sync.sh

.PHONY: api-docs
api-docs: manifests ## Write docs/api-reference.md from the CRDs and api/v1alpha1 (hack/apidocs)
	go run ./hack/apidocs -crds config/crd/bases -api api/v1alpha1 -o docs/api-reference.md

.PHONY: fmt
fmt: ## go fmt
	go fmt ./...

.PHONY: vet
vet: ## go vet
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint (configuration in .golangci.yml)
	$(GOLANGCI_LINT) run ./...

.PHONY: verify
verify: generate manifests api-docs ## Regenerate, fail on any diff, then lint
	@if [ -n "$$(git status --porcelain -- api config docs/api-reference.md charts/basalt/files)" ]; then \
		echo "verify: generated files are out of date; run 'make generate manifests api-docs' and commit:"; \
		git status --porcelain -- api config docs/api-reference.md charts/basalt/files; git --no-pager diff --stat -- api config docs/api-reference.md charts/basalt/files; exit 1; fi
	hack/chart-sync.sh --check
	$(MAKE) lint

##@ Build

.PHONY: build
build: ## Build manager, agent and basaltctl into bin/
	CGO_ENABLED=0 go build -o $(LOCALBIN)/ ./cmd/...

.PHONY: image
image: ## Build (or reuse, by content hash) the manager image with docker, no registry; prints IMAGE= and IMAGE_TAR=
	hack/image.sh

##@ Artifacts and test bed

.PHONY: envtest-assets
envtest-assets: ## Build (or reuse) kube-apiserver and etcd for the integration tests
	hack/build-artifacts.sh --only kube-apiserver,etcd $(KUBE_VERSION)

.PHONY: artifacts
artifacts: ## Build (or reuse) the full artifact sets for KUBE_VERSION and KUBE_VERSION_PREV
	hack/build-artifacts.sh $(KUBE_VERSION)
	hack/build-artifacts.sh $(KUBE_VERSION_PREV)

.PHONY: pxe-image
pxe-image: ## Build (or reuse) the PXE agent kernel + initramfs under $(BASALT_CACHE)/pxe-image (prints VMLINUZ=, INITRAMFS=)
	pxe/image/build.sh

.PHONY: os-image
os-image: ## Build (or reuse) the Debian OS disk image for bare-metal Hosts (hack/os-image.sh, docs/os-image.md; --pxe-root-image)
	hack/os-image.sh

.PHONY: os-image-boot
os-image-boot: os-image ## Boot the OS disk image under QEMU (TCG) with OVMF and with SeaBIOS, waiting for the login prompt
	img=$$(hack/os-image.sh | sed -n 's/^OS_IMAGE=//p'); hack/os-image-boot.sh uefi "$$img" && hack/os-image-boot.sh bios "$$img"

##@ Test

.PHONY: test-artifacts
test-artifacts: ## Build (or reuse) the artifact sets the tests run (KUBE_VERSION, and KUBE_VERSION_PREV for the upgrade e2e) and the OS disk image (TestBareMetalWorker)
	hack/build-artifacts.sh $(KUBE_VERSION) >/dev/null
	hack/build-artifacts.sh $(KUBE_VERSION_PREV) >/dev/null
	hack/os-image.sh >/dev/null

# test/e2e comes first: the longest package (about 45 min, mostly waiting on the bed) starts at
# once beside the others instead of after most of them (go test dedups the second mention).
.PHONY: test
test: test-artifacts ## Run every test tier: unit, integration (real kube-apiserver), e2e, then bounded fuzzing (log: TEST_LOG)
	mkdir -p $(dir $(TEST_LOG))
	KUBEBUILDER_ASSETS=$(ARTIFACTS_DIR)/bin go test $(GO_TEST_FLAGS) ./test/e2e/ ./... 2>&1 | tee $(TEST_LOG) || { hack/test-failures.sh $(TEST_LOG); exit 1; }
	$(MAKE) fuzz

.PHONY: test-baremetal-cp
test-baremetal-cp: test-artifacts ## The longer bare-metal proof: a Cluster whose control plane runs on a PXE-booted QEMU VM (docs/bare-metal.md; not in make test)
	KUBEBUILDER_ASSETS=$(ARTIFACTS_DIR)/bin BASALT_BAREMETAL_CP=1 go test -count=1 -timeout 45m -run '^TestBareMetalControlPlane$$' -v ./test/e2e/

.PHONY: conformance
conformance: ## Kubernetes' conformance suite against a 1 + 2 Cluster Basalt brings up on the bed (docs/conformance.md; not in make test; about an hour)
	hack/build-artifacts.sh $(KUBE_VERSION) >/dev/null
	hack/build-artifacts.sh --only tool-e2e.test,tool-ginkgo,tool-kubectl,tool-registry $(KUBE_VERSION) >/dev/null
	hack/conformance-images.sh $(KUBE_VERSION) >/dev/null
	KUBEBUILDER_ASSETS=$(ARTIFACTS_DIR)/bin BASALT_CONFORMANCE_VERSION=$(KUBE_VERSION) go test -tags conformance -count=1 -timeout 5h -run '^TestConformance$$' -v ./test/e2e/

.PHONY: test-faults
test-faults: ## Fault-injection suite on the bed: F1 host lost, F2 manager killed, F3 partitions, F5 API server restarted, F6 quorum lost and recovered (docs/faults.md; not in make test; about an hour)
	hack/build-artifacts.sh $(KUBE_VERSION) >/dev/null
	hack/build-artifacts.sh $(KUBE_VERSION_PREV) >/dev/null
	KUBEBUILDER_ASSETS=$(ARTIFACTS_DIR)/bin go test -tags faults -count=1 -timeout 3h -run '$(FAULTS_RUN)' -v ./test/e2e/ 2>&1 | tee $(BASALT_CACHE)/faults.log

.PHONY: fuzz
fuzz: ## Fuzz every target for FUZZTIME each (docs/fuzzing.md: every parser of network or host input)
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

.PHONY: fuzz-long
fuzz-long: ## Fuzz every target for 10 minutes each, one target per core at once (not in make test; 18 targets: 90 min on 2 cores; docs/fuzzing.md)
	FUZZTIME=10m FUZZ_JOBS=$$(nproc) FUZZ_PARALLEL=1 FUZZ_LOG_DIR=$(BASALT_CACHE)/logs/fuzz-long hack/fuzz.sh

.PHONY: bench
bench: ## Run the benchmarks and write docs/benchmarks.md
	hack/bench.sh

##@ Demo

.PHONY: demo
demo: ## Bring up a local management plane and hosts, then a cluster, with Basalt (DEMO_CONTROL_PLANES, DEMO_WORKERS)
	KUBE_VERSION=$(KUBE_VERSION) go run ./hack/demo up

.PHONY: demo-down
demo-down: ## Remove everything make demo created
	go run ./hack/demo down

$(CONTROLLER_GEN):
	mkdir -p $(dir $@) && GOBIN=$(dir $@) go install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION) && mv $(dir $@)/controller-gen $@

$(GOLANGCI_LINT):
	mkdir -p $(dir $@) && GOBIN=$(dir $@) go install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) && mv $(dir $@)/golangci-lint $@
