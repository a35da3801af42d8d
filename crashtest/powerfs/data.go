package powerfs

import (
	"bytes"
	"io"
	"math"
	"os"
	"slices"
	"syscall"
)

// pageSize is the granularity of the volatile overlay: the kernel's page
// size, so that a written-back page of a mapping is one overlay page.
const pageSize = 4096

// zeroPage stands for an overlay page of zeros (the zeros a program writes
// where fallocate is missing): no memory per page, and no bytes written to
// the backing file past its end at a sync (the file is extended instead).
// It is never written to; a write into it copies it first.
var zeroPage = new([pageSize]byte)

// noHide is hideFrom when no backing byte is hidden.
const noHide = math.MaxInt64

// fileData is one file's content: the backing file, which holds the durable
// content, overlaid with the pages written since the last sync.
//
// Byte x of the file (x < size) is the overlay page's byte if its page is
// dirty, else the backing file's byte if x < min(hideFrom, backingSize),
// else zero. Invariants: size >= backingSize whenever hideFrom == noHide
// (a truncation below the backing size hides the backing file from there),
// and an overlay page's bytes at or past size are zero.
type fileData struct {
	path        string // backing file
	backing     *os.File
	size        int64
	backingSize int64
	hideFrom    int64
	pages       map[int64]*[pageSize]byte
}

func newFileData(path string, backingSize int64) *fileData {
	return &fileData{path: path, size: backingSize, backingSize: backingSize, hideFrom: noHide,
		pages: map[int64]*[pageSize]byte{}}
}

// dirty reports whether the file differs from its durable content.
func (d *fileData) dirty() bool {
	return len(d.pages) > 0 || d.hideFrom != noHide || d.size != d.backingSize
}

// file opens the backing file on first use.
func (d *fileData) file() (*os.File, error) {
	if d.backing == nil {
		f, err := os.OpenFile(d.path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		d.backing = f
	}
	return d.backing, nil
}

// closeBacking closes the backing file's descriptor (it is reopened when
// needed): the daemon holds one only while the file is open.
func (d *fileData) closeBacking() {
	if d.backing != nil {
		d.backing.Close()
		d.backing = nil
	}
}

// readBacking fills p with the backing file's bytes at off, zeros where it
// ends early.
func (d *fileData) readBacking(p []byte, off int64) error {
	f, err := d.file()
	if err != nil {
		return err
	}
	n, err := f.ReadAt(p, off)
	if err == io.EOF {
		err = nil
	}
	clear(p[n:])
	return err
}

// read copies the file's bytes at off into p and returns how many there are.
func (d *fileData) read(p []byte, off int64) (int, error) {
	if off >= d.size {
		return 0, nil
	}
	n := min(int64(len(p)), d.size-off)
	p = p[:n]
	if lim := min(d.hideFrom, d.backingSize); off < lim {
		k := min(n, lim-off)
		if err := d.readBacking(p[:k], off); err != nil {
			return 0, err
		}
		clear(p[k:])
	} else {
		clear(p)
	}
	if len(d.pages) == 0 {
		return int(n), nil
	}
	for pg := off / pageSize; pg*pageSize < off+n; pg++ {
		page := d.pages[pg]
		if page == nil {
			continue
		}
		ps := pg * pageSize
		lo, hi := max(off, ps), min(off+n, ps+pageSize)
		copy(p[lo-off:hi-off], page[lo-ps:hi-ps])
	}
	return int(n), nil
}

// page returns overlay page pg for writing, loading it from the file's
// current content (and copying the shared zero page) first.
func (d *fileData) page(pg int64) (*[pageSize]byte, error) {
	p := d.pages[pg]
	if p != nil && p != zeroPage {
		return p, nil
	}
	fresh := new([pageSize]byte)
	if p == nil {
		off := pg * pageSize
		if lim := min(d.hideFrom, d.backingSize, d.size); off < lim {
			if err := d.readBacking(fresh[:min(pageSize, lim-off)], off); err != nil {
				return nil, err
			}
		}
	}
	d.pages[pg] = fresh
	return fresh, nil
}

// write stores p at off in the overlay.
func (d *fileData) write(p []byte, off int64) error {
	end := off + int64(len(p))
	for pos := off; pos < end; {
		pg := pos / pageSize
		ps := pg * pageSize
		lo, hi := pos-ps, min(int64(pageSize), end-ps)
		chunk := p[pos-off : pos-off+hi-lo]
		if lo == 0 && hi == pageSize && bytes.Equal(chunk, zeroPage[:]) {
			d.pages[pg] = zeroPage
		} else {
			page, err := d.page(pg)
			if err != nil {
				return err
			}
			copy(page[lo:hi], chunk)
		}
		pos += hi - lo
	}
	d.size = max(d.size, end)
	return nil
}

// truncate sets the size. Bytes past a shrunk size read as zero if the file
// grows again: the partial last page is cleared past it, later overlay pages
// dropped and the backing file hidden from it.
func (d *fileData) truncate(size int64) error {
	if size < d.size {
		if r := size % pageSize; r != 0 {
			pg := size / pageSize
			if d.pages[pg] != nil || size-r < min(d.hideFrom, d.backingSize) {
				page, err := d.page(pg)
				if err != nil {
					return err
				}
				clear(page[r:])
			}
		}
		for pg := range d.pages {
			if pg*pageSize >= size {
				delete(d.pages, pg)
			}
		}
		d.hideFrom = min(d.hideFrom, size)
	}
	d.size = size
	return nil
}

// Linux fallocate modes the file system takes.
const (
	fallocKeepSize  = 0x01
	fallocPunchHole = 0x02
)

// fallocate handles mode 0 (extend the size to off+n), KEEP_SIZE (nothing to
// do: no space is reserved) and PUNCH_HOLE|KEEP_SIZE (zero the range).
func (d *fileData) fallocate(mode uint32, off, n int64) error {
	switch mode {
	case 0:
		d.size = max(d.size, off+n)
		return nil
	case fallocKeepSize:
		return nil
	case fallocPunchHole | fallocKeepSize:
		for pos, end := off, min(off+n, d.size); pos < end; {
			k := min(end-pos, pageSize-pos%pageSize)
			if err := d.write(zeroPage[:k], pos); err != nil {
				return err
			}
			pos += k
		}
		return nil
	}
	return syscall.EOPNOTSUPP
}

// flushBuf is the most a sync writes to the backing file at once.
const flushBuf = 1 << 20

// sync makes the file's current content durable: the backing file gets the
// hidden range cut off, the dirty pages and the size. It returns the bytes
// written. No fsync of the backing file: the host does not lose power.
func (d *fileData) sync() (int64, error) {
	if !d.dirty() {
		return 0, nil
	}
	f, err := d.file()
	if err != nil {
		return 0, err
	}
	if d.hideFrom < d.backingSize {
		if err := f.Truncate(d.hideFrom); err != nil {
			return 0, err
		}
		d.backingSize = d.hideFrom
	}
	pgs := make([]int64, 0, len(d.pages))
	for pg := range d.pages {
		pgs = append(pgs, pg)
	}
	slices.Sort(pgs)
	var written int64
	cur := d.backingSize // the backing file's size as the runs extend it
	var run []byte
	var runOff int64
	flush := func() error {
		if len(run) == 0 {
			return nil
		}
		if _, err := f.WriteAt(run, runOff); err != nil {
			return err
		}
		written += int64(len(run))
		cur = max(cur, runOff+int64(len(run)))
		run = run[:0]
		return nil
	}
	for _, pg := range pgs {
		off := pg * pageSize
		n := min(pageSize, d.size-off)
		page := d.pages[pg]
		if page == zeroPage && off >= max(cur, runOff+int64(len(run))) {
			// Past the end: extending the file makes these zeros.
			if err := flush(); err != nil {
				return written, err
			}
			continue
		}
		if len(run) > 0 && (runOff+int64(len(run)) != off || len(run) >= flushBuf) {
			if err := flush(); err != nil {
				return written, err
			}
		}
		if len(run) == 0 {
			runOff = off
		}
		run = append(run, page[:n]...)
	}
	if err := flush(); err != nil {
		return written, err
	}
	if cur != d.size {
		if err := f.Truncate(d.size); err != nil {
			return written, err
		}
	}
	d.backingSize, d.hideFrom = d.size, noHide
	clear(d.pages)
	return written, nil
}
