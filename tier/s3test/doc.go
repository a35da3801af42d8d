// Package s3test runs a real S3 server for tests and puts a fault-injecting
// proxy in front of it.
//
// The server is versitygw (Apache-2.0) serving a temporary directory over
// the S3 API: Start launches one per test, on a free 127.0.0.1 port, with
// random credentials and one bucket, and stops it when the test ends. When
// the binary is missing the test is skipped, or fails if
// DURASTREAM_REQUIRE_S3=1 (as in CI, see the Makefile's deps and unit
// targets). DURASTREAM_S3TEST_NICE=N runs it under nice -n N (benchmarks:
// on a machine it shares with the code under test, it then stands in for
// a remote service better).
//
// NewProxy forwards to such a server unchanged and can be told to answer
// 503, drop connections, hold requests or drop their Range header, per
// HTTP method.
//
// One versitygw behaviour to allow for: a create-only PUT (If-None-Match: *)
// of an existing key is refused with 412 before the body is read, and the
// connection is then reset, so with a body of about 1 MiB or more the
// client may see the reset (through the proxy, a 502) instead of the 412.
package s3test
