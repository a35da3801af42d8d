// Command durastream is the Durable Streams server.
//
//	durastream [serve] [flags]        run the server (the default)
//	durastream token [flags]          mint an HS256 access token
//	durastream sign-url [flags]       the query of a pre-signed read URL
//	durastream bench [flags]          the load generator, against any server URL
//	durastream null-server [flags]    the HTTP stack acknowledging without storing
//	durastream version                print the version
//	durastream help                   usage
//
// Every flag can also be set with an environment variable: DURASTREAM_ and
// the flag name in upper case with dashes as underscores, e.g.
// DURASTREAM_DATA_DIR=/var/lib/durastream. Flags win over the environment.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/durastream/durastream/auth"
	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/fetch"
	"github.com/durastream/durastream/gctune"
	"github.com/durastream/durastream/server"
	"github.com/durastream/durastream/subs"
)

var version = "dev"

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	var err error
	switch cmd {
	case "serve":
		err = serve(args)
	case "bench":
		err = benchCmd(args)
	case "null-server":
		err = nullServerCmd(args)
	case "token":
		err = tokenCmd(args)
	case "sign-url":
		err = signURLCmd(args)
	case "version":
		fmt.Println("durastream", version)
	case "help":
		fmt.Println("usage: durastream [serve] [flags]  (durastream serve -h lists the flags)\n" +
			"       durastream token --grant OPS:PATTERN ...   an HS256 token (secret from $DURASTREAM_AUTH_HMAC_SECRET)\n" +
			"       durastream sign-url --path STREAM          a signed read URL's query\n" +
			"       durastream bench -url URL [flags]          the load generator, against any server\n" +
			"       durastream null-server [flags]             an HTTP stack that acknowledges without storing\n" +
			"       durastream version                         print the version")
	default:
		err = fmt.Errorf("unknown command %q (want serve, token, sign-url, bench, null-server, version or help)", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "durastream:", err)
		os.Exit(1)
	}
}

// serveFlags holds the serve command's settings.
type serveFlags struct {
	addr, dataDir, durability, prefix, tlsCert, tlsKey, logFormat, logLevel, pprofAddr string
	longPoll, sseMax, shutdownTimeout                                                  time.Duration
	maxAppend, maxRead, liveChunk                                                      int64

	// Limits (see limits.go in package server and newHTTPServer).
	readHeaderTimeout, idleTimeout                          time.Duration
	maxHeaderBytes, maxPathBytes, maxLiveReaders, rateBurst int
	rateLimit                                               float64
	trustForwardedFor                                       bool

	bodyReadTimeout time.Duration // server.Config.BodyReadTimeout; 0: none

	bufferedLarge bool // engine.Options.BufferedLargeAppends
	ckptInterval  time.Duration
	ckptBytes     int64

	// Go runtime memory settings.
	gcPercent            int
	memoryLimit, gcFloor string
	memLimit, gcFloorN   int64 // memoryLimit and gcFloor parsed; gcFloorN 0: none; memLimit 0: the default, -1: none

	inflightBody  string // server.Config.MaxInflightBodyBytes
	inflightBodyN int64  // parsed; 0: the default, -1: no cap

	// Durable fetch (package fetch). proxyAllow is the upstream allowlist
	// of both front doors.
	proxySecret, proxyBaseURL string
	proxyAllow                patternList
	proxyURLTTL               time.Duration

	// The durablefetch front door (server.DurableFetch) and the limits of
	// the fetch manager both front doors share.
	fetchAddr                string
	fetchTTL                 time.Duration
	fetchMaxResponse         int64
	fetchMaxConcurrent       int
	fetchTrustForwardedProto bool

	auth authFlags
	tier tierFlags

	noSubscriptions, webhookDev bool
	catchupMaxAge               time.Duration
}

// patternList is a repeatable flag: each use (or each comma- or
// space-separated item of one value, as in an environment variable) adds
// a pattern. A comma inside a pattern is written %2C.
type patternList []string

func (l *patternList) String() string { return strings.Join(*l, ",") }

func (l *patternList) Set(v string) error {
	for _, p := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		*l = append(*l, p)
	}
	return nil
}

func parseServeFlags(args []string) (*serveFlags, error) {
	f := &serveFlags{}
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.StringVar(&f.addr, "addr", "localhost:4437", "listen address (host:port)")
	fs.StringVar(&f.dataDir, "data-dir", "./data", "data directory (sync durability)")
	fs.StringVar(&f.durability, "durability", "sync", "sync (ack after fsync) or memory (nothing persists)")
	fs.DurationVar(&f.longPoll, "long-poll-timeout", 30*time.Second, "how long a long-poll read waits for data")
	fs.DurationVar(&f.sseMax, "sse-max-duration", 60*time.Second, "how long an SSE connection stays open")
	fs.Int64Var(&f.maxAppend, "max-append-bytes", 64<<20, "largest append body in bytes (larger: 413)")
	fs.Int64Var(&f.maxRead, "max-read-bytes", 0, "most data bytes in one catch-up response, readers then page (0: no cap, the whole range up to the tail)")
	fs.Int64Var(&f.liveChunk, "live-chunk-bytes", 1<<20, "most data bytes in one long-poll response or SSE data event")
	fs.StringVar(&f.prefix, "stream-prefix", "/v1/stream/", "URL path prefix of streams")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate file (enables HTTPS and HTTP/2)")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS key file")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "serve net/http/pprof on this address (off when empty; it has no access control: a non-loopback address needs --allow-remote-pprof)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Second, "how long graceful shutdown waits for requests")
	fs.IntVar(&f.gcPercent, "gc-percent", 50, "Go GC target: heap growth between collections, in percent (GOGC); lower trades CPU for memory")
	fs.StringVar(&f.gcFloor, "gc-min-heap", "64MiB", "the GC lets the heap reach this size before collecting, whatever --gc-percent says; 0: no floor")
	fs.StringVar(&f.memoryLimit, "memory-limit", "", "soft memory limit for the Go runtime, e.g. 900MiB; empty: GOMEMLIMIT if set, else 3/4 of the cgroup memory limit or of MemTotal, whichever is less; 0: none")
	fs.StringVar(&f.inflightBody, "max-inflight-body-bytes", "", "most memory all request bodies in flight may hold together (read, inflated, validated); more: 503. Empty: 256MiB or a quarter of the memory limit, whichever is less, but at least one largest compressed body; -1: no cap")
	fs.DurationVar(&f.readHeaderTimeout, "read-header-timeout", 10*time.Second, "time a client has to send request headers (slowloris); 0: none")
	fs.DurationVar(&f.bodyReadTimeout, "body-read-timeout", 30*time.Second, "time a client has to send a request body, plus 1s per 8 KiB received (slower: 408); 0: none")
	fs.DurationVar(&f.idleTimeout, "idle-timeout", 120*time.Second, "idle keep-alive connections are closed after this; 0: none")
	fs.IntVar(&f.maxHeaderBytes, "max-header-bytes", 64<<10, "largest request line + headers in bytes (larger: 431)")
	fs.IntVar(&f.maxPathBytes, "max-path-bytes", 1024, "longest stream path in bytes, unescaped (longer: 414)")
	fs.IntVar(&f.maxLiveReaders, "max-live-readers", 10000, "most concurrent long-poll + SSE reads (more: 503); negative: no cap")
	fs.Float64Var(&f.rateLimit, "rate-limit", 0, "requests per second per client IP (more: 429); 0: off")
	fs.IntVar(&f.rateBurst, "rate-burst", 0, "rate limiter bucket size per client; 0: one second's worth")
	fs.BoolVar(&f.trustForwardedFor, "trust-forwarded-for", false, "rate-limit by the last X-Forwarded-For address (behind a trusted proxy)")
	fs.DurationVar(&f.ckptInterval, "checkpoint-interval", 30*time.Second, "how often stream files are synced and the commit log behind them dropped (recovery replays at most this much)")
	fs.Int64Var(&f.ckptBytes, "checkpoint-bytes", 256<<20, "checkpoint early once the commit log has grown this many bytes since the last one")
	fs.StringVar(&f.proxySecret, "proxy-secret", "", "turn on the Durable Streams proxy protocol under /v1/proxy: the service secret (?secret= or Authorization: Bearer), also the root of the pre-signed URL signing key; at least 16 bytes")
	fs.Var(&f.proxyAllow, "proxy-allow", "upstream URL pattern durable fetches may reach, e.g. https://api.openai.com/v1/** (repeatable, or comma-separated; none: every upstream is refused)")
	fs.DurationVar(&f.proxyURLTTL, "proxy-url-ttl", 24*time.Hour, "how long a proxy stream's pre-signed URL is valid")
	fs.StringVar(&f.fetchAddr, "fetch-addr", "", "serve the durablefetch API (for the durablefetch npm client's durablefetchHost) at the root of this listener, with --tls-cert/--tls-key as the main one; off when empty")
	fs.DurationVar(&f.fetchTTL, "fetch-ttl", 6*time.Hour, "how long a stored upstream response is kept since its last use (sliding; at least 20m, twice the upstream idle timeout: a silent upstream renews nothing)")
	fs.Int64Var(&f.fetchMaxResponse, "fetch-max-response-bytes", 100_000_000, "largest stored upstream response body; a longer one is cut (outcome too-large)")
	fs.IntVar(&f.fetchMaxConcurrent, "fetch-max-concurrent", 256, "most upstream fetches running at once (more: 503)")
	fs.BoolVar(&f.fetchTrustForwardedProto, "fetch-trust-forwarded-proto", false, "durablefetch API: take the upstream scheme from X-Forwarded-Proto (only behind a TLS-terminating proxy that sets it)")
	fs.StringVar(&f.proxyBaseURL, "proxy-base-url", "", "public URL of /v1/proxy for Location headers behind a reverse proxy, e.g. https://api.example.com/v1/proxy (default: from the request)")
	f.auth.register(fs)
	f.tier.register(fs)
	fs.DurationVar(&f.catchupMaxAge, "catchup-max-age", 0, "how long a shared cache may serve a catch-up read without asking again; 0: no-cache (caches revalidate every use: never stale, never a deleted stream's bytes); 60s is the protocol's CDN suggestion for streams whose paths are never reused")
	fs.BoolVar(&f.noSubscriptions, "no-subscriptions", false, "turn the subscription APIs (__ds/subscriptions: webhooks, pull-wake) off")
	fs.BoolVar(&f.webhookDev, "webhook-dev", false, "development: allow http://localhost and http://127.0.0.x webhook URLs (otherwise https to public addresses only)")
	fs.BoolVar(&f.bufferedLarge, "buffered-large-appends", false, "write large appends through the page cache, not O_DIRECT (live readers of big appends read memory, at more CPU per byte)")
	// The environment supplies defaults; explicit flags override them.
	var envErr error
	fs.VisitAll(func(fl *flag.Flag) {
		key := "DURASTREAM_" + strings.ToUpper(strings.ReplaceAll(fl.Name, "-", "_"))
		if v, ok := os.LookupEnv(key); ok {
			if err := fl.Value.Set(v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", key, v, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	if err := parseArgs(fs, args); err != nil {
		return nil, err
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		return nil, errors.New("--tls-cert and --tls-key go together")
	}
	if err := f.checkLimits(); err != nil {
		return nil, err
	}
	return f, nil
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	o := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, o)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}

// parseArgs parses a subcommand's flags and refuses positional arguments;
// -h comes back as flag.ErrHelp, after the usage is printed.
func parseArgs(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	return nil
}

// quitOnHelp makes -h a success: the usage is all that was asked for.
func quitOnHelp(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func serve(args []string) error {
	f, err := parseServeFlags(args)
	if err != nil {
		return quitOnHelp(err)
	}
	log, err := newLogger(f.logFormat, f.logLevel)
	if err != nil {
		return err
	}
	// Most of a large server's heap is per-stream state that lives as long
	// as the stream, so the default GC target is 50%, not Go's 100%
	// (measured at 150k streams: 1,148 -> 911 B of anonymous RSS each). A
	// small heap may still grow to --gc-min-heap between collections rather
	// than be collected every few MB of request garbage (A/B: 1,000 long-poll
	// subscribers' p99 16-22% lower, appends 7-11% less CPU each).
	defer gctune.Start(f.gcPercent, f.gcFloorN).Stop()
	memLimit, limitFrom := setMemoryLimit(f.memLimit)
	bodyBudget := f.inflightBodyN
	if bodyBudget == 0 {
		bodyBudget = 256 << 20
		if memLimit > 0 {
			bodyBudget = min(bodyBudget, memLimit/4)
		}
		bodyBudget = max(bodyBudget, server.MinInflightBodyBytes(f.maxAppend))
	}
	log.Info("memory", "go_memory_limit", memLimit, "limit_from", limitFrom, "max_inflight_body_bytes", bodyBudget)
	authCfg, err := f.auth.config(log)
	if err != nil {
		return err
	}
	if err := f.checkExposure(authCfg); err != nil {
		return err
	}
	authn, err := auth.New(authCfg)
	if err != nil {
		return err
	}
	defer authn.Close()
	if authCfg.Enabled() {
		log.Info("access control on", "hmac", len(authCfg.HMACSecret) > 0, "jwks", authCfg.JWKSURL+authCfg.JWKSFile,
			"anonymous", []string(f.auth.anonymous), "signed_urls", authn.SignedURLs(), "ops_addr", f.auth.opsAddr)
	} else {
		log.Warn("access control off: every caller may create, append to and delete every stream")
	}
	engOpts := &engine.Options{Durability: engine.Durability(f.durability), Logger: log,
		MaxPathLen: f.maxPathBytes, BufferedLargeAppends: f.bufferedLarge,
		CheckpointInterval: f.ckptInterval, CheckpointBytes: f.ckptBytes}
	tiering, err := f.tier.newTier(f.durability, f.dataDir, engOpts, log)
	if err != nil {
		return err
	}
	eng, err := engine.Open(f.dataDir, engOpts)
	if err != nil {
		return err
	}
	if err := f.tier.start(tiering, eng, log); err != nil {
		eng.Close()
		return err
	}
	// The upstream-fetch manager, shared by the durable fetch front doors.
	var fetches *fetch.Manager
	if f.proxySecret != "" || f.fetchAddr != "" {
		if fetches, err = newFetchManager(eng, f, log); err != nil {
			eng.Close()
			return err
		}
	}
	// Subscriptions (webhooks, pull-wake) over the same engine.
	var subscriptions *subs.Manager
	if !f.noSubscriptions {
		keyFile := ""
		if f.durability == "sync" {
			keyFile = filepath.Join(f.dataDir, "webhook-signing.key")
		}
		if subscriptions, err = subs.New(eng, subs.Options{KeyFile: keyFile, DevWebhooks: f.webhookDev, Logger: log}); err != nil {
			if fetches != nil {
				fetches.Close()
			}
			eng.Close()
			return err
		}
	}
	// closeEngine stops the fetches (their streams are closed, outcome
	// interrupted) and the subscriptions' deliveries before the engine closes.
	closeEngine := func() error {
		if tiering != nil {
			tiering.Close()
		}
		if fetches != nil {
			fetches.Close()
		}
		if subscriptions != nil {
			subscriptions.Close()
		}
		return eng.Close()
	}
	srv, err := server.New(eng, server.Config{
		Prefix:          f.prefix,
		LongPollTimeout: f.longPoll,
		SSEMaxDuration:  f.sseMax,
		MaxAppendBytes:  f.maxAppend,
		MaxReadBytes:    f.maxRead,
		LiveChunkBytes:  f.liveChunk,
		Logger:          log,

		MaxPathBytes:      f.maxPathBytes,
		MaxLiveReaders:    f.maxLiveReaders,
		RateLimit:         f.rateLimit,
		RateBurst:         f.rateBurst,
		TrustForwardedFor: f.trustForwardedFor,
		BodyReadTimeout:   noneIfZero(f.bodyReadTimeout),

		MaxInflightBodyBytes: bodyBudget,
		// After a burst of large bodies, give their memory back now rather
		// than when the runtime gets to it (minutes, on an idle server).
		AfterBodyBurst: releaseMemory,

		CatchupMaxAge: f.catchupMaxAge,
		ExtraMetrics:  tierMetrics(tiering),
		Auth:          authn,
		Subscriptions: subscriptions,

		Proxy: server.ProxyConfig{Manager: proxyManager(fetches, f), Secret: f.proxySecret,
			URLTTL: f.proxyURLTTL, BaseURL: f.proxyBaseURL},
	})
	if err != nil {
		closeEngine()
		return err
	}
	hs := newHTTPServer(srv, f, log)
	ln, err := net.Listen("tcp", f.addr)
	if err != nil {
		closeEngine()
		return err
	}
	ln = server.PrepareHTTPServer(hs, ln) // messages in net/http's own answers
	if f.pprofAddr != "" {
		go servePprof(f.pprofAddr, log)
	}
	if f.auth.opsAddr != "" {
		if err := serveOps(f.auth.opsAddr, srv, log); err != nil {
			ln.Close()
			closeEngine()
			return err
		}
	}
	// The durablefetch API, at the root of its own listener.
	var dfetch *server.DurableFetch
	var fhs *http.Server
	var fln net.Listener
	if f.fetchAddr != "" {
		if fln, err = net.Listen("tcp", f.fetchAddr); err != nil {
			ln.Close()
			closeEngine()
			return fmt.Errorf("--fetch-addr: %w", err)
		}
		dfetch = server.NewDurableFetch(fetches, eng, server.DurableFetchConfig{
			TrustForwardedProto: f.fetchTrustForwardedProto, Auth: authn, Logger: log})
		fhs = newHTTPServer(dfetch, f, log)
		fln = server.PrepareHTTPServer(fhs, fln)
	}
	errc := make(chan error, 2)
	serveOn := func(hs *http.Server, ln net.Listener) {
		if f.tlsCert != "" {
			hs.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
			errc <- hs.ServeTLS(ln, f.tlsCert, f.tlsKey)
			return
		}
		errc <- hs.Serve(ln)
	}
	go serveOn(hs, ln)
	log.Info("durastream serving", "addr", ln.Addr().String(), "durability", f.durability,
		"data_dir", f.dataDir, "prefix", f.prefix, "tls", f.tlsCert != "", "version", version)
	if fhs != nil {
		go serveOn(fhs, fln)
		log.Info("durablefetch API serving", "addr", fln.Addr().String(), "tls", f.tlsCert != "")
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err = <-errc:
		log.Error("server stopped", "err", err)
	case s := <-sig:
		log.Info("shutting down", "signal", s.String())
	}
	// Stop accepting, end live reads, let requests in flight finish, then
	// close the engine (final checkpoint).
	srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	fdone := make(chan struct{})
	if fhs != nil {
		dfetch.Shutdown() // responses following a live fetch are cut: not complete
		go func() {
			defer close(fdone)
			if serr := fhs.Shutdown(ctx); serr != nil {
				log.Warn("graceful shutdown of the durablefetch API incomplete", "err", serr)
			}
		}()
	} else {
		close(fdone)
	}
	if serr := hs.Shutdown(ctx); serr != nil {
		log.Warn("graceful shutdown incomplete", "err", serr)
	}
	<-fdone
	if cerr := closeEngine(); cerr != nil {
		log.Error("closing engine", "err", cerr)
		return cerr
	}
	log.Info("stopped")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// newFetchManager opens the upstream-fetch manager with the --proxy-allow
// allowlist.
func newFetchManager(eng *engine.Engine, f *serveFlags, log *slog.Logger) (*fetch.Manager, error) {
	allow, err := fetch.ParseAllowlist(f.proxyAllow)
	if err != nil {
		return nil, fmt.Errorf("--proxy-allow: %w", err)
	}
	if allow.Len() == 0 {
		log.Warn("durable fetch is on but --proxy-allow is empty: every upstream URL is refused")
	}
	log.Info("durable fetch", "allow", allow.Patterns(), "proxy", f.proxySecret != "", "fetch_addr", f.fetchAddr)
	return fetch.New(eng, fetch.Config{Allow: allow, Logger: log, TTL: f.fetchTTL,
		MaxResponseBytes: f.fetchMaxResponse, MaxConcurrent: f.fetchMaxConcurrent})
}

// proxyManager is the manager the proxy protocol uses: nil (off) without
// --proxy-secret.
func proxyManager(m *fetch.Manager, f *serveFlags) *fetch.Manager {
	if f.proxySecret == "" {
		return nil
	}
	return m
}

// checkLimits validates the limit flags.
func (f *serveFlags) checkLimits() error {
	switch {
	case f.readHeaderTimeout < 0 || f.idleTimeout < 0:
		return errors.New("--read-header-timeout and --idle-timeout must not be negative")
	case f.bodyReadTimeout < 0:
		return errors.New("--body-read-timeout must not be negative")
	case f.maxHeaderBytes < 1:
		return errors.New("--max-header-bytes must be positive")
	case f.maxPathBytes < 1:
		return errors.New("--max-path-bytes must be positive")
	case f.maxLiveReaders == 0:
		return errors.New("--max-live-readers must not be 0 (negative: no cap)")
	case f.rateLimit < 0 || f.rateLimit != f.rateLimit || f.rateLimit > 1e9:
		return errors.New("--rate-limit must be 0 (off) or a positive number of requests per second")
	case f.rateBurst < 0:
		return errors.New("--rate-burst must not be negative")
	case f.gcPercent <= 0:
		return errors.New("--gc-percent must be positive")
	case f.fetchTTL < 2*fetch.DefaultIdleTimeout:
		return fmt.Errorf("--fetch-ttl must be at least %v (twice the upstream idle timeout: a fetch whose upstream is silent renews nothing)", 2*fetch.DefaultIdleTimeout)
	case f.fetchMaxResponse <= 0 || f.fetchMaxConcurrent <= 0:
		return errors.New("--fetch-max-response-bytes and --fetch-max-concurrent must be positive")
	}
	if strings.TrimSpace(f.gcFloor) != "0" {
		n, err := parseBytes(f.gcFloor)
		if err != nil {
			return fmt.Errorf("--gc-min-heap %q: want a size such as 64MiB, or 0", f.gcFloor)
		}
		f.gcFloorN = n
	}
	switch strings.TrimSpace(f.memoryLimit) {
	case "":
	case "0":
		f.memLimit = -1
	default:
		n, err := parseBytes(f.memoryLimit)
		if err != nil || n <= 0 {
			return fmt.Errorf("--memory-limit %q: want a size such as 900MiB, or 0 for none", f.memoryLimit)
		}
		f.memLimit = n
	}
	switch strings.TrimSpace(f.inflightBody) {
	case "":
	case "-1":
		f.inflightBodyN = -1
	default:
		n, err := parseBytes(f.inflightBody)
		if err != nil {
			return fmt.Errorf("--max-inflight-body-bytes %q: want a size such as 256MiB, or -1 for no cap", f.inflightBody)
		}
		if m := server.MinInflightBodyBytes(f.maxAppend); n < m {
			return fmt.Errorf("--max-inflight-body-bytes %s must hold one largest compressed body (--max-append-bytes %d): at least %d", f.inflightBody, f.maxAppend, m)
		}
		f.inflightBodyN = n
	}
	return nil
}

// releaseMemory collects twice (pooled body buffers outlive one
// collection) and returns the freed memory to the operating system.
func releaseMemory() {
	runtime.GC()
	debug.FreeOSMemory()
}

// setMemoryLimit sets the Go runtime's soft memory limit: flag (bytes; -1
// for none), else GOMEMLIMIT as the runtime already read it, else 3/4 of
// the memory the machine or cgroup gives the process. It returns the limit
// (0: none) and where it came from.
func setMemoryLimit(flag int64) (int64, string) {
	switch {
	case flag < 0:
		debug.SetMemoryLimit(math.MaxInt64)
		return 0, "--memory-limit 0"
	case flag > 0:
		debug.SetMemoryLimit(flag)
		return flag, "--memory-limit"
	}
	if os.Getenv("GOMEMLIMIT") != "" {
		if n := debug.SetMemoryLimit(-1); n != math.MaxInt64 {
			return n, "GOMEMLIMIT"
		}
		return 0, "GOMEMLIMIT"
	}
	m := gctune.DefaultMemoryLimit()
	if m.Bytes <= 0 {
		return 0, "none (machine memory unknown)"
	}
	debug.SetMemoryLimit(m.Bytes)
	return m.Bytes, "3/4 of " + m.Source
}

// newHTTPServer builds the http.Server the binary serves h with: header
// read timeout and idle timeout (slowloris), header size limit. No
// ReadTimeout or WriteTimeout: appends may be large and SSE is long-lived.
func newHTTPServer(h http.Handler, f *serveFlags, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: f.readHeaderTimeout,
		IdleTimeout:       f.idleTimeout,
		MaxHeaderBytes:    f.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// noneIfZero maps a flag's 0 ("none") to a server.Config duration's -1.
func noneIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Info("pprof serving", "addr", addr)
	if err := http.ListenAndServe(addr, mux); err != nil {
		log.Error("pprof server", "err", err)
	}
}
