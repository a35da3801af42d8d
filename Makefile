# durastream — build, test and CI entry points.
#
#   make test         vet + unit tests (race) + conformance suite (sync, then memory)
#                     + interop suites with the official clients
#   make deploy-check deploy/run.sh: Varnish and nginx configurations, conformance
#                     and fan-out through each (installs varnish, nginx)
#   make interop      interop/ts (@durable-streams/client 0.2.7), interop/go
#                     (client-go v0.1.0), interop/durablefetch (durablefetch
#                     0.1.0) and interop/browser (headless Chromium) against a
#                     real durastream serve
#   make vet          go vet ./...
#   make unit         go test -race -count=1 ./...
#   make conformance  conformance/run.sh with --durability sync, then memory,
#                     then with access control on (CONFORMANCE_AUTH=anonymous,
#                     then token: every request through a token-adding proxy)
#   make build        ./durastream
#   make run          go run ./cmd/durastream $(ARGS)
#   make bench        engine benchmarks, one iteration each (BENCHTIME=1x)
#   make fuzz         every Fuzz* target in FUZZPKGS (./fuzz ./auth ./pathglob ./fetch)
#                     for FUZZTIME (30s) each
#   make bench-go     server handler benchmarks in ./bench (BENCHTIME, BENCH)
#   make bench-compare  durastream vs the Node reference server -> BENCHMARKS.md
#                       (scripts/bench-compare.sh; QUICK=1 for a smoke run)
#
# Needs Go and, for conformance, Node.js >= 20.19 with npm; Go modules and npm
# packages are fetched by the targets themselves.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := test
MAKEFLAGS += --no-print-directory

GO        ?= go
BENCHTIME ?= 1x
BENCH     ?= .
FUZZTIME  ?= 30s
FUZZPKGS  ?= ./fuzz ./auth ./pathglob ./fetch
ARGS      ?=

.PHONY: deploy-check test deps vet unit conformance conformance-sync conformance-memory interop interop-ts interop-go interop-durablefetch interop-browser \
        build run bench fuzz clean

test: deps vet unit conformance interop deploy-check

deps:
	$(GO) mod download
	@command -v versitygw >/dev/null 2>&1 || [[ -x "$$($(GO) env GOPATH)/bin/versitygw" ]] || { \
	  echo "installing versitygw"; $(GO) install github.com/versity/versitygw/cmd/versitygw@v1.8.0; }

vet: deps
	$(GO) vet ./...

# tier/s3test's real S3 server (versitygw, from deps) must be found: no skips.
unit: deps
	PATH="$$($(GO) env GOPATH)/bin:$$PATH" DURASTREAM_REQUIRE_S3=1 $(GO) test -race -count=1 ./...

# Runs both durability modes even if the first fails, then prints the totals
# and fails if either run failed.
conformance: deps
	@summary="$$(mktemp)"; trap 'rm -f "$$summary"' EXIT; rc=0; \
	for d in sync memory; do \
	  echo "=== conformance (durability=$$d) ==="; \
	  CONFORMANCE_SUMMARY_FILE="$$summary" bash conformance/run.sh "" "$$d" || { echo "conformance (durability=$$d) FAILED"; rc=1; }; \
	done; \
	for a in anonymous token; do \
	  echo "=== conformance (auth=$$a, durability=memory) ==="; \
	  CONFORMANCE_AUTH=$$a CONFORMANCE_SUMMARY_FILE="$$summary" bash conformance/run.sh "" memory || { echo "conformance (auth=$$a) FAILED"; rc=1; }; \
	done; \
	awk '{p+=$$1; f+=$$2; s+=$$3} END {printf "conformance-total: %d passed, %d failed, %d skipped\n", p, f, s}' "$$summary"; \
	exit $$rc

interop: interop-ts interop-go interop-durablefetch interop-browser

deploy-check: deps
	bash deploy/run.sh

interop-ts: deps
	bash interop/ts/run.sh sync

interop-go: deps
	bash interop/go/run.sh

interop-durablefetch: deps
	bash interop/durablefetch/run.sh sync

interop-browser: deps
	bash interop/browser/run.sh

conformance-sync: deps
	bash conformance/run.sh "" sync

conformance-memory: deps
	bash conformance/run.sh "" memory

build: deps
	$(GO) build -o durastream ./cmd/durastream

run:
	$(GO) run ./cmd/durastream $(ARGS)

bench: deps
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem ./engine/

fuzz: deps
	@for pkg in $(FUZZPKGS); do \
	  targets="$$($(GO) test -list 'Fuzz.*' $$pkg | grep -E '^Fuzz' || true)"; \
	  if [[ -z "$$targets" ]]; then echo "no fuzz targets in $$pkg"; exit 1; fi; \
	  for t in $$targets; do \
	    echo "=== fuzz $$pkg $$t ($(FUZZTIME)) ==="; \
	    $(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -f durastream conformance/results.json

.PHONY: bench-go bench-compare

bench-go: deps
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem ./bench/

bench-compare: deps
	bash scripts/bench-compare.sh
