package crashtest

// Power-loss torture over HTTP.
//
// TestHTTPPowerLossTorture is the crash torture of http_crash_test.go (the
// same load, model and checks: nothing acknowledged lost, nothing
// duplicated, closes final, deletes durable, offsets only growing, what a
// reader saw still there) with the server's --data-dir on powerfs
// (crashtest/powerfs), a FUSE file system that keeps every write in memory
// until it is synced. Every SIGKILL at a random moment, and every graceful
// stop, is followed by a power cut: what was not synced is dropped (dirty
// pages the kernel still writes back after the kill included), the file
// system is unmounted and mounted again from its durable state alone (a
// fresh superblock: no page cache survives), and the server restarts on it.
//
// What is durable there: a file's content and size once fsync, fdatasync or
// msync(MS_SYNC) reached it (mapped writes reach the daemon when the kernel
// writes the pages back); not what syncfs(2) or sync(2) flushed, because the
// kernel does not forward them to a FUSE daemon, as on every FUSE file
// system but virtiofs; a create, rename or remove once its directory, or the
// file it names, is synced (with the earlier operations it depends on: a
// fast-commit journal, see powerfs's package doc). fallocate works unless
// DURASTREAM_TORTURE_NOFALLOCATE=1 (then the engine writes zeros); O_DIRECT
// opens fail with EINVAL (the engine falls back to buffered writes) unless
// DURASTREAM_TORTURE_DIRECTIO=1. If the server has --checkpoint-interval, each
// start gets a random one of 100-500 ms, so checkpoints (which must sync the
// stream files before the commit log behind them goes) happen inside rounds.
//
// TestHTTPPowerLossNegativeControl shows the mode can fail: it builds the
// server with the durastream_unsafe_nowalsync tag, whose committer never
// syncs the commit log, and expects lost acknowledged writes.
//
// It needs /dev/fuse and root (the mount is made with mount(2): there is no
// fusermount); elsewhere it skips, saying why.
//
//	go test -race -count=1 -v -run 'TestHTTPPowerLoss' ./crashtest/
//	DURASTREAM_TORTURE_ROUNDS=200 go test -count=1 -v -timeout 60m -run TestHTTPPowerLossTorture ./crashtest/
//
// Environment: what TestHTTPCrashTorture takes (DURASTREAM_TORTURE_SEED,
// _ROUNDS (default 12 here), _BUDGET (default 60s here when ROUNDS is not
// set), _GRACEFUL, _RACE, _TAGS, _BIN; _DIR keeps a copy of the durable data
// directory after the run), and
//
//	DURASTREAM_TORTURE_NOFALLOCATE   1: fallocate fails with EOPNOTSUPP
//	DURASTREAM_TORTURE_DIRECTIO      1: O_DIRECT opens are accepted
//	DURASTREAM_TORTURE_JOURNAL       which pending creates, renames and
//	                                 removes a sync commits: per-inode (those
//	                                 on the synced file or directory: catches
//	                                 a missing directory sync), global (all:
//	                                 ext4 without fast_commit; catches a name
//	                                 made durable before its file's data), or
//	                                 mixed (default: each power-on picks one)
//	DURASTREAM_TORTURE_CHECKPOINT    the server's --checkpoint-interval for
//	                                 every start ("default": the server's own)
//	DURASTREAM_TORTURE_NEGATIVE_ROUNDS  rounds of the negative control
//	                                 (default 3; 0 skips it)

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/durastream/durastream/crashtest/powerfs"
)

// unsafeNoWALSyncTag builds a server whose commit log is never synced.
const unsafeNoWALSyncTag = "durastream_unsafe_nowalsync"

// powerLoss is the file system the power-loss torture's server runs on.
type powerLoss struct {
	t     *testing.T
	disk  *powerfs.Disk
	mnt   *powerfs.Mount
	dir   string // the mount point
	cuts  int
	total powerfs.Stats // summed over the power-ons
	keep  string        // copy the durable data directory here at the end
	mixed *rand.Rand    // the journal mode of each power-on, if mixed
	modes map[powerfs.JournalMode]int
}

// newPowerLoss mounts a fresh powerfs configured by the environment, or
// skips the test where FUSE cannot be mounted.
func newPowerLoss(t *testing.T, seed uint64) *powerLoss {
	if why := powerfs.Available(); why != "" {
		t.Skipf("power-loss torture skipped: %s", why)
	}
	var o powerfs.Options
	o.NoFallocate = os.Getenv("DURASTREAM_TORTURE_NOFALLOCATE") == "1"
	o.DirectIO = os.Getenv("DURASTREAM_TORTURE_DIRECTIO") == "1"
	p := &powerLoss{t: t, modes: map[powerfs.JournalMode]int{}}
	journal := os.Getenv("DURASTREAM_TORTURE_JOURNAL")
	switch journal {
	case "", "mixed":
		journal = "mixed"
		p.mixed = rand.New(rand.NewPCG(seed, 0x6a726e6c))
	case "per-inode":
	case "global":
		o.Journal = powerfs.JournalGlobal
	default:
		t.Fatalf("DURASTREAM_TORTURE_JOURNAL=%q: want per-inode, global or mixed", journal)
	}
	var err error
	if p.disk, err = powerfs.NewDisk(t.TempDir(), o); err != nil {
		t.Fatal(err)
	}
	p.dir = t.TempDir()
	if err := p.powerOn(); err != nil {
		t.Skipf("power-loss torture skipped: cannot mount a FUSE file system here: %v", err)
	}
	t.Logf("powerfs at %s: fallocate %s, O_DIRECT %s, journal %s", p.dir,
		map[bool]string{false: "works", true: "refused"}[o.NoFallocate],
		map[bool]string{false: "refused", true: "accepted"}[o.DirectIO], journal)
	t.Cleanup(p.close)
	return p
}

// powerOn mounts the durable state.
func (p *powerLoss) powerOn() error {
	j := powerfs.JournalPerInode
	if p.mixed != nil {
		if p.mixed.IntN(2) == 1 {
			j = powerfs.JournalGlobal
		}
		p.disk.SetJournal(j)
	}
	m, err := p.disk.Mount(p.dir)
	if err != nil {
		return err
	}
	p.mnt = m
	p.modes[j]++
	return nil
}

// cut cuts the power and powers the file system on again.
func (p *powerLoss) cut() error {
	st, err := p.mnt.PowerCut()
	p.add(st)
	p.cuts++
	p.mnt = nil
	if err != nil {
		return err
	}
	return p.powerOn()
}

func (p *powerLoss) add(st powerfs.Stats) {
	t := &p.total
	t.Writes += st.Writes
	t.WriteBytes += st.WriteBytes
	t.Fsyncs += st.Fsyncs
	t.DirSyncs += st.DirSyncs
	t.SyncedBytes += st.SyncedBytes
	t.CommittedOps += st.CommittedOps
	t.FallocRefused += st.FallocRefused
	t.DirectRefused += st.DirectRefused
	t.DroppedFiles += st.DroppedFiles
	t.DroppedBytes += st.DroppedBytes
	t.DroppedOps += st.DroppedOps
	t.IgnoredWrites += st.IgnoredWrites
}

// close cuts the power a last time (the server is dead by now: the
// torture's own cleanup, registered later, ran first) and copies the
// durable data directory out if asked.
func (p *powerLoss) close() {
	if p.mnt != nil {
		st, err := p.mnt.PowerCut()
		p.add(st)
		p.mnt = nil
		if err != nil {
			p.t.Errorf("final power cut: %v", err)
			return
		}
	}
	if p.keep == "" {
		return
	}
	m, err := p.disk.Mount(p.dir)
	if err != nil {
		p.t.Errorf("mount to copy the data directory: %v", err)
		return
	}
	defer m.PowerCut()
	if err := copyTree(filepath.Join(p.dir, "data"), p.keep); err != nil {
		p.t.Errorf("copy the durable data directory: %v", err)
		return
	}
	p.t.Logf("durable data directory copied to %s", p.keep)
}

func (p *powerLoss) summary(tt *torture) {
	st := &tt.m.st
	acked := 0
	for _, n := range st.acked {
		acked += n
	}
	s := p.total
	if p.mnt != nil {
		live := p.mnt.Stats()
		s.Writes += live.Writes
		s.WriteBytes += live.WriteBytes
		s.Fsyncs += live.Fsyncs
		s.DirSyncs += live.DirSyncs
	}
	if p.mixed != nil {
		p.t.Logf("power loss: journal per-inode in %d power-ons, global in %d", p.modes[powerfs.JournalPerInode], p.modes[powerfs.JournalGlobal])
	}
	p.t.Logf("power loss: %d power cuts; they dropped %.1f MiB of unsynced pages in %d files and %d namespace operations; %d writes arrived after a cut (ignored)",
		p.cuts, float64(s.DroppedBytes)/(1<<20), s.DroppedFiles, s.DroppedOps, s.IgnoredWrites)
	p.t.Logf("power loss: the file system saw %d writes (%.1f MiB), %d fsyncs, %d directory fsyncs (%.1f MiB made durable, %d namespace operations committed); refused %d fallocates, %d O_DIRECT opens",
		s.Writes, float64(s.WriteBytes)/(1<<20), s.Fsyncs, s.DirSyncs, float64(s.SyncedBytes)/(1<<20), s.CommittedOps, s.FallocRefused, s.DirectRefused)
	p.t.Logf("power-loss torture: seed %d, %d rounds, %d acknowledged writes (appends, creates, forks, closes, deletes), lost %d, duplicated %d, failures %d",
		tt.cfg.seed, st.rounds, acked, st.lost, st.duplicated, tt.m.nFailures())
}

// powerCut cuts the power in a power-loss torture (nothing otherwise); false
// if that failed.
func (tt *torture) powerCut(round int, after string) bool {
	if tt.power == nil {
		return true
	}
	if err := tt.power.cut(); err != nil {
		tt.m.fail("round %d: power cut %s: %v", round, after, err)
		return false
	}
	return true
}

// checkpointArgs gives each server start a --checkpoint-interval, if the
// server has the flag: random in [100ms, 500ms] (from its own generator, so
// the plan is the SIGKILL torture's), or DURASTREAM_TORTURE_CHECKPOINT.
func checkpointArgs(t *testing.T, bin string, seed uint64) func() []string {
	v := os.Getenv("DURASTREAM_TORTURE_CHECKPOINT")
	if v == "default" {
		return nil
	}
	help, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	if !strings.Contains(string(help), "-checkpoint-interval") {
		t.Logf("the server has no --checkpoint-interval: checkpoints only at graceful stops")
		return nil
	}
	if v != "" {
		if _, err := time.ParseDuration(v); err != nil {
			t.Fatalf("DURASTREAM_TORTURE_CHECKPOINT=%q: %v", v, err)
		}
		return func() []string { return []string{"--checkpoint-interval", v} }
	}
	rng := rand.New(rand.NewPCG(seed, 0x636b7074))
	return func() []string {
		d := time.Duration(100+rng.IntN(401)) * time.Millisecond
		return []string{"--checkpoint-interval", d.String()}
	}
}

// powerLossConfig is the torture's configuration with this mode's defaults.
func powerLossConfig(t *testing.T) tortureConfig {
	cfg := loadTortureConfig(t)
	if os.Getenv("DURASTREAM_TORTURE_ROUNDS") == "" {
		cfg.rounds = 12
		if os.Getenv("DURASTREAM_TORTURE_BUDGET") == "" {
			cfg.budget = 60 * time.Second
		}
	}
	return cfg
}

func TestHTTPPowerLossTorture(t *testing.T) {
	if testing.Short() {
		t.Skip("power-loss torture builds the server and runs for a minute; skipped with -short")
	}
	cfg := powerLossConfig(t)
	p := newPowerLoss(t, cfg.seed)
	tt := newTorture(t, cfg)
	tt.power = p
	tt.data = filepath.Join(p.dir, "data")
	tt.serverArgs = checkpointArgs(t, tt.bin, cfg.seed)
	if cfg.dir != "" {
		p.keep = filepath.Join(cfg.dir, fmt.Sprintf("powerloss-%d-%d", cfg.seed, time.Now().Unix()))
	}
	tt.execute()
	p.summary(tt)
}

// TestHTTPPowerLossNegativeControl: a server that acknowledges appends
// without syncing the commit log must lose some of them to a power cut, or
// the power-loss torture could not catch a missing sync.
func TestHTTPPowerLossNegativeControl(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the server; skipped with -short")
	}
	rounds := 3
	if v := os.Getenv("DURASTREAM_TORTURE_NEGATIVE_ROUNDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			t.Fatalf("DURASTREAM_TORTURE_NEGATIVE_ROUNDS=%q: want a non-negative integer", v)
		}
		rounds = n
	}
	if rounds == 0 {
		t.Skip("DURASTREAM_TORTURE_NEGATIVE_ROUNDS=0")
	}
	cfg := loadTortureConfig(t)
	p := newPowerLoss(t, cfg.seed)
	cfg.rounds, cfg.budget, cfg.every, cfg.bin = rounds, 0, 0, ""
	cfg.tags = strings.TrimPrefix(cfg.tags+","+unsafeNoWALSyncTag, ",")
	tt := newTorture(t, cfg)
	tt.power = p
	tt.data = filepath.Join(p.dir, "data")
	tt.serverArgs = checkpointArgs(t, tt.bin, cfg.seed)
	tt.expectFailures = true
	tt.execute()
	p.summary(tt)
	if tt.m.st.lost == 0 {
		t.Errorf("negative control: a server built with -tags %s (no commit-log sync) lost no acknowledged write in %d rounds with power cuts: the power-loss torture cannot catch a missing sync",
			unsafeNoWALSyncTag, tt.m.st.rounds)
	} else {
		t.Logf("negative control: as expected, the server without commit-log syncs lost %d acknowledged writes", tt.m.st.lost)
	}
}

// copyTree copies the directory tree at src to dst.
func copyTree(src, dst string) error {
	return filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}
