package fetch

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// A fetch is stored as two engine streams under the manager's namespace:
//
//	<ns>/<id>/body  the upstream response body, byte for byte; closed when
//	                the fetch ends, however it ends
//	<ns>/<id>/meta  application/json: a start record (key, URL, status, the
//	                stored response headers), then, when the fetch ends, an
//	                end record (outcome, bytes); closed with it
//
// Both go through the engine's commit log, so one group commit and one
// recovery cover them. The end record is written before the body is
// closed: a reader that sees the body closed finds the outcome; a restart
// that finds a start record without an end marks the fetch interrupted.
//
// Both have the manager's sliding TTL and are renewed together: a lookup
// renews both, and whoever appends to or reads the body alone renews the
// record as it goes (Manager.Renewer), so that neither expires while the
// other is in use.

// Outcome is how a fetch ended.
type Outcome string

const (
	Running        Outcome = ""               // not ended yet
	Complete       Outcome = "complete"       // the upstream body ended normally
	UpstreamFailed Outcome = "upstream-error" // the upstream connection failed mid-body
	Aborted        Outcome = "aborted"        // stopped by an abort or a delete
	Interrupted    Outcome = "interrupted"    // the server stopped (crash, restart) mid-fetch
	TooLarge       Outcome = "too-large"      // cut at MaxResponseBytes
	IdleTimeout    Outcome = "idle-timeout"   // the upstream sent nothing for IdleTimeout
	StorageError   Outcome = "storage-error"  // the engine refused a write
)

// startRecord is the first message of a fetch's meta stream.
type startRecord struct {
	Key     string      `json:"key,omitempty"`
	URL     string      `json:"url"`
	Method  string      `json:"method"`
	Status  int         `json:"status"`
	Header  http.Header `json:"header"`
	Created time.Time   `json:"created"`
}

// endRecord is the second and last.
type endRecord struct {
	End    Outcome   `json:"end"`
	Bytes  int64     `json:"bytes"`
	Chunks int64     `json:"chunks"` // appends made
	At     time.Time `json:"at"`
	Error  string    `json:"error,omitempty"`
}

// parseMeta reads a meta stream's JSON array.
func parseMeta(b []byte) (startRecord, *endRecord, error) {
	var msgs []json.RawMessage
	if err := json.Unmarshal(b, &msgs); err != nil {
		return startRecord{}, nil, fmt.Errorf("fetch meta: %w", err)
	}
	if len(msgs) == 0 {
		return startRecord{}, nil, errors.New("fetch meta: no start record")
	}
	var st startRecord
	if err := json.Unmarshal(msgs[0], &st); err != nil {
		return startRecord{}, nil, fmt.Errorf("fetch meta start: %w", err)
	}
	if len(msgs) == 1 {
		return st, nil, nil
	}
	var end endRecord
	if err := json.Unmarshal(msgs[1], &end); err != nil {
		return startRecord{}, nil, fmt.Errorf("fetch meta end: %w", err)
	}
	return st, &end, nil
}
