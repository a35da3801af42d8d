package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat. It
// is 100 on every Linux architecture Go supports (sysconf needs cgo).
const clockTicks = 100

// ProcSample is one reading of a process from /proc.
type ProcSample struct {
	CPUSeconds float64 // user + system
	RSSBytes   int64   // VmRSS
	HWMBytes   int64   // VmHWM: peak RSS over the process's life
	AnonBytes  int64   // RssAnon: heap, stacks (what the process allocated)
	FileBytes  int64   // RssFile: resident pages of mapped files (page cache the process maps)
	Threads    int
}

// ReadProc reads /proc/PID/stat and /proc/PID/status (PID 0: this process).
func ReadProc(pid int) (ProcSample, error) {
	dir := "/proc/self"
	if pid > 0 {
		dir = "/proc/" + strconv.Itoa(pid)
	}
	var s ProcSample
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, err
	}
	// The command name (field 2) is parenthesised and may hold spaces:
	// count fields after the last ')'. Field 3 (state) is then index 0,
	// utime (14) index 11, stime (15) index 12.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return s, errors.New("malformed " + dir + "/stat")
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 13 {
		return s, errors.New("short " + dir + "/stat")
	}
	ut, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	st, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err1 != nil || err2 != nil {
		return s, fmt.Errorf("%s/stat: utime %q stime %q", dir, f[11], f[12])
	}
	s.CPUSeconds = float64(ut+st) / clockTicks

	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, err
	}
	for _, line := range bytes.Split(status, []byte("\n")) {
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		switch string(k) {
		case "VmRSS":
			s.RSSBytes = parseKB(v)
		case "VmHWM":
			s.HWMBytes = parseKB(v)
		case "RssAnon":
			s.AnonBytes = parseKB(v)
		case "RssFile":
			s.FileBytes = parseKB(v)
		case "Threads":
			s.Threads, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	return s, nil
}

func parseKB(v []byte) int64 {
	v = bytes.TrimSpace(v)
	v = bytes.TrimSuffix(v, []byte("kB"))
	n, _ := strconv.ParseInt(string(bytes.TrimSpace(v)), 10, 64)
	return n << 10
}

// procWatch samples a server process every 100 ms during the timed phase,
// for its CPU seconds and RSS peak.
type procWatch struct {
	pid   int
	start ProcSample
	err   error

	mu   sync.Mutex
	peak int64
	last ProcSample
	stop chan struct{}
	done chan struct{}
}

// watchProc starts sampling pid; nil when pid is 0.
func watchProc(pid int) *procWatch {
	if pid <= 0 {
		return nil
	}
	w := &procWatch{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	w.start, w.err = ReadProc(pid)
	w.peak = w.start.RSSBytes
	w.last = w.start
	go w.loop()
	return w
}

func (w *procWatch) loop() {
	defer close(w.done)
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			s, err := ReadProc(w.pid)
			if err != nil {
				continue
			}
			w.mu.Lock()
			w.last = s
			w.peak = max(w.peak, s.RSSBytes)
			w.mu.Unlock()
		}
	}
}

// finish stops sampling and returns the server's figures for ops over
// elapsed seconds.
func (w *procWatch) finish(ops int64, elapsed float64) *ServerStats {
	if w == nil {
		return nil
	}
	close(w.stop)
	<-w.done
	st := &ServerStats{PID: w.pid}
	end, err := ReadProc(w.pid)
	if w.err != nil || err != nil {
		st.SampleError = fmt.Sprint(errors.Join(w.err, err))
		return st
	}
	st.CPUS = round3(end.CPUSeconds - w.start.CPUSeconds)
	if elapsed > 0 {
		st.CPUPct = round3(100 * st.CPUS / elapsed)
	}
	if st.CPUS > 0 {
		st.OpsPerCPUS = round3(float64(ops) / st.CPUS)
	}
	st.RSSStartMB = mb(w.start.RSSBytes)
	st.RSSEndMB = mb(end.RSSBytes)
	st.RSSPeakMB = mb(max(w.peak, end.RSSBytes))
	st.RSSAnonEndMB = mb(end.AnonBytes)
	st.RSSFileEndMB = mb(end.FileBytes)
	st.Threads = end.Threads
	return st
}

func mb(b int64) float64 { return round3(float64(b) / 1e6) }

// selfCPU is this process's CPU seconds (0 when /proc is unreadable).
func selfCPU() float64 {
	s, err := ReadProc(0)
	if err != nil {
		return 0
	}
	return s.CPUSeconds
}
