import { defineConfig } from "vitest/config"

// Conformance suite for the durastream server. Run through run.sh, which
// starts a server and sets CONFORMANCE_BASE_URL; or directly with
//   CONFORMANCE_BASE_URL=http://127.0.0.1:4437 npx vitest run
export default defineConfig({
  test: {
    include: ["conformance.test.mjs"],
    // The suite's own long-running tests set explicit timeouts; this bounds
    // the rest so a hung server cannot stall CI for long.
    testTimeout: 10_000,
    hookTimeout: 10_000,
    passWithNoTests: false,
    watch: false,
  },
})
