package powerfs

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// TestFileDataModel drives fileData with random writes, truncations,
// fallocates, syncs and power cuts and holds it against two byte slices:
// the volatile content and the durable one.
func TestFileDataModel(t *testing.T) {
	dir := t.TempDir()
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 7))
		path := filepath.Join(dir, fmt.Sprint(seed))
		d := newFileData(path, 0)
		var vol, dur []byte
		check := func(step int, what string) {
			t.Helper()
			if d.size != int64(len(vol)) {
				t.Fatalf("seed %d step %d (%s): size %d, want %d", seed, step, what, d.size, len(vol))
			}
			got := make([]byte, len(vol)+100)
			off := int64(0)
			if len(vol) > 0 {
				off = rng.Int64N(int64(len(vol)))
			}
			n, err := d.read(got, off)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:n], vol[off:]) {
				t.Fatalf("seed %d step %d (%s): read at %d differs", seed, step, what, off)
			}
		}
		for step := range 300 {
			var what string
			switch x := rng.IntN(100); {
			case x < 45:
				off := rng.Int64N(5 * pageSize)
				n := rng.IntN(3 * pageSize)
				p := make([]byte, n)
				if rng.IntN(3) > 0 { // else zeros (the zero page)
					for i := range p {
						p[i] = byte(rng.IntN(255) + 1)
					}
				}
				what = "write"
				if err := d.write(p, off); err != nil {
					t.Fatal(err)
				}
				if end := off + int64(n); end > int64(len(vol)) {
					vol = append(vol, make([]byte, end-int64(len(vol)))...)
				}
				copy(vol[off:], p)
			case x < 60:
				size := rng.Int64N(6 * pageSize)
				what = "truncate"
				if err := d.truncate(size); err != nil {
					t.Fatal(err)
				}
				if size < int64(len(vol)) {
					vol = vol[:size]
				} else {
					vol = append(vol, make([]byte, size-int64(len(vol)))...)
				}
			case x < 70:
				off, n := rng.Int64N(5*pageSize), rng.Int64N(2*pageSize)+1
				mode := []uint32{0, fallocKeepSize, fallocPunchHole | fallocKeepSize}[rng.IntN(3)]
				what = "fallocate"
				if err := d.fallocate(mode, off, n); err != nil {
					t.Fatal(err)
				}
				switch mode {
				case 0:
					if off+n > int64(len(vol)) {
						vol = append(vol, make([]byte, off+n-int64(len(vol)))...)
					}
				case fallocPunchHole | fallocKeepSize:
					if off < int64(len(vol)) {
						clear(vol[off:min(off+n, int64(len(vol)))])
					}
				}
			case x < 85:
				what = "sync"
				if _, err := d.sync(); err != nil {
					t.Fatal(err)
				}
				dur = bytes.Clone(vol)
				if d.dirty() {
					t.Fatalf("seed %d step %d: dirty after sync", seed, step)
				}
			default:
				what = "power cut"
				d.closeBacking()
				size, err := fileSize(path)
				if err != nil {
					t.Fatal(err)
				}
				d = newFileData(path, size)
				vol = bytes.Clone(dur)
			}
			check(step, what)
		}
		d.closeBacking()
	}
}
