package engine

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

func TestRecoverEmptyNextSegment(t *testing.T) {
	dir := t.TempDir()
	e := openTest(t, dir, &Options{WALSegmentSize: 64 << 10, CheckpointInterval: 1 << 40})
	ctx := context.Background()
	e.Create(ctx, "s", CreateOptions{})
	body := make([]byte, 1000)
	for i := 0; i < 100; i++ {
		if _, err := e.Append(ctx, "s", body, AppendOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	img := copyTree(t, dir)
	e.Close()
	bases, _ := listWAL(filepath.Join(img, "wal"))
	// Empty every file after the first: the first ends with a rollover, so the log must
	// continue in a fresh segment, keeping what came before.
	for _, b := range bases[1:] {
		os.Truncate(filepath.Join(img, "wal", walName(b)), 0)
	}
	e2, err := Open(img, &Options{WALSegmentSize: 64 << 10})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer e2.Close()
	if _, err := e2.Append(ctx, "s", body, AppendOptions{}); err != nil {
		t.Fatalf("append after recovery: %v", err)
	}
}
