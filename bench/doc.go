// Package bench is durastream's load generator: scenarios that drive any
// Durable Streams server over HTTP (durastream, the Node reference server, or
// the NullHandler ceiling), latency histograms (HDR), /proc sampling of the
// server's CPU and memory, a machine-limits probe, and the BENCHMARKS.md
// report of an A/B comparison.
//
// The generator shares the machine with the server, so it is kept cheap:
// one http.Transport with an idle pool at least as large as the concurrency,
// request templates copied per request (headers and bodies are never rebuilt),
// response bodies drained into reused buffers, per-worker histograms merged
// at the end, no compression. Long-poll subscribers, whose requests are the
// most numerous, skip net/http for a bare HTTP/1.1 connection (wire.go).
// Its own ceiling is what the same scenario does
// against NullHandler (same net/http stack, nothing stored); its CPU use is
// reported with every result (client_cpu_s).
//
// Every loop is bounded by time (Config.Duration plus a grace period) and by
// count (Config.MaxOps), and every request has a timeout.
package bench
