package engine

import (
	"errors"
	"fmt"
)

// Sentinel errors. A stream operation (Create, Append, Delete, Read, Head,
// Wait) fails with one of these, possibly wrapped with %w and context, or
// with a typed error below that unwraps to one, except that an operation
// whose ctx ends returns ctx.Err(), and a file that cannot be opened, mapped
// or written for a reason none of these names comes back as the file system
// reported it. Open and Close return option and file system errors as they
// are. The server maps the sentinels to HTTP status codes in a single
// table; any other error is a 500.
var (
	// Stream lookup.
	ErrNotFound = errors.New("stream not found")
	ErrGone     = errors.New("stream is deleted but still referenced by forks") // soft-deleted
	ErrBadPath  = errors.New("invalid stream path")

	// Create.
	ErrConfigMismatch = errors.New("stream exists with a different configuration")
	ErrBadTTL         = errors.New("invalid TTL or expiry")
	ErrSourceNotFound = errors.New("fork source stream not found")
	ErrSourceDeleted  = errors.New("fork source stream is deleted")
	ErrForkOffset     = errors.New("fork offset beyond the source stream's tail")
	ErrSubOffset      = errors.New("fork sub-offset is invalid or past the next data boundary")

	// Append.
	ErrClosed          = errors.New("stream is closed")
	ErrContentType     = errors.New("content type does not match the stream")
	ErrSeqRegression   = errors.New("Stream-Seq must be strictly increasing")
	ErrStaleEpoch      = errors.New("producer epoch is stale")
	ErrSeqGap          = errors.New("producer sequence gap")
	ErrEpochSeq        = errors.New("a new producer epoch must start at sequence 0")
	ErrEmptyAppend     = errors.New("append body is empty")
	ErrInvalidJSON     = errors.New("invalid JSON")
	ErrEmptyJSONArray  = errors.New("empty JSON array")
	ErrTooLarge        = errors.New("append exceeds the maximum record size")
	ErrInvalidProducer = errors.New("invalid producer id")

	// Read.
	ErrBadOffset     = errors.New("malformed offset")
	ErrOffsetPastEnd = errors.New("offset is beyond the stream's tail")
	// ErrNotBoundary: a JSON stream is read (or forked) only at message
	// boundaries; an offset inside a message would yield invalid JSON.
	ErrNotBoundary = errors.New("offset is not a message boundary of the JSON stream")

	// Engine state.
	ErrEngineClosed = errors.New("engine is closed")
	ErrNoSpace      = errors.New("no space left on device")
	ErrFailed       = errors.New("engine stopped accepting writes after a storage failure")
	ErrCorrupt      = errors.New("stored data is corrupt")
)

// ClosedError is returned when appending to a closed stream. Final is the
// stream's final (tail) offset, which the server reports in Stream-Next-Offset.
type ClosedError struct{ Final Offset }

func (e *ClosedError) Error() string { return fmt.Sprintf("stream is closed at offset %s", e.Final) }
func (e *ClosedError) Unwrap() error { return ErrClosed }

// StaleEpochError is returned when a producer's epoch is below the stored one.
type StaleEpochError struct{ Current uint64 }

func (e *StaleEpochError) Error() string {
	return fmt.Sprintf("producer epoch is stale; current epoch is %d", e.Current)
}
func (e *StaleEpochError) Unwrap() error { return ErrStaleEpoch }

// SeqGapError is returned when a producer skips sequence numbers.
type SeqGapError struct{ Expected, Received uint64 }

func (e *SeqGapError) Error() string {
	return fmt.Sprintf("producer sequence gap: expected %d, received %d", e.Expected, e.Received)
}
func (e *SeqGapError) Unwrap() error { return ErrSeqGap }

// JSONError describes why a JSON body was rejected; it unwraps to ErrInvalidJSON.
type JSONError struct{ Msg string }

func (e *JSONError) Error() string { return "invalid JSON: " + e.Msg }
func (e *JSONError) Unwrap() error { return ErrInvalidJSON }
