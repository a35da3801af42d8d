// Package crashtest holds crash torture tests that drive the real durastream
// binary over HTTP.
package crashtest

// Crash torture over HTTP.
//
// The test builds ./cmd/durastream and, round after round: starts
// `durastream serve --durability sync` on one data directory, drives mixed
// concurrent load through HTTP (24 clients: JSON and binary appends, some
// large enough to be stored by reference, idempotent producers that retry,
// creates, forks, closes with racing appends, append-and-close, deletes,
// reads and long-polls; 2 more drive durable fetches through the
// durablefetch door and the proxy protocol, fetch_load_test.go; one more
// appends to streams two subscriptions watch and works their wakes,
// subs_load_test.go), records
// every acknowledged response, SIGKILLs the
// server at a random moment, restarts it on the same directory (it must be
// healthy within 15 s), and checks through HTTP reads that:
//
//   - every acknowledged append is there, byte-exact, at exactly the offsets
//     it was acknowledged at (end = its Stream-Next-Offset); JSON messages are
//     stored compact, each followed by ',';
//   - nothing else is: the stored bytes are whole records or messages, each
//     belonging to a request that was acknowledged or got no answer, none
//     twice; a request without an answer is there once or never, and once
//     found absent after a restart it never appears;
//   - a producer retry of an acknowledged (epoch, seq) gets 204 and leaves the
//     tail alone; an earlier epoch gets 403;
//   - a producer request in flight at the kill, resent with the same (epoch,
//     seq), gets 204 exactly when the recovered data holds it (once) and 200
//     exactly when it does not (and is then stored once);
//   - an acknowledged close is final: HEAD says closed at the acknowledged
//     offset, the stream ends there, no append was acknowledged past it (even
//     those racing the close), and a new append gets 409 Stream-Closed;
//   - deleted streams stay deleted (404, or 410 while a fork still reads them);
//     forks hold their source's bytes below the fork offset, then their own;
//   - offsets only grow: appends after a restart start at or after the tail
//     verified after it; what a reader saw during load is still there; a
//     close or delete the server reported (409 Stream-Closed, 404) holds;
//   - durable fetches that were answered are still there, settled, served
//     without calling the upstream again, with every byte a reader saw,
//     presented as complete exactly when whole, never hanging, and never
//     changing afterwards (fetch_load_test.go);
//   - subscriptions: every ack answered 200 is kept, and pending work is
//     offered again by a claim and by a webhook (subs_load_test.go).
//
// Every few rounds the server is also stopped gracefully (SIGTERM: final
// checkpoint) and restarted, so later kills recover from a checkpoint plus
// the commit log. A last graceful restart and verification ends the test.
//
//	go test -race -count=1 -v -run TestHTTPCrashTorture ./crashtest/
//
// Environment:
//
//	DURASTREAM_TORTURE_SEED    seed of the plan (kill moments, client randomness);
//	                           printed by every run (scheduling still varies)
//	DURASTREAM_TORTURE_ROUNDS  kill/restart rounds (default 15)
//	DURASTREAM_TORTURE_BUDGET  no new round starts after this long (default
//	                           150s when ROUNDS is not set, else none)
//	DURASTREAM_TORTURE_GRACEFUL  also stop gracefully (SIGTERM, checkpoint) and
//	                           restart after every Nth round (default 5; 0: never)
//	DURASTREAM_TORTURE_DIR     keep the data directory under this directory
//	DURASTREAM_TORTURE_RACE    1: build the server with -race
//	DURASTREAM_TORTURE_TAGS    build the server with these build tags
//	DURASTREAM_TORTURE_BIN     run this server binary instead of building one
//	                           (e.g. one built from an older commit)
//
// TestHTTPPowerLossTorture (powerloss_test.go) runs the same load, model and
// checks with the data directory on a file system that loses what was not
// synced at every kill and graceful stop.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const (
	generalWorkers  = 16
	producerWorkers = 8
	maxReported     = 40
)

type tortureConfig struct {
	seed   uint64
	rounds int
	budget time.Duration
	dir    string
	race   bool
	every  int    // graceful restart after every Nth round
	tags   string // build tags of the server
	bin    string // a server binary to run instead of building one
}

func loadTortureConfig(t *testing.T) tortureConfig {
	cfg := tortureConfig{seed: uint64(time.Now().UnixNano()), rounds: 15, budget: 150 * time.Second, every: 5}
	if v := os.Getenv("DURASTREAM_TORTURE_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("DURASTREAM_TORTURE_SEED=%q: %v", v, err)
		}
		cfg.seed = s
	}
	if v := os.Getenv("DURASTREAM_TORTURE_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("DURASTREAM_TORTURE_ROUNDS=%q: want a positive integer", v)
		}
		cfg.rounds, cfg.budget = n, 0
	}
	if v := os.Getenv("DURASTREAM_TORTURE_BUDGET"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("DURASTREAM_TORTURE_BUDGET=%q: %v", v, err)
		}
		cfg.budget = d
	}
	if v := os.Getenv("DURASTREAM_TORTURE_GRACEFUL"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("DURASTREAM_TORTURE_GRACEFUL=%q: want a non-negative integer", v)
		}
		cfg.every = n
	}
	cfg.dir = os.Getenv("DURASTREAM_TORTURE_DIR")
	cfg.race = os.Getenv("DURASTREAM_TORTURE_RACE") == "1"
	cfg.tags = os.Getenv("DURASTREAM_TORTURE_TAGS")
	cfg.bin = os.Getenv("DURASTREAM_TORTURE_BIN")
	return cfg
}

type torture struct {
	t     *testing.T
	cfg   tortureConfig
	bin   string
	data  string
	m     *model
	srv   *serverProc
	plan  *rand.Rand
	start time.Time

	// power, if set, cuts the power after every kill and graceful stop
	// (powerloss_test.go).
	power *powerLoss
	// fetch is the upstream and door of the durable fetch load.
	fetch *fetchSetup
	// subs is the subscriptions' model and webhook receiver.
	subs *subsModel
	// serverArgs, if set, gives more serve flags for each start.
	serverArgs func() []string
	// expectFailures: failures are logged, not test errors (a negative
	// control checks them itself).
	expectFailures bool
}

func TestHTTPCrashTorture(t *testing.T) {
	if testing.Short() {
		t.Skip("crash torture builds the server and runs for minutes; skipped with -short")
	}
	cfg := loadTortureConfig(t)
	tt := newTorture(t, cfg)
	tt.data = filepath.Join(t.TempDir(), "data")
	if cfg.dir != "" {
		tt.data = filepath.Join(cfg.dir, fmt.Sprintf("torture-%d-%d", cfg.seed, time.Now().Unix()))
	}
	tt.execute()
}

// newTorture builds the server (or takes cfg.bin) for a torture run.
func newTorture(t *testing.T, cfg tortureConfig) *torture {
	tt := &torture{t: t, cfg: cfg, m: newModel(), start: time.Now(),
		plan: rand.New(rand.NewPCG(cfg.seed, 0x746f7274757265))}
	t.Logf("seed %d (reproduce the plan with DURASTREAM_TORTURE_SEED=%d), %d rounds", cfg.seed, cfg.seed, cfg.rounds)
	tt.bin = cfg.bin
	if tt.bin == "" {
		var err error
		if tt.bin, err = buildServerTags(t.TempDir(), cfg.race, cfg.tags); err != nil {
			t.Fatal(err)
		}
	} else {
		t.Logf("server binary %s", tt.bin)
	}
	tt.fetch = newFetchSetup()
	tt.subs = newSubsModel()
	t.Cleanup(func() {
		if tt.srv != nil {
			tt.srv.kill()
		}
		tt.fetch.up.srv.Close()
		tt.subs.hook.srv.Close()
	})
	return tt
}

// execute runs the rounds on tt.data and reports.
func (tt *torture) execute() {
	t, cfg := tt.t, tt.cfg
	t.Logf("data directory %s", tt.data)
	var reported atomic.Int64
	limit := int64(maxReported)
	if tt.expectFailures {
		limit = 5
	}
	tt.m.onFail = func(msg string) {
		if reported.Add(1) <= limit {
			if tt.expectFailures {
				t.Logf("seed %d: (failure expected) %s", cfg.seed, msg)
			} else {
				t.Errorf("seed %d: %s", cfg.seed, msg)
			}
		}
	}
	tt.m.prods = make([]*producer, producerWorkers)

	tt.run()
	tt.summary()
	if n := tt.m.nFailures(); n > 0 && !tt.expectFailures {
		t.Errorf("%d failures (%d reported above); seed %d; data directory %s (set DURASTREAM_TORTURE_DIR to keep it)",
			n, min(n, maxReported), cfg.seed, tt.data)
	}
}

func (tt *torture) restart(round int, after string) bool {
	var srv *serverProc
	var took time.Duration
	var err error
	tt.subs.hook.restarting()
	for attempt := 0; attempt < 3; attempt++ {
		extra := append(tt.fetch.flags(), "--webhook-dev")
		if tt.serverArgs != nil {
			extra = append(extra, tt.serverArgs()...)
		}
		srv, took, err = startServer(tt.bin, tt.data, extra...)
		// The door's port is found by binding :0 and closing it; a client's
		// ephemeral port can take it meanwhile: start again on another.
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		tt.m.fail("round %d: restart %s failed: %v", round, after, err)
		return false
	}
	tt.srv = srv
	srv.took = took
	st := &tt.m.st
	st.recoveryTotal += took
	st.recoveryMax = max(st.recoveryMax, took)
	return true
}

func (tt *torture) serverErrors(round int) {
	if tt.srv == nil {
		return
	}
	for _, line := range tt.srv.logs.takeErrors() {
		tt.m.fail("round %d: server logged: %s", round, line)
	}
}

func (tt *torture) run() {
	m := tt.m
	if !tt.restart(0, "(first start)") {
		return
	}
	if err := tt.subs.setup(newClient(), tt.srv.base); err != nil {
		m.fail("subscriptions: %v", err)
		return
	}
	for round := 1; round <= tt.cfg.rounds; round++ {
		if tt.cfg.budget > 0 && round > 3 && time.Since(tt.start) > tt.cfg.budget {
			tt.t.Logf("time budget %v reached: stopping after %d of %d rounds", tt.cfg.budget, round-1, tt.cfg.rounds)
			break
		}
		killAfter := 300*time.Millisecond + time.Duration(tt.plan.IntN(601))*time.Millisecond
		seed := tt.plan.Uint64()
		tt.bumpEpochs()

		c := newClient()
		l := newLoad(m, c, tt.srv.base, round)
		seeds := rand.New(rand.NewPCG(seed, 1))
		for w := range generalWorkers {
			l.wg.Add(1)
			go l.worker(w, seeds.Uint64())
		}
		for pw := range producerWorkers {
			l.wg.Add(1)
			go l.producerWorker(pw, seeds.Uint64())
		}
		l.wg.Add(1)
		go tt.subs.worker(l, seeds.Uint64())
		fl := &fetchLoad{load: l, up: tt.fetch.up, door: tt.fetch.door()}
		for fw := range fetchWorkers {
			l.wg.Add(1)
			go fl.worker(fw, seeds.Uint64())
		}
		time.Sleep(killAfter)
		if tt.srv.exited() {
			m.fail("round %d: the server died during load (%v); log:\n%s", round, tt.srv.waitErr, tt.srv.logs.tail(40))
		}
		l.killed.Store(true)
		if err := tt.srv.kill(); err != nil {
			m.fail("round %d: %v", round, err)
			return
		}
		m.st.kills++
		if !tt.powerCut(round, "after the kill") {
			return
		}
		done := make(chan struct{})
		go func() { l.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			m.fail("round %d: clients still busy 30s after the kill", round)
			return
		}
		c.CloseIdleConnections()
		tt.serverErrors(round)
		m.st.rounds = round

		if !tt.restart(round, "after the kill") {
			return
		}
		vstart := time.Now()
		tt.check(round, fmt.Sprintf("after the kill at %v", killAfter))
		m.mu.Lock()
		sent := 0
		for _, n := range m.st.opsSent {
			sent += n
		}
		m.mu.Unlock()
		tt.t.Logf("round %d: killed after %v; %d requests sent so far; recovery %v; verification %v",
			round, killAfter, sent, tt.srv.took.Round(time.Millisecond), time.Since(vstart).Round(time.Millisecond))
		if tt.cfg.every > 0 && round%tt.cfg.every == 0 && m.nFailures() == 0 {
			if !tt.graceful(round) {
				return
			}
		}
		tt.serverErrors(round)
		if m.nFailures() > 0 {
			tt.t.Logf("round %d: failures found; stopping", round)
			return
		}
	}
	// A last clean restart: everything must survive a checkpoint too.
	tt.graceful(m.st.rounds)
	if err := tt.srv.stop(30 * time.Second); err != nil {
		m.fail("final graceful stop: %v", err)
	}
	tt.serverErrors(m.st.rounds)
	tt.srv = nil
}

func (tt *torture) graceful(round int) bool {
	if err := tt.srv.stop(30 * time.Second); err != nil {
		tt.m.fail("round %d: graceful stop: %v", round, err)
		return false
	}
	tt.serverErrors(round)
	tt.m.st.graceful++
	if !tt.powerCut(round, "after a graceful stop") {
		return false
	}
	if !tt.restart(round, "after a graceful stop") {
		return false
	}
	tt.check(round, "after a graceful stop")
	return true
}

// check verifies the restarted server against the model, resolves the
// producer requests that were in flight, and runs the duplicate, fencing
// and closed-stream checks.
func (tt *torture) check(round int, label string) {
	c := newClient()
	defer c.CloseIdleConnections()
	v := &verifier{m: tt.m, c: c, base: tt.srv.base, round: round, label: label}
	rng := rand.New(rand.NewPCG(tt.plan.Uint64(), 2))
	v.run()
	v.resolveInflight()
	v.producerChecks(rng)
	v.probeClosed(rng)
	(&fetchVerifier{verifier: v, up: tt.fetch.up, door: tt.fetch.door()}).run()
	tt.subs.verify(v)
}

// bumpEpochs moves a few producers to a new epoch (seq restarts at 0).
func (tt *torture) bumpEpochs() {
	m := tt.m
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range m.prods {
		if p != nil && !p.retired && p.inflight == nil && len(p.acked) > 0 && tt.plan.IntN(8) == 0 {
			p.prevEpoch = p.acked[len(p.acked)-1]
			p.epoch++
			p.seq = 0
			p.acked = nil
		}
	}
}

func (tt *torture) summary() {
	m := tt.m
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &m.st
	t := tt.t
	var streams, forks, closed, deleted int
	for _, s := range m.streams {
		if s.exists != triYes {
			continue
		}
		streams++
		if s.src != nil {
			forks++
		}
		if s.closed == triYes {
			closed++
		}
		if s.deleted == triYes {
			deleted++
		}
	}
	avgRec := time.Duration(0)
	if n := st.kills + st.graceful + 1; n > 0 {
		avgRec = st.recoveryTotal / time.Duration(n)
	}
	t.Logf("summary: seed %d, %d rounds, %d kills, %d graceful restarts, %v total; recovery max %v, mean %v",
		tt.cfg.seed, st.rounds, st.kills, st.graceful, time.Since(tt.start).Round(time.Millisecond), st.recoveryMax.Round(time.Millisecond), avgRec.Round(time.Millisecond))
	t.Logf("summary: streams %d (forks %d, closed %d, deleted %d); requests sent %s", streams, forks, closed, deleted, kv(st.opsSent))
	t.Logf("summary: acknowledged %s", kv(st.acked))
	var total int
	for _, n := range st.verifiedByKind {
		total += n
	}
	t.Logf("summary: acknowledged appends verified after a restart: %d (%s); %d presence checks in all rounds",
		total, kv(st.verifiedByKind), st.verifyChecks)
	t.Logf("summary: in-flight producer retries after a kill: %d durable (204), %d re-appended (200), %d closed/gone meanwhile; %d refused at connect re-sent; client-timeout retries: %d duplicate, %d new",
		st.inflightDurable, st.inflightReapp, st.inflightClosed, st.unsentRetried, st.midRetryDup, st.midRetryNew)
	t.Logf("summary: appends without answer resolved: %d durable, %d absent; producer duplicate checks %d, stale-epoch checks %d; closed-stream probes %d (+%d rejected during load); deleted-stream checks %d; reader observations checked %d",
		st.maybePresent, st.maybeAbsent, st.dupChecks, st.staleChecks, st.closedProbes, st.rejectedClosed, st.deletedChecks, st.observations)
	t.Logf("summary: durable fetches: %s", st.fetch)
	t.Logf("summary: subscriptions: %s", tt.subs)
	t.Logf("summary: lost %d (acknowledged requests and streams missing after a restart), duplicated %d", st.lost, st.duplicated)
	t.Logf("summary: failures found: %d", m.nFailures())
}

func kv(m map[string]int) string {
	var b strings.Builder
	for i, k := range sortedKeys(m) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return b.String()
}
