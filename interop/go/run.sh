#!/usr/bin/env bash
# Interop tests: the official Go client (client-go v0.1.0) against a real
# `durastream serve` (built from this repository by TestMain).
#
#   interop/go/run.sh                         # sync durability (default)
#   DURASTREAM_DURABILITY=memory interop/go/run.sh
#   interop/go/run.sh -run TestSSE -v         # extra args go to `go test`
#
# INTEROP_TIMEOUT (default 4m) bounds `go test`; the whole script gets one
# more minute (module download, build) before it is killed.
set -euo pipefail
cd "$(dirname "$0")"
t="${INTEROP_TIMEOUT:-4m}"
timeout 2m go mod download
exec timeout --kill-after=10s 5m go test -count=1 -race -timeout "$t" "$@" ./...
