package engine_test

// Crash test: a child process (this test binary, re-executed) appends to many
// streams concurrently and reports every acknowledged operation on stdout;
// the parent kills it with SIGKILL at a random moment, recovers the directory
// in-process and checks that everything acknowledged survived byte-exact.
//
//	go test ./engine -run '^TestCrashRecovery$' -count=1 -v
//
// Environment:
//
//	DURASTREAM_CRASH_ROUNDS  number of kill/recover rounds (default 20)
//	DURASTREAM_CRASH_SEED    seed for the round plan (kill delays, child seeds);
//	                         printed by every run so a failure can be replayed
//	                         (scheduling still varies between runs)
//	DURASTREAM_CRASH_DIR     use (and keep) this data directory instead of a
//	                         temporary one, for post-mortem inspection
//	DURASTREAM_CRASH_BUDGET  no new round starts after this much time
//	                         (default 45s; at least 4 rounds run)
//
// Child protocol (stdout, one line per acknowledged operation, each starting
// with "@@ "):
//
//	@@ R                                  the child is open and writing
//	@@ S <stream> <json|bin>              the stream exists (Create returned)
//	@@ A <stream> <start> <end> <crc32c>  an append was acknowledged; its stored
//	                                      bytes are [start,end), with this CRC-32C
//	@@ C <stream> <final>                 a close was acknowledged at this tail
//	@@ P <stream> <id> <epoch> <seq>      a producer append was acknowledged
//	@@ E <message>                        the child saw an unexpected error
//
// A line is written only after Append returned nil, so everything on stdout
// must survive the kill. Lines the kill cut short are ignored.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/durastream/durastream/engine"
)

const (
	crashEnvChild  = "DURASTREAM_CRASH_CHILD"
	crashEnvRound  = "DURASTREAM_CRASH_ROUND"
	crashEnvCSeed  = "DURASTREAM_CRASH_CHILD_SEED"
	crashEnvRounds = "DURASTREAM_CRASH_ROUNDS"
	crashEnvSeed   = "DURASTREAM_CRASH_SEED"
	crashEnvDir    = "DURASTREAM_CRASH_DIR"
	crashEnvBudget = "DURASTREAM_CRASH_BUDGET"

	crashWriters     = 32
	crashSlots       = 40 // stream slots: the first half JSON, the second binary
	crashMaxBody     = 20 << 10
	crashChildMaxRun = 20 * time.Second
)

func crashOptions() *engine.Options {
	return &engine.Options{
		Durability:         engine.DurabilitySync,
		CheckpointInterval: 200 * time.Millisecond,
		WALSegmentSize:     1 << 20,
		MinSegmentSize:     4096,
		MaxSegmentSize:     64 << 10,
		// Bodies over 8 KiB go by reference (data only in the stream's
		// segment, synced by the appender), so kills hit that path too.
		LargeAppendBytes: 8 << 10,
	}
}

// ---------------------------------------------------------------------------
// Binary record pattern. Every binary append is one self-describing record,
// so any byte range of a binary stream can be checked to consist of whole,
// ungarbled records:
//
//	tiny (1..16 B): every byte is 0xE0+len
//	full (>=24 B):  'R' | u32 len | u16 writer | u32 round | u32 seq |
//	                pattern bytes | u32 CRC-32 of everything before it

const crashTinyMax = 16
const crashFullMin = 24

func crashPatternByte(writer, round, seq uint32, i int) byte {
	return byte(uint32(i)*7 + writer*31 + round*131 + seq*17)
}

func crashBinRecord(n int, writer, round, seq uint32) []byte {
	if n <= crashTinyMax {
		return bytes.Repeat([]byte{byte(0xE0 + n)}, n)
	}
	n = max(n, crashFullMin)
	b := make([]byte, n)
	b[0] = 'R'
	binary.LittleEndian.PutUint32(b[1:], uint32(n))
	binary.LittleEndian.PutUint16(b[5:], uint16(writer))
	binary.LittleEndian.PutUint32(b[7:], round)
	binary.LittleEndian.PutUint32(b[11:], seq)
	for i := 15; i < n-4; i++ {
		b[i] = crashPatternByte(writer, round, seq, i)
	}
	binary.LittleEndian.PutUint32(b[n-4:], crc32.ChecksumIEEE(b[:n-4]))
	return b
}

// crashParseBin splits b into whole records and returns their end offsets, or
// an error naming the first position that is not a whole record.
func crashParseBin(b []byte) ([]int, error) {
	var ends []int
	for p := 0; p < len(b); {
		c := b[p]
		switch {
		case c >= 0xE1 && c <= 0xE0+crashTinyMax:
			n := int(c - 0xE0)
			if p+n > len(b) {
				return ends, fmt.Errorf("tiny record at %d: %d bytes, only %d left", p, n, len(b)-p)
			}
			for i := p; i < p+n; i++ {
				if b[i] != c {
					return ends, fmt.Errorf("tiny record at %d: byte %d is %#x, want %#x", p, i, b[i], c)
				}
			}
			p += n
		case c == 'R':
			if p+crashFullMin > len(b) {
				return ends, fmt.Errorf("record at %d: truncated header (%d bytes left)", p, len(b)-p)
			}
			n := int(binary.LittleEndian.Uint32(b[p+1:]))
			if n < crashFullMin || n > crashMaxBody || p+n > len(b) {
				return ends, fmt.Errorf("record at %d: bad length %d (%d bytes left)", p, n, len(b)-p)
			}
			r := b[p : p+n]
			if crc32.ChecksumIEEE(r[:n-4]) != binary.LittleEndian.Uint32(r[n-4:]) {
				return ends, fmt.Errorf("record at %d (len %d): CRC mismatch", p, n)
			}
			w := uint32(binary.LittleEndian.Uint16(r[5:]))
			round := binary.LittleEndian.Uint32(r[7:])
			seq := binary.LittleEndian.Uint32(r[11:])
			for i := 15; i < n-4; i++ {
				if r[i] != crashPatternByte(w, round, seq, i) {
					return ends, fmt.Errorf("record at %d: pattern byte %d garbled", p, i)
				}
			}
			p += n
		default:
			return ends, fmt.Errorf("garbage byte %#x at %d", c, p)
		}
		ends = append(ends, p)
	}
	return ends, nil
}

// ---------------------------------------------------------------------------
// JSON bodies.

func crashJSONObject(rng *rand.Rand, writer, round, seq, k int) []byte {
	ws := func() string {
		switch rng.IntN(4) {
		case 0:
			return " "
		case 1:
			return "\n  "
		}
		return ""
	}
	padLen := rng.IntN(200)
	if rng.IntN(20) == 0 {
		padLen = rng.IntN(4000)
	}
	pad := strings.Repeat(string(rune('a'+(seq+k)%26)), padLen)
	switch rng.IntN(6) {
	case 0:
		pad += `\n\"\u00e9`
	case 1:
		pad += "é€"
	}
	return fmt.Appendf(nil, `{%s"w"%s:%s%d,%s"r":%d,"n":%d,"k":%d,%s"pad":%s"%s"%s}`,
		ws(), ws(), ws(), writer, ws(), round, seq, k, ws(), ws(), pad, ws())
}

// crashJSONBody returns a body (one object or an array of 1..5) and the bytes
// the engine must store for it: each message compacted and followed by ','.
func crashJSONBody(rng *rand.Rand, writer, round, seq int) (body, stored []byte) {
	n := 0 // a bare object
	if rng.IntN(3) == 0 {
		n = 1 + rng.IntN(5)
	}
	var objs [][]byte
	for k := range max(n, 1) {
		objs = append(objs, crashJSONObject(rng, writer, round, seq, k))
	}
	if n == 0 {
		body = objs[0]
	} else {
		body = append([]byte("[ "), bytes.Join(objs, []byte(" ,\n"))...)
		body = append(body, " ]"...)
	}
	for _, o := range objs {
		var c bytes.Buffer
		if err := json.Compact(&c, o); err != nil {
			panic(err)
		}
		stored = append(stored, c.Bytes()...)
		stored = append(stored, ',')
	}
	return body, stored
}

// ---------------------------------------------------------------------------
// Child.

type crashSlot struct {
	path   string
	json   bool
	closed atomic.Bool
}

// TestCrashChild is the body of the child process; it does nothing unless
// started by TestCrashRecovery.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashEnvChild)
	if dir == "" {
		return
	}
	round, _ := strconv.Atoi(os.Getenv(crashEnvRound))
	seed, _ := strconv.ParseUint(os.Getenv(crashEnvCSeed), 10, 64)

	out := make(chan string, 4096)
	writerDone := make(chan struct{})
	go func() { // the single stdout writer: one write(2) per line
		defer close(writerDone)
		for l := range out {
			os.Stdout.WriteString("@@ " + l + "\n")
		}
	}()
	fail := func(format string, args ...any) {
		out <- "E " + fmt.Sprintf(format, args...)
		close(out)
		<-writerDone
		os.Exit(3)
	}
	var failOnce sync.Once
	failAsync := func(format string, args ...any) {
		failOnce.Do(func() { fail(format, args...) })
		select {} // another goroutine is exiting the process
	}

	e, err := engine.Open(dir, crashOptions())
	if err != nil {
		fail("open: %v", err)
	}
	ctx := context.Background()
	slots := make([]*crashSlot, crashSlots)
	for i := range slots {
		isJSON := i < crashSlots/2
		kind, ct := "bin", "application/octet-stream"
		if isJSON {
			kind, ct = "json", "application/json"
		}
		for gen := 0; ; gen++ {
			path := fmt.Sprintf("crash/%s/%02d/g%03d", kind, i, gen)
			info, err := e.Head(path)
			if err == nil && info.Closed {
				continue // closed in an earlier round: take the next generation
			}
			if err != nil && !errors.Is(err, engine.ErrNotFound) {
				fail("head %s: %v", path, err)
			}
			if _, _, err := e.Create(ctx, path, engine.CreateOptions{ContentType: ct}); err != nil {
				fail("create %s: %v", path, err)
			}
			out <- fmt.Sprintf("S %s %s", path, kind)
			slots[i] = &crashSlot{path: path, json: isJSON}
			break
		}
	}
	out <- "R"

	var wg sync.WaitGroup
	for w := range crashWriters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, uint64(w)))
			useProducer := w%3 == 0
			prodID := fmt.Sprintf("w%02d", w)
			prodSeq := map[int]uint64{} // next producer seq per slot
			var n int                   // this writer's append counter
			for {
				i := rng.IntN(len(slots))
				s := slots[i]
				if s.closed.Load() {
					open := false
					for _, s := range slots {
						open = open || !s.closed.Load()
					}
					if !open {
						select {} // everything is closed: idle until killed
					}
					continue
				}
				n++
				closing := rng.IntN(600) == 0
				var body, stored []byte
				if !closing || rng.IntN(2) == 0 {
					if s.json {
						body, stored = crashJSONBody(rng, w, round, n)
					} else {
						size := int(math.Exp(rng.Float64() * math.Log(crashMaxBody)))
						if size > crashTinyMax && size < crashFullMin {
							size = crashFullMin
						}
						body = crashBinRecord(max(size, 1), uint32(w), uint32(round), uint32(n))
						stored = body
					}
				}
				o := engine.AppendOptions{Close: closing}
				if useProducer && (!closing || rng.IntN(2) == 0) {
					o.Producer = &engine.Producer{ID: prodID, Epoch: uint64(round), Seq: prodSeq[i]}
				}
				if s.json && rng.IntN(4) == 0 {
					o.ContentType = "application/json; charset=utf-8"
				}
				res, err := e.Append(ctx, s.path, body, o)
				if errors.Is(err, engine.ErrClosed) {
					s.closed.Store(true)
					continue
				}
				if err != nil {
					failAsync("append %s (close=%v producer=%+v): %v", s.path, closing, o.Producer, err)
				}
				if res.Duplicate {
					if !(closing && len(body) == 0 && o.Producer == nil) {
						failAsync("append %s (close=%v producer=%+v): unexpected duplicate %+v", s.path, closing, o.Producer, res)
					}
					// An idempotent repeat of someone else's close.
				} else if len(stored) > 0 {
					start := uint64(res.Tail) - uint64(len(stored))
					out <- fmt.Sprintf("A %s %d %d %08x", s.path, start, uint64(res.Tail), crashHash(stored))
				}
				if o.Producer != nil {
					out <- fmt.Sprintf("P %s %s %d %d", s.path, prodID, o.Producer.Epoch, o.Producer.Seq)
					prodSeq[i]++
					// Sometimes retry the same request: it must be a duplicate.
					if rng.IntN(20) == 0 {
						res2, err := e.Append(ctx, s.path, body, o)
						switch {
						case closing && err == nil && res2.Duplicate && res2.Closed && res2.Tail == res.Tail:
						case !closing && err == nil && res2.Duplicate:
						case !closing && errors.Is(err, engine.ErrClosed):
							// Closed meanwhile by another writer.
						default:
							failAsync("retry of %s %+v: res %+v err %v (first %+v)", s.path, o.Producer, res2, err, res)
						}
					}
				}
				if closing {
					if !res.Closed {
						failAsync("close of %s: result not closed: %+v", s.path, res)
					}
					out <- fmt.Sprintf("C %s %d", s.path, uint64(res.Tail))
					s.closed.Store(true)
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(crashChildMaxRun):
	}
	// Not reached in a normal run: the parent kills us long before.
	fail("child was not killed")
}

// ---------------------------------------------------------------------------
// Parent.

type crashAppend struct {
	start, end uint64
	hash       uint64
	round      int
}

var crashCastagnoli = crc32.MakeTable(crc32.Castagnoli)

// crashHash identifies an append's stored bytes. (CRC-32C, not the IEEE
// CRC-32: a binary record ends in its own IEEE CRC-32, and the IEEE CRC-32
// of such a record is a constant.)
func crashHash(b []byte) uint64 { return uint64(crc32.Checksum(b, crashCastagnoli)) }

type crashProd struct {
	epoch, seq uint64
	round      int
}

type crashStream struct {
	json    bool
	appends []crashAppend
	closed  bool
	final   uint64
	prods   map[string]crashProd // last acked per producer id

	// What earlier recoveries saw: the stream's first verified bytes with
	// this checksum, already checked to be whole records/messages ending at
	// the offsets in bounds. Recovered data never shrinks or changes.
	verified int
	fp       uint64
	bounds   map[int]bool
}

type crashModel struct {
	streams map[string]*crashStream
}

func (m *crashModel) stream(path string) *crashStream {
	s := m.streams[path]
	if s == nil {
		s = &crashStream{json: strings.HasPrefix(path, "crash/json/"), prods: map[string]crashProd{}, bounds: map[int]bool{0: true}}
		m.streams[path] = s
	}
	return s
}

type crashStats struct {
	rounds, appends, closes, producers, kills int
	bytes                                     int64
	earlyKills                                int
}

func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("crash test runs child processes; skipped with -short")
	}
	rounds := 20
	if v := os.Getenv(crashEnvRounds); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q", crashEnvRounds, v)
		}
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(crashEnvSeed); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q", crashEnvSeed, v)
		}
	}
	budget := 45 * time.Second // stop starting rounds after this (slow machines)
	if v := os.Getenv(crashEnvBudget); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q", crashEnvBudget, v)
		}
		budget = d
	}
	dir := os.Getenv(crashEnvDir)
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("crash test: seed %d (rerun with %s=%d), %d rounds, dir %s", seed, crashEnvSeed, seed, rounds, dir)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	model := &crashModel{streams: map[string]*crashStream{}}
	var st crashStats
	begin := time.Now()
	for round := 1; round <= rounds; round++ {
		if el := time.Since(begin); el > budget && round > 3 {
			t.Logf("crash test: time budget %v spent after %d rounds (%v); stopping early (%s overrides)", budget, round-1, el.Round(time.Millisecond), crashEnvBudget)
			break
		}
		childSeed := rng.Uint64()
		// Most kills land 100..700 ms into the writing; some during startup
		// and recovery (counted from process start, before "R").
		early := rng.IntN(8) == 0
		delay := time.Duration(100+rng.IntN(600)) * time.Millisecond
		if early {
			delay = time.Duration(rng.IntN(150)) * time.Millisecond
		}
		crashRunChild(t, dir, round, childSeed, early, delay, model, &st)
		if t.Failed() {
			t.Fatalf("round %d failed (seed %d, child seed %d, kill delay %v early=%v)", round, seed, childSeed, delay, early)
		}
		crashVerify(t, dir, round, model, &st)
		if t.Failed() {
			t.Fatalf("round %d: verification failed (seed %d, child seed %d, kill delay %v early=%v); dir %s",
				round, seed, childSeed, delay, early, dir)
		}
		st.rounds++
	}
	var uniqA, uniqC int
	var uniqB int64
	for _, s := range model.streams {
		uniqA += len(s.appends)
		for _, a := range s.appends {
			uniqB += int64(a.end - a.start)
		}
		if s.closed {
			uniqC++
		}
	}
	t.Logf("crash test: %d rounds (%d killed during startup) in %v; %d streams, %d acked appends (%d bytes), %d acked closes",
		st.rounds, st.earlyKills, time.Since(begin).Round(time.Millisecond), len(model.streams), uniqA, uniqB, uniqC)
	t.Logf("crash test: verifications summed over rounds: %d acked appends (%d bytes), %d closes, %d producer retries",
		st.appends, st.bytes, st.closes, st.producers)
}

// crashRunChild runs one child, kills it and folds its acks into the model.
func crashRunChild(t *testing.T, dir string, round int, seed uint64, early bool, delay time.Duration, model *crashModel, st *crashStats) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(),
		crashEnvChild+"="+dir,
		crashEnvRound+"="+strconv.Itoa(round),
		crashEnvCSeed+"="+strconv.FormatUint(seed, 10))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := time.Now()
	ready := make(chan struct{})
	lines := make(chan []string, 1)
	go func() {
		var got []string
		r := bufio.NewReader(stdout)
		readySeen := false
		for {
			l, err := r.ReadString('\n')
			if err != nil {
				break // EOF; a partial last line (cut by the kill) is dropped
			}
			l = strings.TrimSuffix(l, "\n")
			if !strings.HasPrefix(l, "@@ ") {
				continue
			}
			l = l[3:]
			if l == "R" && !readySeen {
				readySeen = true
				close(ready)
			}
			got = append(got, l)
		}
		if !readySeen {
			close(ready)
		}
		lines <- got
	}()
	if early {
		time.Sleep(delay)
		st.earlyKills++
	} else {
		select {
		case <-ready:
		case <-time.After(15 * time.Second):
			t.Errorf("round %d: child not ready after 15s", round)
		}
		time.Sleep(delay)
	}
	killErr := cmd.Process.Signal(syscall.SIGKILL)
	got := <-lines
	waitErr := cmd.Wait()
	ran := time.Since(started)

	var ee *exec.ExitError
	killed := errors.As(waitErr, &ee) && ee.Sys().(syscall.WaitStatus).Signaled() &&
		ee.Sys().(syscall.WaitStatus).Signal() == syscall.SIGKILL
	if !killed {
		t.Errorf("round %d: child was not killed by SIGKILL: wait %v, kill %v\nstderr:\n%s", round, waitErr, killErr, crashTail(stderr.String()))
	}
	if strings.Contains(stderr.String(), "DATA RACE") || strings.Contains(stderr.String(), "panic:") {
		t.Errorf("round %d: child stderr:\n%s", round, crashTail(stderr.String()))
	}
	nA, nC, nP := 0, 0, 0
	for _, l := range got {
		f := strings.Fields(l)
		switch f[0] {
		case "R":
		case "E":
			t.Errorf("round %d: child error: %s", round, l)
		case "S":
			model.stream(f[1])
		case "A":
			s := model.stream(f[1])
			start, _ := strconv.ParseUint(f[2], 10, 64)
			end, _ := strconv.ParseUint(f[3], 10, 64)
			hash, _ := strconv.ParseUint(f[4], 16, 64)
			if end <= start {
				t.Errorf("round %d: bad ack %q", round, l)
			}
			s.appends = append(s.appends, crashAppend{start: start, end: end, hash: hash, round: round})
			nA++
		case "C":
			s := model.stream(f[1])
			final, _ := strconv.ParseUint(f[2], 10, 64)
			if s.closed && s.final != final {
				t.Errorf("round %d: %s acked closed at %d and at %d", round, f[1], s.final, final)
			}
			s.closed, s.final = true, final
			nC++
		case "P":
			s := model.stream(f[1])
			epoch, _ := strconv.ParseUint(f[3], 10, 64)
			seq, _ := strconv.ParseUint(f[4], 10, 64)
			if p, ok := s.prods[f[2]]; ok && (epoch < p.epoch || epoch == p.epoch && seq <= p.seq) {
				t.Errorf("round %d: %s producer %s acked (%d,%d) after (%d,%d)", round, f[1], f[2], epoch, seq, p.epoch, p.seq)
			}
			s.prods[f[2]] = crashProd{epoch: epoch, seq: seq, round: round}
			nP++
		default:
			t.Errorf("round %d: unknown child line %q", round, l)
		}
	}
	t.Logf("round %2d: child ran %v (kill %v after %s), acked %d appends, %d closes, %d producer appends",
		round, ran.Round(time.Millisecond), delay, map[bool]string{true: "start", false: "ready"}[early], nA, nC, nP)
}

func crashTail(s string) string {
	if len(s) > 4000 {
		return "..." + s[len(s)-4000:]
	}
	return s
}

// crashVerify recovers dir in-process and checks every acknowledged
// operation of every round so far.
func crashVerify(t *testing.T, dir string, round int, model *crashModel, st *crashStats) {
	t.Helper()
	t0 := time.Now()
	e, err := engine.Open(dir, crashOptions())
	if err != nil {
		t.Errorf("round %d: recovery failed: %v", round, err)
		return
	}
	t1 := time.Now()
	defer func() {
		t2 := time.Now()
		if err := e.Close(); err != nil {
			t.Errorf("round %d: close: %v", round, err)
		}
		t.Logf("round %2d: recovered in %v, verified in %v, closed (checkpoint) in %v", round,
			t1.Sub(t0).Round(time.Millisecond), t2.Sub(t1).Round(time.Millisecond), time.Since(t2).Round(time.Millisecond))
	}()
	ctx := context.Background()
	paths := make([]string, 0, len(model.streams))
	for p := range model.streams {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		s := model.streams[path]
		errorf := func(format string, args ...any) {
			t.Errorf("round %d: %s: %s", round, path, fmt.Sprintf(format, args...))
		}
		info, err := e.Head(path)
		if err != nil {
			errorf("head: %v", err)
			continue
		}
		c, err := e.Read(path, engine.ReadFrom{Kind: engine.FromStart}, engine.ReadOptions{MaxBytes: 1 << 30})
		if err != nil {
			errorf("read: %v", err)
			continue
		}
		// The stored bytes, as views of the mappings (copying tens of
		// megabytes each round is what makes this slow under -race).
		data := newCrashViews(c.Data())
		releaseChunk := c.Release
		wire := c.Buffers()
		var wireLen int
		for _, b := range wire {
			wireLen += len(b)
		}
		next, upToDate, closed := c.Next, c.UpToDate, c.Closed
		if uint64(next) != uint64(data.len) || next != info.Tail || !upToDate || closed != info.Closed {
			errorf("read: next %d, %d bytes, up-to-date %v, closed %v; head tail %d closed %v",
				next, data.len, upToDate, closed, info.Tail, info.Closed)
			releaseChunk()
			continue
		}

		// The wire form is the stored bytes (JSON: as an array).
		wantWire := data.bufs
		if s.json {
			wantWire = [][]byte{[]byte("[]")}
			if data.len > 0 {
				wantWire = [][]byte{[]byte("[")}
				wantWire = append(wantWire, data.bufs...)
				last := wantWire[len(wantWire)-1]
				wantWire[len(wantWire)-1] = last[:len(last)-1] // the last comma
				wantWire = append(wantWire, []byte("]"))
			}
		}
		if !crashSameBytes(wire, wantWire) {
			errorf("wire body (%d bytes) does not match the stored bytes (%d)", wireLen, data.len)
		}

		// What an earlier recovery saw is still there, unchanged.
		if data.len < s.verified {
			errorf("tail %d is below %d, the tail an earlier recovery saw", data.len, s.verified)
			releaseChunk()
			continue
		}
		if got := data.hash(s.verified); got != s.fp {
			errorf("bytes below %d changed since an earlier recovery", s.verified)
			releaseChunk()
			continue
		}
		// Every newer stored byte belongs to a whole record or message.
		newPart := data.slice(s.verified, data.len)
		var bounds []int
		var perr error
		if s.json {
			bounds, perr = crashParseJSON(newPart)
		} else {
			bounds, perr = crashParseBin(newPart)
		}
		if perr != nil {
			errorf("stored bytes past %d are not whole records: %v (tail %d)", s.verified, perr, data.len)
		}
		for _, b := range bounds {
			s.bounds[s.verified+b] = true
		}
		isBound := s.bounds
		failedBefore := t.Failed()

		// Every acked append is there, byte-exact, at its acked offsets.
		sort.Slice(s.appends, func(i, j int) bool { return s.appends[i].start < s.appends[j].start })
		var maxEnd uint64
		for i, a := range s.appends {
			if i > 0 && a.start < s.appends[i-1].end {
				errorf("acked appends overlap: [%d,%d) (round %d) and [%d,%d) (round %d)",
					s.appends[i-1].start, s.appends[i-1].end, s.appends[i-1].round, a.start, a.end, a.round)
			}
			maxEnd = max(maxEnd, a.end)
			if a.end > uint64(data.len) {
				errorf("acked append [%d,%d) of round %d is beyond the tail %d", a.start, a.end, a.round, data.len)
				continue
			}
			if got := crashHash(data.slice(int(a.start), int(a.end))); got != a.hash {
				errorf("acked append [%d,%d) of round %d: crc32c %08x, want %08x", a.start, a.end, a.round, got, a.hash)
				continue
			}
			if !isBound[int(a.start)] || !isBound[int(a.end)] {
				errorf("acked append [%d,%d) of round %d does not fall on record boundaries", a.start, a.end, a.round)
			}
			st.appends++
			st.bytes += int64(a.end - a.start)
		}
		if uint64(info.Tail) < maxEnd {
			errorf("tail %d is below the last acked end %d", info.Tail, maxEnd)
		}

		// Closes.
		if s.closed {
			if !info.Closed {
				errorf("acked closed at %d, but recovered open at tail %d", s.final, info.Tail)
			}
			if uint64(info.Tail) != s.final {
				errorf("acked closed at %d, recovered tail is %d", s.final, info.Tail)
			}
			body := []byte("x")
			if s.json {
				body = []byte(`{"after":"close"}`)
			}
			if _, err := e.Append(ctx, path, body, engine.AppendOptions{}); !errors.Is(err, engine.ErrClosed) {
				errorf("append after acked close: err %v, want ErrClosed", err)
			}
			st.closes++
		}
		if !failedBefore && !t.Failed() {
			s.verified, s.fp = data.len, data.hash(data.len)
		}
		releaseChunk()

		// Producers acked in this round: a retry of the last acked request
		// is a duplicate and changes nothing. (Older rounds' producer states
		// were superseded by later epochs or by unacked appends.)
		for id, p := range s.prods {
			if p.round != round {
				continue
			}
			body := crashBinRecord(1, 0, 0, 0)
			if s.json {
				body = []byte(`{"retry":true}`)
			}
			res, err := e.Append(ctx, path, body, engine.AppendOptions{Producer: &engine.Producer{ID: id, Epoch: p.epoch, Seq: p.seq}})
			switch {
			case err == nil && res.Duplicate && res.Tail == info.Tail:
			case errors.Is(err, engine.ErrClosed) && info.Closed:
				// Retrying a non-closing request on a closed stream.
			default:
				errorf("retry of acked producer %s (%d,%d): res %+v err %v; tail was %d", id, p.epoch, p.seq, res, err, info.Tail)
			}
			if h, err := e.Head(path); err != nil || h.Tail != info.Tail {
				errorf("producer retry moved the tail from %d to %d (%v)", info.Tail, h.Tail, err)
			}
			st.producers++
		}
	}
}

// crashViews is a stream's stored bytes as consecutive views.
type crashViews struct {
	bufs [][]byte
	offs []int // offset of each view
	len  int
}

func newCrashViews(bufs [][]byte) *crashViews {
	v := &crashViews{bufs: bufs}
	for _, b := range bufs {
		v.offs = append(v.offs, v.len)
		v.len += len(b)
	}
	return v
}

// slice returns bytes [a,b): a subslice of one view when it lies in one
// (an append never spans stream segments), else a copy.
func (v *crashViews) slice(a, b int) []byte {
	if a >= b {
		return nil
	}
	i := sort.Search(len(v.offs), func(i int) bool { return v.offs[i] > a }) - 1
	if b-v.offs[i] <= len(v.bufs[i]) {
		return v.bufs[i][a-v.offs[i] : b-v.offs[i]]
	}
	out := make([]byte, 0, b-a)
	for ; i < len(v.bufs) && v.offs[i] < b; i++ {
		out = append(out, v.bufs[i][max(a-v.offs[i], 0):min(b-v.offs[i], len(v.bufs[i]))]...)
	}
	return out
}

// hash returns crashHash of bytes [0,n).
func (v *crashViews) hash(n int) uint64 {
	var c uint32
	for i, b := range v.bufs {
		if v.offs[i] >= n {
			break
		}
		c = crc32.Update(c, crashCastagnoli, b[:min(len(b), n-v.offs[i])])
	}
	return uint64(c)
}

// crashSameBytes reports whether two lists of slices hold the same bytes.
func crashSameBytes(a, b [][]byte) bool {
	var x, y []byte
	for {
		for len(x) == 0 && len(a) > 0 {
			x, a = a[0], a[1:]
		}
		for len(y) == 0 && len(b) > 0 {
			y, b = b[0], b[1:]
		}
		if len(x) == 0 || len(y) == 0 {
			return len(x) == 0 && len(y) == 0
		}
		n := min(len(x), len(y))
		if !bytes.Equal(x[:n], y[:n]) {
			return false
		}
		x, y = x[n:], y[n:]
	}
}

// crashParseJSON splits a JSON stream's stored bytes (from a message
// boundary) into messages, checks each is one of ours, and returns the
// offsets just past each message's comma.
func crashParseJSON(data []byte) ([]int, error) {
	if len(data) == 0 {
		return nil, nil
	}
	if data[len(data)-1] != ',' {
		return nil, fmt.Errorf("stored bytes do not end with ','")
	}
	wire := append(append([]byte("["), data[:len(data)-1]...), ']')
	var msgs []json.RawMessage
	if err := json.Unmarshal(wire, &msgs); err != nil {
		return nil, fmt.Errorf("not a valid JSON array when framed: %v", err)
	}
	var bounds []int
	pos := 0
	for i, m := range msgs {
		end := pos + len(m)
		if end >= len(data) || !bytes.Equal(data[pos:end], m) || data[end] != ',' {
			return bounds, fmt.Errorf("stored bytes at %d are not message %d followed by ','", pos, i)
		}
		var obj struct {
			W, R, N, K *int
			Pad        *string
		}
		if err := json.Unmarshal(m, &obj); err != nil || obj.W == nil || obj.N == nil || obj.Pad == nil {
			return bounds, fmt.Errorf("message %d at %d is not one of ours: %.100s", i, pos, m)
		}
		pos = end + 1
		bounds = append(bounds, pos)
	}
	if pos != len(data) {
		return bounds, fmt.Errorf("%d stored bytes, messages cover %d", len(data), pos)
	}
	return bounds, nil
}
