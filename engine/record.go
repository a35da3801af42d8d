package engine

import (
	"encoding/binary"
	"errors"
)

// Commit-log payloads. Each is one segment record; the first byte is its
// kind. Records name streams by id and carry the offset they apply at, so
// replaying a record that the checkpoint already reflects is a no-op.
const (
	recRollover byte = 1 // last record of a full segment: continue in the next
	recCreate   byte = 2
	recAppend   byte = 3
	recDelete   byte = 4
	recRemote   byte = 5 // a sealed segment's bytes are in object storage (remoteRec)
	// recAppendSealed is recAppend for an append that started a new
	// segment because the last one had aged (Options.SealAfter): replay
	// lays the bytes out as they were, so segments uploaded to a tier stay
	// what they were. (The decision travels in the append's own record: a
	// record of its own could fall on the other side of a checkpoint.)
	recAppendSealed byte = 7
	// recSeal ends an idle stream's last segment where its bytes end
	// (SealIdle): later appends start a new segment (sealRec).
	recSeal byte = 8
)

// Flags of create and append records.
const (
	fClosed   = 1 << 0 // create closed / close after append
	fTTL      = 1 << 1
	fExpires  = 1 << 2
	fFork     = 1 << 3
	fProducer = 1 << 4
	fSeq      = 1 << 5
	fForkOff  = 1 << 6 // the create request named an explicit fork offset
	fRef      = 1 << 7 // large append: the data is in the stream's segment, the record has its length and CRC
)

var errShortRecord = errors.New("short commit-log record")

// createRec is a stream creation, with the initial data as the record tail.
type createRec struct {
	id          uint64
	flags       byte
	path        string
	contentType string
	ttl         uint64 // seconds
	expiresAt   int64  // unix nanoseconds
	createdAt   int64
	forkSrc     uint64 // id of the source stream
	forkOffset  uint64 // resolved divergence point
	reqOffset   uint64 // Stream-Fork-Offset as requested
	reqSub      uint64 // Stream-Fork-Sub-Offset as requested
}

func (r *createRec) encode(b []byte) []byte {
	b = append(b, recCreate)
	b = binary.LittleEndian.AppendUint64(b, r.id)
	b = append(b, r.flags)
	b = appendString(b, r.path)
	b = appendString(b, r.contentType)
	b = binary.AppendUvarint(b, r.ttl)
	b = binary.AppendVarint(b, r.expiresAt)
	b = binary.AppendVarint(b, r.createdAt)
	b = binary.AppendUvarint(b, r.forkSrc)
	b = binary.AppendUvarint(b, r.forkOffset)
	b = binary.AppendUvarint(b, r.reqOffset)
	b = binary.AppendUvarint(b, r.reqSub)
	return b
}

// appendRec is an append and/or close, with the data as the record tail.
type appendRec struct {
	id       uint64
	offset   uint64
	flags    byte
	producer string
	epoch    uint64
	seq      uint64
	mseq     string // Stream-Seq
	refLen   uint64 // fRef: length and CRC32C of the data in the stream's segment
	refCRC   uint32
	sealed   bool // recAppendSealed
}

func (r *appendRec) encode(b []byte) []byte {
	kind := recAppend
	if r.sealed {
		kind = recAppendSealed
	}
	b = append(b, kind)
	b = binary.LittleEndian.AppendUint64(b, r.id)
	b = binary.AppendUvarint(b, r.offset)
	b = append(b, r.flags)
	if r.flags&fProducer != 0 {
		b = appendString(b, r.producer)
		b = binary.AppendUvarint(b, r.epoch)
		b = binary.AppendUvarint(b, r.seq)
	}
	if r.flags&fSeq != 0 {
		b = appendString(b, r.mseq)
	}
	if r.flags&fRef != 0 {
		b = binary.AppendUvarint(b, r.refLen)
		b = binary.LittleEndian.AppendUint32(b, r.refCRC)
	}
	return b
}

func encodeDelete(b []byte, id uint64) []byte {
	b = append(b, recDelete)
	return binary.LittleEndian.AppendUint64(b, id)
}

// remoteRec says that the bytes [base, base+n) of a stream, a whole
// sealed segment, are the object key in object storage: an evicted
// segment (its local file goes once a checkpoint covers the record), or
// with adopt, a segment a restore attaches at the stream's tail.
type remoteRec struct {
	id    uint64
	adopt bool
	base  uint64
	n     uint64
	key   string
}

func (r *remoteRec) encode(b []byte) []byte {
	b = append(b, recRemote)
	b = binary.LittleEndian.AppendUint64(b, r.id)
	var fl byte
	if r.adopt {
		fl = 1
	}
	b = append(b, fl)
	b = binary.AppendUvarint(b, r.base)
	b = binary.AppendUvarint(b, r.n)
	return appendString(b, r.key)
}

func decodeRemote(p []byte) (remoteRec, error) {
	d := decoder{b: p}
	r := remoteRec{id: d.u64()}
	r.adopt = d.byte1() == 1
	r.base = d.uvarint()
	r.n = d.uvarint()
	r.key = d.str()
	if d.err == nil && r.key == "" {
		d.err = errors.New("remote record without a key")
	}
	return r, d.err
}

// sealRec says that stream id's segment at base ends after its n bytes:
// nothing more is written to it (SealIdle).
type sealRec struct {
	id   uint64
	base uint64
	n    uint64
}

func (r *sealRec) encode(b []byte) []byte {
	b = append(b, recSeal)
	b = binary.LittleEndian.AppendUint64(b, r.id)
	b = binary.AppendUvarint(b, r.base)
	return binary.AppendUvarint(b, r.n)
}

func decodeSeal(p []byte) (sealRec, error) {
	d := decoder{b: p}
	r := sealRec{id: d.u64()}
	r.base = d.uvarint()
	r.n = d.uvarint()
	return r, d.err
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// decoder reads fields in order and remembers the first error.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte1() byte {
	if d.err != nil || len(d.b) < 1 {
		d.err = errShortRecord
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) u64() uint64 {
	if d.err != nil || len(d.b) < 8 {
		d.err = errShortRecord
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShortRecord
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil || uint64(len(d.b)) < n {
		d.err = errShortRecord
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func decodeCreate(p []byte) (createRec, []byte, error) {
	d := decoder{b: p}
	var r createRec
	r.id = d.u64()
	r.flags = d.byte1()
	r.path = d.str()
	r.contentType = d.str()
	r.ttl = d.uvarint()
	r.expiresAt = d.varint()
	r.createdAt = d.varint()
	r.forkSrc = d.uvarint()
	r.forkOffset = d.uvarint()
	r.reqOffset = d.uvarint()
	r.reqSub = d.uvarint()
	return r, d.b, d.err
}

func decodeAppend(p []byte) (appendRec, []byte, error) {
	d := decoder{b: p}
	var r appendRec
	r.id = d.u64()
	r.offset = d.uvarint()
	r.flags = d.byte1()
	if r.flags&fProducer != 0 {
		r.producer = d.str()
		r.epoch = d.uvarint()
		r.seq = d.uvarint()
	}
	if r.flags&fSeq != 0 {
		r.mseq = d.str()
	}
	if r.flags&fRef != 0 {
		r.refLen = d.uvarint()
		if d.err == nil && len(d.b) >= 4 {
			r.refCRC = binary.LittleEndian.Uint32(d.b)
			d.b = d.b[4:]
		} else {
			d.err = errShortRecord
		}
	}
	return r, d.b, d.err
}
