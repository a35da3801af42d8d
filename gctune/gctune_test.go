package gctune

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercent(t *testing.T) {
	for _, tc := range []struct {
		percent            int
		floor, live, roots uint64
		want               int
	}{
		{50, 64 << 20, 400 << 20, 1 << 20, 50},  // large heap: the configured percent
		{50, 64 << 20, 64 << 20, 0, 50},         // already at the floor
		{50, 90 << 20, 60 << 20, 0, 50},         // 60 MiB + 30 MiB: exactly the floor
		{50, 64 << 20, 16 << 20, 0, 300},        // 16 MiB + 48 MiB
		{50, 64 << 20, 16 << 20, 16 << 20, 150}, // 16 MiB + (32 MiB * 1.5)
		{100, 64 << 20, 8 << 20, 0, 700},        // 8 MiB + 56 MiB
		{50, 64 << 20, 1 << 10, 0, 10000},       // nearly empty: capped
		{50, 64 << 20, 0, 0, 10000},
	} {
		if got := Percent(tc.percent, tc.floor, tc.live, tc.roots); got != tc.want {
			t.Errorf("Percent(%d, %d, %d, %d) = %d, want %d", tc.percent, tc.floor, tc.live, tc.roots, got, tc.want)
		}
	}
}

func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// TestTunerRaisesPercentForSmallHeap: with a floor far above this test's
// heap, the percent rises after a collection; Stop puts it back.
func TestTunerRaisesPercentForSmallHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tu := Start(50, 1<<30)
	if got := gcPercent(); got != 50 {
		t.Fatalf("percent %d right after Start, want 50", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for gcPercent() == 50 {
		if time.Now().After(deadline) {
			t.Fatal("percent still 50 after collections")
		}
		runtime.GC()
		time.Sleep(5 * time.Millisecond) // the finalizer goroutine runs the tuner
	}
	if got := gcPercent(); got <= 50 {
		t.Fatalf("percent %d, want it raised", got)
	}
	tu.Stop()
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if got := gcPercent(); got != 50 {
		t.Fatalf("percent %d after Stop, want 50", got)
	}
}

// TestTunerWithoutFloor leaves the percent alone.
func TestTunerWithoutFloor(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	tu := Start(70, 0)
	defer tu.Stop()
	for range 3 {
		runtime.GC()
		time.Sleep(5 * time.Millisecond)
	}
	if got := gcPercent(); got != 70 {
		t.Fatalf("percent %d, want 70", got)
	}
}
