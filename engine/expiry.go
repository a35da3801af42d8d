package engine

import (
	"fmt"
	"math"
	"time"
)

// The limits of what a stream's lifetime can be. An expiry is kept as
// nanoseconds since the Unix epoch in an int64, and a TTL is compared as a
// time.Duration (int64 nanoseconds): beyond these limits the values would
// overflow and a stream meant to live for centuries would be gone at once.
const (
	// MaxTTL is the longest Stream-TTL, in seconds: about 292 years.
	MaxTTL = math.MaxInt64 / uint64(time.Second)
)

// MaxExpiresAt is the latest expiry a stream can have:
// 2262-04-11T23:47:16.854775807Z.
var MaxExpiresAt = time.Unix(0, math.MaxInt64).UTC()

// checkExpiry refuses TTL and expiry values that cannot be represented:
// a TTL above MaxTTL, or an expiry after MaxExpiresAt or at or before the
// Unix epoch (stored as zero, which means none). An expiry in the past is
// representable: such a stream expires at once.
func checkExpiry(o *CreateOptions) error {
	if o.HasTTL && o.TTL > MaxTTL {
		return fmt.Errorf("%w: TTL above %d seconds", ErrBadTTL, MaxTTL)
	}
	if t := o.ExpiresAt; !t.IsZero() && (t.After(MaxExpiresAt) || !t.After(time.Unix(0, 0))) {
		return fmt.Errorf("%w: expiry outside 1970-01-01T00:00:00Z..%s", ErrBadTTL, MaxExpiresAt.Format(time.RFC3339Nano))
	}
	return nil
}
