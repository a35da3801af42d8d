package tier

import "sync/atomic"

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
}

// Stats returns the counters.
func (t *Tier) Stats() Stats {
	s := &t.stats
	return Stats{Cycles: s.cycles.Load(), Uploads: s.uploads.Load(), UploadBytes: s.uploadBytes.Load(),
		UploadSeconds: float64(s.uploadNanos.Load()) / 1e9, UploadErrors: s.uploadErrors.Load(),
		Evictions: s.evictions.Load(), RemoteReads: s.reads.Load(), RemoteBytes: s.readBytes.Load(),
		RemoteErrors: s.readErrors.Load(), StreamsDeleted: s.streamsDeleted.Load(),
		ObjectsDeleted: s.objectsDeleted.Load(), LocalBytes: s.localBytes.Load()}
}
