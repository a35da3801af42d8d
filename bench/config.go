package bench

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Config configures one run. Zero fields take the scenario's defaults.
type Config struct {
	URL      string // server base URL, e.g. http://127.0.0.1:4437
	Prefix   string // stream URL prefix; default /v1/stream/
	Scenario string
	Label    string // which server this is, for the report
	Round    int    // A/B round number, for the report

	Duration    time.Duration // timed phase; default 10 s
	Concurrency int           // writers / creators; default 32 (append-large: 4)
	Size        int           // message bytes; default 100 (append-large: 1 MiB)
	Readers     int           // catchup-read readers; default 4
	Prefill     int64         // catchup-read stream size; default 256 MiB
	Subscribers int           // fan-out subscribers; default 1000
	Rate        float64       // fan-out messages per second; default 100
	Drain       time.Duration // fan-out: how long to wait for deliveries after the writer stops; default 3 s
	Streams     int           // many-streams: how many; default 100,000

	PID     int           // server process to sample from /proc (0: none)
	Timeout time.Duration // response-header timeout per request; default 35 s (above a 30 s long-poll)
	MaxOps  int64         // hard bound on operations in one run; default 50,000,000
	Dir     string        // machine: directory on the disk to measure; default os.TempDir()
	// MachineMiB is how much the machine scenario writes sequentially; default 256.
	MachineMiB int
	// MachineSyncs is how many 4 KiB write+fdatasync the machine scenario
	// times (at most 3 s each way); default 2000.
	MachineSyncs int
	Cleanup      bool      // delete the streams a scenario made (not create-burst or many-streams)
	Log          io.Writer // progress messages; nil: none
}

type scenario struct {
	name string
	desc string
	run  func(r *runner) error
}

var scenarios = []scenario{
	{"append-small", "C writers, each on its own stream, 100-byte appends", runAppendSmall},
	{"append-shared", "C writers on one stream, 100-byte appends", runAppendShared},
	{"append-json", "C writers on JSON streams, each POST an array of 10 ~100-byte objects", runAppendJSON},
	{"append-large", "4 writers, each on its own stream, 1 MiB appends", runAppendLarge},
	{"create-burst", "C creators: PUT a new stream, then one POST", runCreateBurst},
	{"catchup-read", "prefill one stream, then R readers read it from -1 to Stream-Up-To-Date", runCatchup},
	{"fanout-sse", "S SSE subscribers on one stream; a pipelined writer appends every 1/rate s", runFanoutSSE},
	{"fanout-longpoll", "S long-poll subscribers on one stream; a pipelined writer appends every 1/rate s", runFanoutLongPoll},
	{"many-streams", "N streams with one append each: creates/s and server RSS per stream", runManyStreams},
	{"machine", "machine limits: 4 KiB write+fdatasync latency, 1 MiB write+fdatasync MB/s, memcpy GB/s", runMachine},
}

// Scenarios lists the scenario names with a one-line description each.
func Scenarios() []string {
	out := make([]string, 0, len(scenarios))
	for _, s := range scenarios {
		out = append(out, fmt.Sprintf("%-16s %s", s.name, s.desc))
	}
	return out
}

// ScenarioNames lists the scenario names.
func ScenarioNames() []string {
	out := make([]string, 0, len(scenarios))
	for _, s := range scenarios {
		out = append(out, s.name)
	}
	sort.Strings(out)
	return out
}

func lookup(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = "/v1/stream/"
	}
	if !strings.HasSuffix(c.Prefix, "/") {
		c.Prefix += "/"
	}
	c.URL = strings.TrimSuffix(c.URL, "/")
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 32
		if c.Scenario == "append-large" {
			c.Concurrency = 4
		}
	}
	if c.Size <= 0 {
		c.Size = 100
		if c.Scenario == "append-large" {
			c.Size = 1 << 20
		}
	}
	if c.Readers <= 0 {
		c.Readers = 4
	}
	if c.Prefill <= 0 {
		c.Prefill = 256 << 20
	}
	if c.Subscribers <= 0 {
		c.Subscribers = 1000
	}
	if c.Rate <= 0 {
		c.Rate = 100
	}
	if c.Drain <= 0 {
		c.Drain = 3 * time.Second
	}
	if c.Streams <= 0 {
		c.Streams = 100_000
	}
	if c.Timeout <= 0 {
		c.Timeout = 35 * time.Second
	}
	if c.MaxOps <= 0 {
		c.MaxOps = 50_000_000
	}
	if c.MachineMiB <= 0 {
		c.MachineMiB = 256
	}
	if c.MachineSyncs <= 0 {
		c.MachineSyncs = 2000
	}
	return c
}

// runID names a run's streams: bench-<16 hex digits>, so that runs against
// the same server never collide.
func runID() string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Sprintf("bench-%x", time.Now().UnixNano())
	}
	return "bench-" + hex.EncodeToString(b[:])
}
