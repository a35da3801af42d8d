package segment

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// Record framing for the commit log:
//
//	+----------------+----------------+---------------------+
//	| length  uint32 | crc     uint32 | payload (length B)  |
//	+----------------+----------------+---------------------+
//
// Little-endian. crc is CRC32C (Castagnoli) over the four length bytes and
// the payload, so a damaged length is caught too. A zero length never occurs
// in a valid record: files are preallocated with zeros, so a zero header
// marks the clean end of the written part.

// HeaderSize is the size of a record header.
const HeaderSize = 8

// MaxPayload bounds a record's payload; larger lengths are treated as damage.
const MaxPayload = 1 << 30

// ErrCorrupt reports a record whose CRC or length is wrong: a torn write or
// damage. Everything from it on must be discarded.
var ErrCorrupt = errors.New("segment: corrupt record")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// RecordSize is the number of bytes a record with this payload length takes.
func RecordSize(payloadLen int) int64 { return HeaderSize + int64(payloadLen) }

// Checksum returns the CRC32C that frames a record of payload parts a, b.
func Checksum(a, b []byte) uint32 {
	// The four length bytes go through the table by hand: passing a local
	// array to crc32.Update would allocate it on every record.
	n := uint32(len(a) + len(b))
	c := ^uint32(0)
	for i := 0; i < 4; i++ {
		c = castagnoli[byte(c)^byte(n>>(8*i))] ^ (c >> 8)
	}
	c = crc32.Update(^c, castagnoli, a)
	return crc32.Update(c, castagnoli, b)
}

// AppendRecord appends the record whose payload is a followed by b to dst.
// The caller keeps the payload size within (0, MaxPayload].
func AppendRecord(dst, a, b []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(a)+len(b)))
	dst = binary.LittleEndian.AppendUint32(dst, Checksum(a, b))
	dst = append(dst, a...)
	return append(dst, b...)
}

// ReadRecord decodes the record at off in b. It returns io.EOF when there is
// no record there (a zero header, or too few bytes for a header) and
// ErrCorrupt for a torn or damaged record. The payload aliases b.
func ReadRecord(b []byte, off int64) (payload []byte, next int64, err error) {
	if off < 0 || off+HeaderSize > int64(len(b)) {
		return nil, off, io.EOF
	}
	n := binary.LittleEndian.Uint32(b[off:])
	crc := binary.LittleEndian.Uint32(b[off+4:])
	if n == 0 {
		if crc == 0 {
			return nil, off, io.EOF
		}
		return nil, off, ErrCorrupt
	}
	end := off + RecordSize(int(n))
	if n > MaxPayload || end > int64(len(b)) {
		return nil, off, ErrCorrupt
	}
	p := b[off+HeaderSize : end : end]
	if Checksum(p, nil) != crc {
		return nil, off, ErrCorrupt
	}
	return p, end, nil
}
