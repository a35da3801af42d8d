#!/usr/bin/env bash
# Browser test: the durablefetch demo (examples/fetchdemo) in a real
# headless Chromium, driven with github.com/chromedp/chromedp (pinned in
# this module's go.mod), against a real `durastream serve` that TestMain
# builds from this repository: a chat answer streams through the
# durablefetch API, the tab is closed mid-answer and the page reopened,
# and the whole answer must be there, still streaming, the upstream called
# once.
#
#   interop/browser/run.sh              # extra args go to `go test`, e.g. -v
#
# Needs Chromium: /usr/bin/chromium (Debian package `chromium`), or
# $CHROMIUM. When it is missing and this runs as root with apt-get, it is
# installed first (apt-get install -y chromium); otherwise the test skips
# and says why, except in CI (CI or DURASTREAM_REQUIRE_BROWSER=1 set), where
# a missing browser fails it.
#
# INTEROP_TIMEOUT (default 3m) bounds `go test` (the builds in TestMain
# included; the test itself gives up after 50s); the whole script gets two
# more minutes (module download, Chromium install) before it is killed.
set -euo pipefail
cd "$(dirname "$0")"

if [[ -z "${CHROMIUM:-}" && ! -x /usr/bin/chromium ]] && [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
  echo "interop/browser: /usr/bin/chromium missing; apt-get install -y chromium" >&2
  { timeout 5m apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 10m apt-get install -y -qq chromium; } >/dev/null ||
    echo "interop/browser: installing chromium failed; the test will skip (fail in CI)" >&2
fi

t="${INTEROP_TIMEOUT:-3m}"
timeout 2m go mod download
exec timeout --kill-after=10s 5m go test -count=1 -timeout "$t" "$@" ./...
