package main

// The bench and null-server subcommands:
//
//	durastream bench -url http://127.0.0.1:4437 -scenario append-small [-duration 10s -c 32 -pid PID ...]
//	durastream bench -scenario machine [-dir DIR]
//	durastream bench report -in results.jsonl -out BENCHMARKS.md [-commands FILE]
//	durastream null-server [--addr 127.0.0.1:4439]
//
// See package bench and scripts/bench-compare.sh.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/durastream/durastream/bench"
)

func benchCmd(args []string) error {
	if len(args) > 0 && args[0] == "report" {
		return benchReportCmd(args[1:])
	}
	var cfg bench.Config
	var prefill, out, cpuProfile string
	var list, quiet bool
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:4437", "base URL of the server under test")
	fs.StringVar(&cfg.Prefix, "prefix", "/v1/stream/", "stream URL prefix")
	fs.StringVar(&cfg.Scenario, "scenario", "append-small", "scenario to run (-list shows them)")
	fs.StringVar(&cfg.Label, "label", "", "name of the server under test, recorded in the result")
	fs.IntVar(&cfg.Round, "round", 0, "A/B round number, recorded in the result")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "length of the timed phase (many-streams: upper bound)")
	fs.IntVar(&cfg.Concurrency, "c", 0, "writers or creators (default 32; append-large 4)")
	fs.IntVar(&cfg.Size, "size", 0, "message bytes (default 100; append-large 1 MiB)")
	fs.IntVar(&cfg.Readers, "readers", 4, "catchup-read: readers")
	fs.StringVar(&prefill, "prefill", "256MiB", "catchup-read: stream size (bytes, or with KiB/MiB/GiB)")
	fs.IntVar(&cfg.Subscribers, "subscribers", 1000, "fan-out: subscribers")
	fs.Float64Var(&cfg.Rate, "rate", 100, "fan-out: messages per second from the writer")
	fs.DurationVar(&cfg.Drain, "drain", 3*time.Second, "fan-out: longest wait for deliveries after the writer stops")
	fs.IntVar(&cfg.Streams, "streams", 100_000, "many-streams: how many streams")
	fs.IntVar(&cfg.PID, "pid", 0, "server process id: sample its CPU seconds and RSS from /proc")
	fs.DurationVar(&cfg.Timeout, "timeout", 35*time.Second, "response-header timeout of every request")
	fs.Int64Var(&cfg.MaxOps, "max-ops", 50_000_000, "upper bound on operations in one run")
	fs.StringVar(&cfg.Dir, "dir", "", "machine: directory on the disk to measure (default the temp dir)")
	fs.IntVar(&cfg.MachineMiB, "machine-mib", 256, "machine: MiB written sequentially")
	fs.BoolVar(&cfg.Cleanup, "cleanup", true, "delete the streams a scenario made (not create-burst or many-streams)")
	fs.StringVar(&out, "o", "", "also append the JSON result line to this file")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write the generator's own CPU profile to this file")
	fs.BoolVar(&list, "list", false, "list the scenarios and exit")
	fs.BoolVar(&quiet, "q", false, "no table on stderr, only the JSON line on stdout")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: durastream bench -url URL -scenario NAME [flags]\n       durastream bench report -in results.jsonl -out BENCHMARKS.md\nflags:")
		fs.PrintDefaults()
	}
	if err := parseArgs(fs, args); err != nil {
		return quitOnHelp(err)
	}
	if list {
		for _, s := range bench.Scenarios() {
			fmt.Println(s)
		}
		return nil
	}
	n, err := parseBytes(prefill)
	if err != nil {
		return fmt.Errorf("-prefill: %w", err)
	}
	cfg.Prefill = n
	if cfg.Scenario == "create-burst" || cfg.Scenario == "many-streams" {
		cfg.Cleanup = false // thousands of streams: the server's data dir is the cleanup
	}
	if !quiet {
		cfg.Log = os.Stderr
	}

	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	res, runErr := bench.Run(ctx, cfg)
	if res == nil {
		if runErr == nil {
			return errors.New("no result")
		}
		res = &bench.Result{Scenario: cfg.Scenario, Label: cfg.Label, Round: cfg.Round, URL: cfg.URL, Start: time.Now().UTC()}
	}
	if runErr != nil {
		res.Error = runErr.Error()
	}
	line := append(res.JSON(), '\n')
	os.Stdout.Write(line)
	if out != "" {
		f, err := os.OpenFile(out, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		_, werr := f.Write(line)
		if err := errors.Join(werr, f.Close()); err != nil {
			return err
		}
	}
	if !quiet {
		res.WriteTable(os.Stderr)
	}
	return runErr
}

// parseBytes parses 1048576, 1MiB, 64KiB, 2GiB (also K, M, G: binary too).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	return n * mult, nil
}

func benchReportCmd(args []string) error {
	var o bench.ReportOptions
	var in, out string
	fs := flag.NewFlagSet("bench report", flag.ContinueOnError)
	fs.StringVar(&in, "in", "", "JSON result lines (durastream bench -o)")
	fs.StringVar(&out, "out", "BENCHMARKS.md", "Markdown file to write (- for stdout)")
	fs.StringVar(&o.CommandsFile, "commands", "", "text file with the commands that produced the results, quoted verbatim")
	fs.StringVar(&o.Note, "note", "", "a paragraph to put under the title (how the run was made)")
	fs.StringVar(&o.Baseline, "a", "durastream", "label of the server under test")
	fs.StringVar(&o.Reference, "b", "reference", "label of the server compared with")
	fs.StringVar(&o.Null, "null", "null", "label of the null-server ceiling")
	if err := fs.Parse(args); err != nil {
		return quitOnHelp(err)
	}
	if in == "" {
		return errors.New("bench report: -in is required")
	}
	results, err := bench.ReadResults(in)
	if err != nil {
		return err
	}
	md, err := bench.Report(results, o)
	if err != nil {
		return err
	}
	if out == "-" {
		_, err = os.Stdout.Write(md)
		return err
	}
	// Hand-written analysis below the marker in the existing file survives
	// regeneration.
	if old, err := os.ReadFile(out); err == nil {
		if i := strings.Index(string(old), bench.AnalysisMarker); i >= 0 {
			md = append(append(md, '\n'), old[i:]...)
		}
	}
	return os.WriteFile(out, md, 0o644)
}

// nullServerCmd serves bench.NullHandler: the HTTP ceiling, with the same
// net/http server settings as serve.
func nullServerCmd(args []string) error {
	h := bench.NewNullHandler()
	var addr string
	fs := flag.NewFlagSet("null-server", flag.ContinueOnError)
	fs.StringVar(&addr, "addr", "127.0.0.1:4439", "listen address (host:port)")
	fs.DurationVar(&h.LongPollTimeout, "long-poll-timeout", time.Second, "how long a long-poll read waits for an append")
	fs.DurationVar(&h.SSEMaxDuration, "sse-max-duration", 60*time.Second, "how long an SSE connection stays open")
	if err := parseArgs(fs, args); err != nil {
		return quitOnHelp(err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	log.Info("null server (acknowledges, stores nothing)", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case err = <-errc:
	case <-sig:
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		hs.Shutdown(ctx) // live SSE and long-poll responses are cut when this times out
		hs.Close()
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
