# scep-operator Makefile (kubebuilder layout).
#
# `make test` is what CI runs (.ci/run) and what README.md tells a user to
# run. It builds the real test peers it needs into bin/ once (kube-apiserver,
# etcd, kubectl and kubelet from the Go module proxy; step-ca), installs
# containerd and runc from Debian when root and missing, then runs every test.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

BIN ?= $(CURDIR)/bin
GO ?= go
export GOFLAGS ?= -buildvcs=false

CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0

CONTROLLER_GEN ?= $(BIN)/controller-gen
GOLANGCI_LINT ?= $(BIN)/golangci-lint

# Test knobs.
TEST_TIMEOUT ?= 25m
TEST_FLAGS ?=
FUZZTIME ?= 30s
# FUZZPARALLEL, when set, is passed as -parallel (fuzzing workers; Go's
# default is GOMAXPROCS). On a shared machine: nice -n 19 make fuzz FUZZPARALLEL=1.
FUZZPARALLEL ?=
BENCHTIME ?= 2s
# Certificates per issuer in `make bench`'s throughput run, and flags for it
# (e.g. BENCH_FLAGS='-issuers ca,passthrough -pprof-dir /tmp/pprof').
BENCH_N ?= 500
BENCH_FLAGS ?=
BURST_N ?= 1000
SCALE_N ?= 10000

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  %-18s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) } ' $(MAKEFILE_LIST)

##@ Development

.PHONY: fmt
fmt: ## Run gofmt -w on the tree.
	gofmt -w $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')

.PHONY: fmt-check
fmt-check: ## Fail when a Go file is not gofmt-clean.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './bin/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (built into bin/ on first use).
	$(GOLANGCI_LINT) run --build-tags soak ./...

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods for the API types.
	@if [ -d api ] && ls api/*/*.go >/dev/null 2>&1; then \
		$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."; \
	else echo "no API types yet"; fi

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC into config/.
	@if [ -d api ] && ls api/*/*.go >/dev/null 2>&1; then \
		$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./api/..." paths="./controllers/..." paths="./internal/..." paths="./cmd/..." output:crd:artifacts:config=config/crd/bases; \
		hack/sync-chart-crds.sh; \
	else echo "no API types yet"; fi

##@ Test

.PHONY: test
test: fmt-check vet test-deps ## Run every test (envtest, interop with MicroMDM and step-ca, fuzz seeds).
	KUBEBUILDER_ASSETS=$(BIN) STEPCA_BIN=$(BIN)/step-ca HELM_BIN=$(BIN)/helm PROMTOOL_BIN=$(BIN)/promtool \
		$(GO) test ./... -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS)

.PHONY: test-image
test-image: ## Build the image twice and check it (reproducible digests, static binaries, SBOM, containerd import): about 20 CPU-minutes cold.
	SCEP_IMAGE_TESTS=1 $(GO) test ./internal/imagebuild/ -count=1 -timeout 40m -v -run . $(TEST_FLAGS)

.PHONY: test-deps
test-deps: envtest kubelet cluster-binaries node-deps step-ca helm promtool ## Build the real peers the tests run (cached in bin/); install containerd and runc.
	hack/scep-clients.sh
	hack/krb5.sh

# `make flake-hunt`: FLAKE_N runs of the tests (FLAKE_PKGS, default all),
# FLAKE_HOG=1 with every core kept busy; prints each failing test.
FLAKE_N ?= 20
FLAKE_PKGS ?= ./...
FLAKE_HOG ?=

.PHONY: flake-hunt
flake-hunt: test-deps ## Run the tests FLAKE_N (20) times, FLAKE_HOG=1 beside a CPU hog, and list every failing test (hack/flake-hunt.sh).
	hack/flake-hunt.sh -n $(FLAKE_N) -p '$(FLAKE_PKGS)' $(if $(FLAKE_HOG),-hog)

# `make soak`: the chaos soak (test/soak, build tag soak), SOAK_DURATION
# long, SOAK_SEED to repeat a run's faults, SOAK_ARGS for more of its flags.
SOAK_DURATION ?= 30m
SOAK_SEED ?= 0
SOAK_ARGS ?=

.PHONY: soak
soak: envtest step-ca helm ## The chaos soak: load plus random kills, API server and etcd restarts and server faults for SOAK_DURATION (30m); accounts for every certificate (test/soak).
	KUBEBUILDER_ASSETS=$(BIN) STEPCA_BIN=$(BIN)/step-ca HELM_BIN=$(BIN)/helm \
		$(GO) test -tags soak ./test/soak/ -run TestSoak -count=1 -v -timeout 3h -args -soak.duration=$(SOAK_DURATION) -soak.seed=$(SOAK_SEED) $(SOAK_ARGS)

# The leak check: only faults that leave the leader running, and a bounded
# number of Certificates, so the leader lives the whole run and its memory
# can only grow by leaking.
.PHONY: soak-leak
soak-leak: ## The soak as a leak check: one leader lives SOAK_DURATION under server faults and kills of the standby, with at most 150 Certificates; reports its RSS and goroutine slopes.
	$(MAKE) soak SOAK_ARGS='-soak.faults=kill-standby,server-down,server-chaos,server-restart -soak.population=150 $(SOAK_ARGS)'

.PHONY: test-upgrade
test-upgrade: envtest helm ## Replace the operator while a request is PENDING, by the build before the last transaction format change and back (test/upgrade; part of make test).
	KUBEBUILDER_ASSETS=$(BIN) HELM_BIN=$(BIN)/helm $(GO) test ./test/upgrade/ -count=1 -v -timeout 10m

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s; FUZZPARALLEL=n caps the workers).
	@failed=; for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f (FUZZTIME=$(FUZZTIME) FUZZPARALLEL=$(FUZZPARALLEL))"; \
			$(GO) test $$pkg -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 10s $(if $(FUZZPARALLEL),-parallel $(FUZZPARALLEL)) \
				|| failed="$$failed $$pkg.$$f"; \
		done; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed (inputs in the packages' testdata/fuzz/)"; exit 1; fi

.PHONY: bench
bench: envtest ## Run the Go benchmarks, then issuance throughput against cert-manager's CA issuer (BENCH_N=500; docs/performance.md).
	$(GO) test ./internal/... ./test/... -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME)
	KUBEBUILDER_ASSETS=$(BIN) $(GO) run ./hack/bench/throughput -n $(BENCH_N) $(BENCH_FLAGS)

.PHONY: bench-scale
bench-scale: envtest ## BENCH_N (500) Certificates, then SCALE_N (10,000) more, through the ceiling and through one Passthrough profile: rates, CPU and RSS, every certificate accounted at the server (docs/performance.md; about 2 hours here).
	KUBEBUILDER_ASSETS=$(BIN) $(GO) run ./hack/bench/throughput -n $(BENCH_N) -issuers ceiling,passthrough -scale $(SCALE_N) $(BENCH_FLAGS)

.PHONY: bench-burst
bench-burst: envtest ## A burst of BURST_N (1,000) CertificateRequests to one profile with maxConcurrentRequests (docs/performance.md).
	KUBEBUILDER_ASSETS=$(BIN) $(GO) run ./hack/bench/throughput -burst -burst-n $(BURST_N) $(BENCH_FLAGS)

##@ Demo

DEMO_FLAGS ?=

.PHONY: demo
demo: envtest kubelet cluster-binaries node-deps helm ## Install the operator as a user does on a single-node cluster here (image built here, helm install) and issue a real certificate a Pod mounts (DEMO_FLAGS=-keep keeps it running).
	KUBEBUILDER_ASSETS=$(BIN) HELM_BIN=$(BIN)/helm $(GO) run ./hack/demo $(DEMO_FLAGS)

.PHONY: bench-memory
bench-memory: envtest ## Operator memory with 10,000 CertificateRequests for another issuer (docs/performance.md).
	KUBEBUILDER_ASSETS=$(BIN) $(GO) run ./hack/bench/memory -n 10000

##@ Build

.PHONY: build
build: ## Build the manager and scepctl into bin/.
	@mkdir -p $(BIN)
	@for c in $$(ls cmd); do \
		if ls cmd/$$c/*.go >/dev/null 2>&1; then $(GO) build -trimpath -o $(BIN)/$$c ./cmd/$$c; fi; \
	done

# Flags for `make run`, e.g. RUN_FLAGS='--kubeconfig=/path --cluster-resource-namespace=scep-operator'.
RUN_FLAGS ?=

.PHONY: run
run: ## Run the manager on this machine against the current kubeconfig (KUBECONFIG, else ~/.kube/config; RUN_FLAGS='--kubeconfig=FILE ...').
	$(GO) run ./cmd/manager $(RUN_FLAGS)

##@ Image

# `make image` needs no container engine: hack/image cross-compiles the
# binaries and writes the image with go-containerregistry (internal/imagebuild).
# Unset, VERSION is the chart's appVersion (so the chart's default tag finds
# the image), REVISION the checked-out commit, and every time in the image the
# commit's (or SOURCE_DATE_EPOCH): two builds of one commit have one digest.
IMAGE_DIR ?= dist/image
IMAGE_REPOSITORY ?= ghcr.io/scep-operator/scep-operator
IMAGE_PLATFORMS ?= linux/amd64,linux/arm64
VERSION ?=
REVISION ?=
IMAGE_FLAGS = -out $(IMAGE_DIR) -repository $(IMAGE_REPOSITORY) -platforms $(IMAGE_PLATFORMS) \
	$(if $(VERSION),-version $(VERSION)) $(if $(REVISION),-revision $(REVISION))

.PHONY: image
image: ## Build the image without Docker: an OCI index for IMAGE_PLATFORMS in dist/image/oci, dist/image/scep-operator.tar (docker load, ctr images import, kind load image-archive) and CycloneDX SBOMs.
	$(GO) run ./hack/image $(IMAGE_FLAGS)

IMG ?= $(IMAGE_REPOSITORY):latest

.PHONY: docker-build
docker-build: ## Build the same image from the Dockerfile (needs a Docker engine with BuildKit).
	docker build $$($(GO) run ./hack/image build-args $(IMAGE_FLAGS)) -t $(IMG) .

##@ Tools (built into bin/, once)

.PHONY: envtest
envtest: ## Build kube-apiserver, etcd and kubectl from the Go module proxy.
	hack/envtest-binaries.sh $(BIN)

.PHONY: kubelet
kubelet: ## Build kubelet (same pinned release as kube-apiserver) for the node end-to-end test.
	hack/envtest-binaries.sh $(BIN) kubelet

.PHONY: cluster-binaries
cluster-binaries: ## Build kube-controller-manager, kube-scheduler and kube-proxy (same pinned release) for the single-node cluster.
	hack/envtest-binaries.sh $(BIN) kube-controller-manager kube-scheduler kube-proxy

.PHONY: node-deps
node-deps: ## Install containerd, runc, the CNI plugins and nftables from Debian when missing (root only; otherwise says why it skipped).
	hack/node-deps.sh

.PHONY: step-ca
step-ca: ## Build step-ca (a real SCEP server) from the Go module proxy.
	hack/step-ca.sh $(BIN)

.PHONY: helm
helm: ## Build helm (pinned by hack/tools/helm) into bin/.
	hack/helm.sh $(BIN)

.PHONY: promtool
promtool: ## Build promtool (pinned by hack/tools/promtool) into bin/.
	hack/promtool.sh $(BIN)

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)
$(GOLANGCI_LINT):
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

.PHONY: clean
clean: ## Remove built binaries (keeps the cached envtest and step-ca builds unless CLEAN_TOOLS=1).
	rm -f $(BIN)/manager $(BIN)/scepctl
	@if [ "$(CLEAN_TOOLS)" = 1 ]; then rm -rf $(BIN); fi
