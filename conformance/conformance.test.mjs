// Runs the Durable Streams server conformance suite
// (@durable-streams/server-conformance-tests) against a running server.
// The package's own CLI finds no test files under vitest 4, so the suite is
// registered here through its programmatic API instead.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CONFORMANCE_BASE_URL

if (!baseUrl) {
  throw new Error(
    "CONFORMANCE_BASE_URL is not set; run ./run.sh (which starts a server) " +
      "or set it to the server's base URL, e.g. http://127.0.0.1:4437",
  )
}

const longPoll = Number(process.env.CONFORMANCE_LONG_POLL_TIMEOUT_MS)

runConformanceTests({
  baseUrl: baseUrl.replace(/\/+$/, ""),
  // The reserved subscription APIs (PROTOCOL.md 6-7); run.sh starts the
  // server with --webhook-dev, as the suite's webhook receiver is on 127.0.0.1.
  subscriptions: process.env.CONFORMANCE_SUBSCRIPTIONS !== "0",
  ...(Number.isFinite(longPoll) && longPoll > 0 ? { longPollTimeoutMs: longPoll } : {}),
})
