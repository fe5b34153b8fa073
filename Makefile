# splicefleet: make help lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

# The Go release the project builds with. These machines start on an
# older Go and ignore go.mod's toolchain line, so the Makefile names it;
# the go command fetches it through the module proxy once per machine.
export GOTOOLCHAIN := go1.27.3
GO       ?= go
GOBIN    ?= $(shell $(GO) env GOPATH)/bin
# Tools the checks run, built with the project's Go release (a linter
# built with an older Go refuses a module that names a newer one).
TOOLS    := $(CURDIR)/.cache/tools/$(GOTOOLCHAIN)
VERSION  ?= $(shell git describe --tags --dirty 2>/dev/null || echo 0.1.0-dev)
COMMIT   ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE     ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
LDFLAGS  := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT) -X main.date=$(DATE)

GOLANGCI_LINT_VERSION := v2.15.0
GOVULNCHECK_VERSION   := v1.9.0
# The Go vulnerability database, as the golang.org/x/vulndb module
# carries it (its OSV entries), indexed by scripts/vulnindex.
VULNDB_VERSION        := v0.0.0-20261105234957-e22db6528018
# The package version: the tag without its v (a pre-release's hyphen as
# ~, so that 1.0.0~rc1 sorts below 1.0.0), commits after a tag as
# 1.0.0+git5.b043543 (above 1.0.0), or, before any tag, one that sorts by
# commit time below 0.1.0 (0.1.0~git202611271342.b043543).
DEB_VERSION ?= $(or $(shell git describe --tags 2>/dev/null | sed 's/^v//; s/-\([0-9]*\)-g\([0-9a-f]*\)$$/+git\1.\2/; s/-/~/g'),0.1.0~git$(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d%H%M 2>/dev/null).$(COMMIT))
DEB_ARCH    ?= $(shell $(GO) env GOARCH)
# The package's Maintainer field and its changelog's signer: the author
# of the last commit unless given (make deb DEB_MAINTAINER='NAME <EMAIL>').
DEB_MAINTAINER ?= $(shell git log -1 --format='%an <%ae>' 2>/dev/null)
# The years of the history, for the copyright file: 2026, or 2026-2028.
COPYRIGHT_YEARS ?= $(shell git log --format=%cd --date=format:%Y 2>/dev/null | sort -u | awk 'NR == 1 {f = $$0} {l = $$0} END {print (f == l ? f : f "-" l)}')
# shq quotes a value for the shell.
shq = '$(subst ','\'',$(1))'
BENCHSTAT_VERSION     := v0.0.0-20260908200009-22c9c6c9d4da
# A count, not a duration: go1.26's fuzz coordinator can fail a run with a
# spurious "context deadline exceeded" when a duration runs out (Go issue
# 75804, fixed in go1.27); a count has no deadline to race. Longer local
# runs may still pass a duration: make fuzz FUZZTIME=5m.
FUZZTIME ?= 20000x
# Fuzz targets as package:Target.
FUZZ_TARGETS := ./splice:FuzzDecode ./splice:FuzzParseManifest ./kmod:FuzzReadModInfo ./gossip:FuzzDecodeAnnouncement \
	./rollout:FuzzDecodePlan ./rollout:FuzzDecodeCommand ./rollout:FuzzDecodeRekey ./rollout:FuzzDecodeDocument ./rollout:FuzzDecodeReport \
	./rollout:FuzzDecodeDocAnnouncement ./rollout:FuzzDecodeReports ./splice:FuzzDecodeHead ./ksrc:FuzzUnifiedDiff \
	./objdiff:FuzzCompare ./klpgen:FuzzFinalize ./internal/jsonkeys:FuzzCheck ./internal/safetext:FuzzString \
	./internal/elf64:FuzzOpen
# How long make fuzz-soak runs each target.
FUZZSOAK ?= 60s

.PHONY: help
help: ## list the targets (coloured on a terminal only)
	@if [ -t 1 ]; then on='\033[36m'; off='\033[0m'; else on=; off=; fi; \
	awk -v on="$$on" -v off="$$off" 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {n++; t[n] = $$1; d[n] = $$2; if (length($$1) > w) w = length($$1)} \
		END {for (i = 1; i <= n; i++) printf "  %s%-*s%s  %s\n", on, w, t[i], off, d[i]}' $(MAKEFILE_LIST)

.PHONY: build
build: ## build bin/splicefleet (static, with version information)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/splicefleet ./cmd/splicefleet

.PHONY: check
check: ## fast unit tests for the edit loop (no QEMU lab, no kernel header downloads)
	$(GO) test -short ./...

.PHONY: test-deps
test-deps: ## install what the tests need (gnupg, a C compiler for -race, QEMU, prometheus and promtool, kernel build tools, lintian)
	@scripts/test-deps.sh

.PHONY: test
# FLEET_TESTS run fifty agents in one process. Under the race detector on
# a two-core machine they starve their own gossip, so they run in a second
# pass without it; the race detector covers the same code in the smaller
# fleet tests. About 2.5 minutes on an idle machine, 19 beside two busy
# processes and other builds: they get 45.
FLEET_TESTS := ^TestFiftyAgentRollouts$$
# AGENT_CRASH_TESTS SIGKILL agent processes during rollouts, round after
# round (SPLICEFLEET_AGENT_CRASH_ROUNDS, 20 here, more in make soak); five
# race-instrumented agents per round would stretch each round's gossip and
# health windows, so they run in the second pass too.
AGENT_CRASH_TESTS := ^TestAgentCrashesDuringRollouts$$
# FAULT_TESTS run agents as processes in network namespaces (root) and
# time partitions, packet loss, and delay with loss (through a link
# emulator in the test process: TAP devices, /dev/net/tun), with the
# emulator's own test; they run beside FLEET_TESTS.
FAULT_TESTS := ^(TestPartitionDuringRollout|TestRolloutUnderPacketLoss|TestLinkEmulator|TestRolloutUnderLossAndDelay)$$

# PACKAGE_TESTS build the Debian package (a static build of the binary,
# nfpm) and install it with dpkg: CPU-heavy for a minute, so they run on
# their own rather than beside the fleet tests' timers.
PACKAGE_TESTS := ^TestDebianPackage$$

# CORPUS_TESTS run make corpus's pipeline on a small fixed sample of the
# public corpus, on one unit of it chosen for what it proves, and on
# three patches (cmd/corpus): the first run fetches
# about 600 MB and prepares a kernel tree, so they run on their own with
# a longer timeout.
CORPUS_TESTS := ^(TestCorpusSample|TestCorpusPatches|TestCorpusForkedPrototype|TestCorpusUnredirectable)$$

# RACE_TIMEOUT bounds each package of the race pass. go test's default of
# ten minutes per package is what an idle machine needs for agent and
# cmd/splicefleet with room to spare; beside other heavy work the same
# tests take two to three times as long, and their own waits stretch
# (testutil.Scale), so the package limit must stretch too.
RACE_TIMEOUT ?= 45m

test: test-deps ## run every test: unit, adversarial, GnuPG interop, crash, the QEMU lab, create --patch, a corpus sample, the Debian package, race detector, fleets, faults, short fuzzing
	$(GO) test -race -count=1 -timeout $(RACE_TIMEOUT) -skip '$(FLEET_TESTS)|$(AGENT_CRASH_TESTS)|$(FAULT_TESTS)|$(PACKAGE_TESTS)|$(CORPUS_TESTS)' ./...
	$(GO) test -count=1 -run '$(PACKAGE_TESTS)' ./cmd/splicefleet
	$(GO) test -count=1 -timeout 40m -run '$(CORPUS_TESTS)' ./cmd/corpus
	$(GO) test -count=1 -timeout 45m -run '$(FLEET_TESTS)' ./agent
	SPLICEFLEET_AGENT_CRASH_ROUNDS=20 $(GO) test -count=1 -timeout 30m -run '$(AGENT_CRASH_TESTS)' ./cmd/splicefleet
	$(GO) test -count=1 -timeout 20m -run '$(FAULT_TESTS)' ./cmd/splicefleet
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

.PHONY: deb
deb: build ## build dist/out/splicefleet_VERSION_ARCH.deb: binary, systemd units, default configuration, man pages, completions, docs, copyright, changelog
	rm -rf dist/out && mkdir -p dist/out/staging/doc/docs
	bin/splicefleet gendocs --man dist/out/staging/man --completions dist/out/staging/completions
	gzip -9n dist/out/staging/man/*.1 dist/out/staging/man/*.5
	$(GO) run ./scripts/debcopyright -binary bin/splicefleet -modcache "$$($(GO) env GOMODCACHE)" -goroot "$$($(GO) env GOROOT)" \
		-copyright $(call shq,$(COPYRIGHT_YEARS) splicefleet developers) >dist/out/staging/doc/copyright
	$(GO) run ./scripts/debchangelog -version $(call shq,$(DEB_VERSION)) -maintainer $(call shq,$(DEB_MAINTAINER)) >dist/out/staging/doc/changelog
	gzip -9n dist/out/staging/doc/changelog
	cp $$(grep -o 'docs/[A-Za-z0-9_-]*\.md' README.md | sort -u) dist/out/staging/doc/docs/
	DEB_VERSION=$(call shq,$(DEB_VERSION)) DEB_ARCH=$(call shq,$(DEB_ARCH)) DEB_MAINTAINER=$(call shq,$(DEB_MAINTAINER)) \
		$(GO) tool nfpm package --config dist/nfpm.yaml --packager deb --target dist/out/
	@ls dist/out/*.deb

.PHONY: lab
lab: ## boot real Debian kernels under QEMU with splicefleet inside (installs QEMU as root), print a summary
	$(GO) test ./lab -v -count=1 -timeout 20m

.PHONY: corpus
corpus: ## measure create --patch on Debian's own kernel update in the QEMU lab (CORPUS_SAMPLE=N; CORPUS_PATCHES=DIR CORPUS_ABI=6.1.0-NN CORPUS_VERSION=V for other patches); see docs/create-patch.md
	$(GO) run ./cmd/corpus

.PHONY: fuzz
fuzz: ## run every fuzz target for FUZZTIME each (default 20000 inputs)
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test $$pkg -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 1000x; \
	done

.PHONY: fuzz-soak
fuzz-soak: ## run every fuzz target for FUZZSOAK each (default 60s); findings land in testdata/fuzz
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZSOAK)

.PHONY: soak
soak: ## crash tests (500 SIGKILLs inside apply and undo, 100 rollouts with agents SIGKILLed), 3 partition cycles of 10 agents, packet loss, and delay with loss, on 12 agents; the host-report attacks and a halt outliving 30 rollouts, and the delivery-starvation attacks (1400 flooded documents, 30 trickled bundles), 3 times each
	SPLICEFLEET_CRASH_KILLS=500 $(GO) test ./cmd/splicefleet -run '^TestCrashAtRandomMoments$$' -count=1 -timeout 30m -v
	SPLICEFLEET_AGENT_CRASH_ROUNDS=100 $(GO) test ./cmd/splicefleet -run '$(AGENT_CRASH_TESTS)' -count=1 -timeout 60m -v
	SPLICEFLEET_PARTITION_HOSTS=5 SPLICEFLEET_PARTITION_CYCLES=3 SPLICEFLEET_LOSS_HOSTS=12 SPLICEFLEET_DELAY_HOSTS=12 \
		$(GO) test ./cmd/splicefleet -run '$(FAULT_TESTS)' -count=1 -v -timeout 30m
	SPLICEFLEET_DURABLE_LATER=30 SPLICEFLEET_DURABLE_EVENTS=5000 \
		$(GO) test ./agent -run '^(TestHaltIsDurable|TestAttackFailureAfterDone|TestAttackForgedHostReports|TestAttackReportFlood|TestSybilCanaryAfterPlan|TestRekeyReinstalledHost)$$' -count=3 -v -timeout 30m
	SPLICEFLEET_FLOOD_DOCS=1400 SPLICEFLEET_TRICKLE_BUNDLES=30 \
		$(GO) test ./agent -run '^(TestAttackDocumentFloodDuringRevoke|TestAttackBundleFetchTrickle|TestAttackHolderHeaderPoisoning|TestAttackAmplification)$$' -count=3 -v -timeout 30m

.PHONY: bench
bench: ## benchmarks with their baselines, 10 runs each, summarised by benchstat
	@command -v benchstat >/dev/null || $(GO) install golang.org/x/perf/cmd/benchstat@$(BENCHSTAT_VERSION)
	$(GO) test ./splice -run '^$$' -bench . -benchmem -count 10 | tee bench.out
	$(GO) test ./agent -run '^$$' -bench 'Scrape' -benchmem -count 10 | tee -a bench.out
	$(GO) test ./rollout -run '^$$' -bench 'Evaluate' -benchmem -count 10 | tee -a bench.out
	$(GO) test ./objdiff -run '^$$' -bench 'DiffLargeUnit' -benchmem -count 10 | tee -a bench.out
	$(GO) test ./ksrc -run '^$$' -bench 'MentionsPastes' -benchmem -count 10 | tee -a bench.out
	$(GO) test ./klpgen -run '^$$' -bench 'CorpusKernelSymbols' -benchmem -count 10 | tee -a bench.out
	PATH="$(GOBIN):$$PATH" benchstat bench.out

.PHONY: bench-fleet
bench-fleet: ## 50 agents on loopback: raw serf event vs publish-to-all-verified of 1 MiB, origin copies, idle RSS and CPU
	$(GO) test ./agent -run '^$$' -bench BenchmarkFleet50 -benchtime 5x -count 1
	$(GO) test ./cmd/splicefleet -run '^$$' -bench BenchmarkIdleAgent -benchtime 1x -count 1
	$(GO) test ./agent -run '^$$' -bench BenchmarkHalt100 -benchtime 7x -count 1 -timeout 30m

.PHONY: bench-scale
bench-scale: ## 500 agents in one process (SPLICEFLEET_SCALE_AGENTS): a staged rollout to all and a halt, time and memory
	$(GO) test ./agent -run '^$$' -bench BenchmarkScaleRollout -benchtime 1x -count 1 -timeout 60m -v

.PHONY: lint
lint: ## golangci-lint (gofmt, govet, staticcheck, errcheck, depguard rules)
	@test -x $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION) || { \
		GOBIN=$(TOOLS) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION) && \
		mv $(TOOLS)/golangci-lint $(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION); }
	$(TOOLS)/golangci-lint-$(GOLANGCI_LINT_VERSION) run ./...

.PHONY: vulncheck
VULNDB := $(CURDIR)/.cache/vulndb/$(VULNDB_VERSION)
vulncheck: ## govulncheck against an offline copy of the Go vulnerability database; fails on any finding the code reaches
	@test -x $(TOOLS)/govulncheck-$(GOVULNCHECK_VERSION) || { \
		GOBIN=$(TOOLS) $(GO) install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION) && \
		mv $(TOOLS)/govulncheck $(TOOLS)/govulncheck-$(GOVULNCHECK_VERSION); }
	@test -f $(VULNDB)/index/db.json || { \
		osv=$$(cd / && $(GO) mod download -json golang.org/x/vulndb@$(VULNDB_VERSION) | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p')/data/osv && \
		$(GO) run ./scripts/vulnindex -vulns "$$osv" -out $(VULNDB).tmp && mv $(VULNDB).tmp $(VULNDB); }
	@# The database is read: a program built with go1.26.8, whose
	@# html/template has known vulnerabilities, must be reported (exit 3).
	@cd scripts/vulnindex/testdata/oldgo && rc=0 && \
		GOTOOLCHAIN=go1.26.8 $(TOOLS)/govulncheck-$(GOVULNCHECK_VERSION) -db file://$(VULNDB) ./... >/dev/null || rc=$$?; \
		test $$rc -eq 3 || { echo "vulncheck: the offline database found nothing in a known-vulnerable program (exit $$rc)"; exit 1; }
	$(TOOLS)/govulncheck-$(GOVULNCHECK_VERSION) -db file://$(VULNDB) ./...
	@# The packager, a tool in go.mod, builds what ships: go.mod raises its
	@# go-git and go-billy above the versions nfpm asks for, to fixed ones.
	$(TOOLS)/govulncheck-$(GOVULNCHECK_VERSION) -db file://$(VULNDB) github.com/goreleaser/nfpm/v2/cmd/nfpm

.PHONY: tidy
tidy: ## fail when go.mod or go.sum would change
	$(GO) mod tidy -diff

# Flags for make demo, e.g. DEMO_FLAGS="--agents 40 --hold".
DEMO_FLAGS ?=

.PHONY: demo
demo: build ## 20 agents on simulated kernels: a staged canary rollout, then a bad patch halted and rolled back
	bin/splicefleet demo $(DEMO_FLAGS)

.PHONY: demo-host
demo-host: build ## one bundle from keys to apply/undo on a simulated kernel, with GnuPG and a three-agent fleet
	@scripts/demo.sh

.PHONY: clean
clean: ## remove build output
	rm -rf bin bench.out dist/out
