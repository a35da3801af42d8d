package tier

import (
	"fmt"
	"io"
	"sync/atomic"
)

type stats struct {
	cycles                    atomic.Int64
	uploads, uploadBytes      atomic.Int64
	uploadNanos, uploadErrors atomic.Int64
	evictions                 atomic.Int64
	reads, readBytes          atomic.Int64
	readErrors                atomic.Int64
	streamsDeleted            atomic.Int64
	objectsDeleted            atomic.Int64
	localBytes                atomic.Int64
}

// Stats are the tier's counters since it started.
type Stats struct {
	Cycles         int64 // scan rounds
	Uploads        int64 // segments uploaded and verified
	UploadBytes    int64
	UploadSeconds  float64 // time spent in upload requests (summed over parallel uploads)
	UploadErrors   int64
	Evictions      int64 // segments made remote
	RemoteReads    int64 // range GETs of evicted bytes
	RemoteBytes    int64
	RemoteErrors   int64
	StreamsDeleted int64 // removed streams whose objects were deleted
	ObjectsDeleted int64
	LocalBytes     int64 // local segment files at the last scan
	CacheHits      int64 // reads of evicted bytes answered by the read cache
	CacheFills     int64 // blocks kept in the read cache
	CacheBytes     int64 // held in the read cache now
}

// Stats returns the counters.
func (t *Tier) Stats() Stats {
	s := &t.stats
	st := Stats{Cycles: s.cycles.Load(), Uploads: s.uploads.Load(), UploadBytes: s.uploadBytes.Load(),
		UploadSeconds: float64(s.uploadNanos.Load()) / 1e9, UploadErrors: s.uploadErrors.Load(),
		Evictions: s.evictions.Load(), RemoteReads: s.reads.Load(), RemoteBytes: s.readBytes.Load(),
		RemoteErrors: s.readErrors.Load(), StreamsDeleted: s.streamsDeleted.Load(),
		ObjectsDeleted: s.objectsDeleted.Load(), LocalBytes: s.localBytes.Load()}
	if c := t.cache; c != nil {
		st.CacheHits, st.CacheFills, st.CacheBytes = c.hits.Load(), c.fills.Load(), c.held()
	}
	return st
}

// WriteMetrics writes the counters in the Prometheus text format.
func (t *Tier) WriteMetrics(w io.Writer) {
	s := t.Stats()
	for _, m := range []struct {
		name, kind, help string
		v                any
	}{
		{"durastream_tier_uploads_total", "counter", "Sealed segments uploaded and verified.", s.Uploads},
		{"durastream_tier_upload_bytes_total", "counter", "Bytes uploaded.", s.UploadBytes},
		{"durastream_tier_upload_errors_total", "counter", "Uploads that failed or did not verify (retried).", s.UploadErrors},
		{"durastream_tier_evictions_total", "counter", "Segments evicted from local disk.", s.Evictions},
		{"durastream_tier_remote_reads_total", "counter", "Range GETs of evicted bytes.", s.RemoteReads},
		{"durastream_tier_remote_read_bytes_total", "counter", "Bytes fetched from the bucket for reads.", s.RemoteBytes},
		{"durastream_tier_remote_read_errors_total", "counter", "Reads of evicted bytes that failed (answered 503).", s.RemoteErrors},
		{"durastream_tier_streams_deleted_total", "counter", "Removed streams whose objects were deleted.", s.StreamsDeleted},
		{"durastream_tier_local_bytes", "gauge", "Bytes of local segment files at the last scan.", s.LocalBytes},
		{"durastream_tier_cache_hits_total", "counter", "Reads of evicted bytes answered by the local read cache.", s.CacheHits},
		{"durastream_tier_cache_fills_total", "counter", "Blocks of evicted bytes kept in the local read cache.", s.CacheFills},
		{"durastream_tier_cache_bytes", "gauge", "Bytes held in the local read cache.", s.CacheBytes},
	} {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s %s\n%s %v\n", m.name, m.help, m.name, m.kind, m.name, m.v)
	}
}
