package engine

import (
	"context"
	"errors"
	"sync"
	"testing"
)

// inParallel runs fn(0) to fn(n-1) in n goroutines and, once all have
// returned, gives the first error.
func inParallel(n int, fn func(g int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for g := range n {
		wg.Go(func() {
			if err := fn(g); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func openTest(t *testing.T, dir string, o *Options) *Engine {
	t.Helper()
	e, err := Open(dir, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return e
}

func readAll(t *testing.T, e *Engine, path string) string {
	t.Helper()
	c, err := e.Read(path, ReadFrom{Kind: FromStart}, ReadOptions{MaxBytes: 1 << 30})
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	defer c.Release()
	return string(c.Bytes())
}

func TestSmokeReopen(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []Durability{DurabilitySync, DurabilityMemory} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			e := openTest(t, dir, &Options{Durability: mode})
			if _, created, err := e.Create(ctx, "a", CreateOptions{ContentType: "text/plain", Data: []byte("hello ")}); err != nil || !created {
				t.Fatalf("create: %v %v", created, err)
			}
			if _, _, err := e.Create(ctx, "j", CreateOptions{ContentType: "application/json"}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 100; i++ {
				if _, err := e.Append(ctx, "a", []byte("world"), AppendOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e.Append(ctx, "j", []byte(`[{"a": 1}, [2, 3]]`), AppendOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := readAll(t, e, "j"); got != `[{"a":1},[2,3]]` {
				t.Fatalf("json read %q", got)
			}
			want := readAll(t, e, "a")
			if len(want) != 6+500 {
				t.Fatalf("len %d", len(want))
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if mode == DurabilityMemory {
				return
			}
			e = openTest(t, dir, &Options{Durability: mode})
			defer e.Close()
			if got := readAll(t, e, "a"); got != want {
				t.Fatalf("after reopen %q", got)
			}
			if got := readAll(t, e, "j"); got != `[{"a":1},[2,3]]` {
				t.Fatalf("json after reopen %q", got)
			}
			if _, err := e.Append(ctx, "a", []byte("!"), AppendOptions{Close: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := e.Append(ctx, "a", []byte("x"), AppendOptions{}); !errors.Is(err, ErrClosed) {
				t.Fatalf("append after close: %v", err)
			}
		})
	}
}
