package powerfs

import (
	"cmp"
	"slices"
)

// The namespace journal: create, mkdir, unlink, rmdir and rename change the
// mount's directories at once (the volatile namespace) and append an op
// here; a sync takes the ops it commits (with everything they depend on)
// and the Disk applies them to the durable namespace in journal order.
// Because every op taken drags along every earlier op on the same entry,
// the same inode or the directory it changes, each entry's durable history
// is a prefix of its volatile one: the durable namespace is always one a
// journaling file system could have left.

type opKind uint8

const (
	opCreate opKind = iota // a new inode (file or directory) named dir/name
	opRemove               // dir/name (naming ino) removed
	opRename               // dir/name renamed to toDir/toName
)

type op struct {
	seq      uint64
	kind     opKind
	dir      uint64 // the entry's directory (a rename's old one)
	name     string
	toDir    uint64 // a rename's new entry
	toName   string
	ino      uint64 // the inode named
	replaced uint64 // a rename's target's old inode (0: none)
	mode     uint32 // opCreate: the new inode's mode
	taken    bool
}

type entryKey struct {
	dir  uint64
	name string
}

// journal holds the pending (uncommitted) ops, indexed by what they touch.
// Guarded by Mount.mu.
type journal struct {
	seq     uint64
	pending []*op
	byIno   map[uint64][]*op // by ino and replaced
	byKey   map[entryKey][]*op
	byDir   map[uint64][]*op // by dir and toDir
}

func newJournal() *journal {
	return &journal{byIno: map[uint64][]*op{}, byKey: map[entryKey][]*op{}, byDir: map[uint64][]*op{}}
}

func (j *journal) add(o *op) {
	j.seq++
	o.seq = j.seq
	j.pending = append(j.pending, o)
	j.index(o)
}

func (j *journal) index(o *op) {
	j.byIno[o.ino] = append(j.byIno[o.ino], o)
	j.byKey[entryKey{o.dir, o.name}] = append(j.byKey[entryKey{o.dir, o.name}], o)
	j.byDir[o.dir] = append(j.byDir[o.dir], o)
	if o.kind == opRename {
		j.byKey[entryKey{o.toDir, o.toName}] = append(j.byKey[entryKey{o.toDir, o.toName}], o)
		if o.toDir != o.dir {
			j.byDir[o.toDir] = append(j.byDir[o.toDir], o)
		}
		if o.replaced != 0 {
			j.byIno[o.replaced] = append(j.byIno[o.replaced], o)
		}
	}
}

// forDir returns the ops a sync of directory dir commits: those that
// changed its entries and those that named it.
func (j *journal) forDir(dir uint64) []*op {
	return append(slices.Clone(j.byDir[dir]), j.byIno[dir]...)
}

// forIno returns the ops a sync of file ino commits: those that named it.
func (j *journal) forIno(ino uint64) []*op { return slices.Clone(j.byIno[ino]) }

// all returns every pending op (JournalGlobal: any sync commits them all).
func (j *journal) all() []*op { return slices.Clone(j.pending) }

// take removes seeds and every earlier pending op they depend on, and
// returns them in journal order.
func (j *journal) take(seeds []*op) []*op {
	if len(seeds) == 0 {
		return nil
	}
	var out []*op
	work := seeds
	for len(work) > 0 {
		o := work[len(work)-1]
		work = work[:len(work)-1]
		if o.taken {
			continue
		}
		o.taken = true
		out = append(out, o)
		deps := [][]*op{j.byKey[entryKey{o.dir, o.name}], j.byIno[o.ino], j.byIno[o.dir]}
		if o.kind == opRename {
			deps = append(deps, j.byKey[entryKey{o.toDir, o.toName}], j.byIno[o.toDir], j.byIno[o.replaced])
		}
		for _, list := range deps {
			for _, d := range list {
				if d.seq < o.seq && !d.taken {
					work = append(work, d)
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b *op) int { return cmp.Compare(a.seq, b.seq) })
	j.pending = slices.DeleteFunc(j.pending, func(o *op) bool { return o.taken })
	clear(j.byIno)
	clear(j.byKey)
	clear(j.byDir)
	for _, o := range j.pending {
		j.index(o)
	}
	return out
}
