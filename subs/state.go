package subs

import (
	"encoding/json"
	"time"

	"github.com/durastream/durastream/engine"
)

// A subscription's state lives in an engine stream, so that it goes
// through the same group-committed commit log as the streams it watches
// and survives a crash with them:
//
//	__ds/subs/<id>/<epoch>   application/json; a snapshot record, then one
//	                         record per change (link, unlink, ack, wake,
//	                         lease, clear, retry)
//
// Every change is appended (and so synced) before it takes effect outside:
// before a wake is sent or written to the wake stream, before an ack is
// answered. After compactEvery records the state is written as a snapshot
// to epoch+1, and epoch is deleted; recovery takes the highest epoch of
// each id (a crash between the two leaves both). Deleting a subscription
// deletes its stream: the tombstone is the stream's absence.

const compactEvery = 1024

type link struct {
	explicit, glob bool
	acked          engine.Offset
	tail           engine.Offset // last tail seen (Notify, Head)
	// inc is the incarnation of the stream that acked counts in: its
	// creation time (engine.StreamInfo.CreatedAt, unix ns). 0: none yet
	// (linked before the stream exists, or reset): acked is 0, and the
	// first incarnation seen is delivered from its start. Stored whenever
	// acked is not 0, so that recovery can tell a stream created again.
	inc int64
	// fence is the generation of the wake in flight when the link was made
	// or reset: that wake's acks for the stream are for what it was
	// before, and are ignored.
	fence uint64
}

type linkRec struct {
	Explicit bool   `json:"explicit,omitempty"`
	Glob     bool   `json:"glob,omitempty"`
	Acked    string `json:"acked"`
	Inc      int64  `json:"inc,omitempty"`
	Fence    uint64 `json:"fence,omitempty"`
}

func (l *link) rec() *linkRec {
	return &linkRec{Explicit: l.explicit, Glob: l.glob, Acked: l.acked.String(), Inc: l.inc, Fence: l.fence}
}

func (r *linkRec) link() *link {
	return &link{explicit: r.Explicit, glob: r.Glob, acked: parseOff(r.Acked), inc: r.Inc, fence: r.Fence}
}

type snapshot struct {
	ID         string             `json:"id"`
	Config     Config             `json:"config"`
	Hash       string             `json:"hash"`
	Created    time.Time          `json:"created"`
	BaseURL    string             `json:"base_url"`
	Links      map[string]linkRec `json:"links"`
	Gen        uint64             `json:"gen"`
	WakeID     string             `json:"wake_id,omitempty"`
	Inflight   bool               `json:"inflight,omitempty"`
	Holder     string             `json:"holder,omitempty"`
	LeaseUntil int64              `json:"lease_until,omitempty"` // unix ms
	Attempts   int                `json:"attempts,omitempty"`
	NextAt     int64              `json:"next_at,omitempty"` // unix ms
}

type record struct {
	Op         string    `json:"op"` // snapshot, link, unlink, ack, wake, lease, clear, retry
	State      *snapshot `json:"state,omitempty"`
	Path       string    `json:"path,omitempty"`
	Link       *linkRec  `json:"link,omitempty"`
	Acked      string    `json:"acked,omitempty"`
	Inc        int64     `json:"inc,omitempty"` // ack: the incarnation acked counts in
	Gen        uint64    `json:"gen,omitempty"`
	WakeID     string    `json:"wake_id,omitempty"`
	Holder     string    `json:"holder,omitempty"`
	LeaseUntil int64     `json:"lease_until,omitempty"`
	Attempts   int       `json:"attempts,omitempty"`
	NextAt     int64     `json:"next_at,omitempty"`
}

func (s *sub) state() *snapshot {
	sn := &snapshot{ID: s.id, Config: s.cfg, Hash: s.hash, Created: s.created, BaseURL: s.baseURL,
		Links: make(map[string]linkRec, len(s.links)), Gen: s.gen, WakeID: s.wakeID, Inflight: s.inflight,
		Holder: s.holder, LeaseUntil: ms(s.leaseUntil), Attempts: s.attempts, NextAt: ms(s.nextAt)}
	for p, l := range s.links {
		sn.Links[p] = *l.rec()
	}
	return sn
}

func ms(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMs(v int64) time.Time {
	if v == 0 {
		return time.Time{}
	}
	return time.UnixMilli(v)
}

func parseOff(s string) engine.Offset {
	o, _ := engine.ParseOffset(s)
	return o
}

// apply replays one record into s (recovery).
func (s *sub) apply(r record) {
	switch r.Op {
	case "snapshot":
		sn := r.State
		s.cfg, s.hash, s.created, s.baseURL = sn.Config, sn.Hash, sn.Created, sn.BaseURL
		s.links = make(map[string]*link, len(sn.Links))
		for p, l := range sn.Links {
			s.links[p] = l.link()
		}
		s.gen, s.wakeID, s.inflight, s.holder = sn.Gen, sn.WakeID, sn.Inflight, sn.Holder
		s.leaseUntil, s.attempts, s.nextAt = fromMs(sn.LeaseUntil), sn.Attempts, fromMs(sn.NextAt)
	case "link":
		s.links[r.Path] = r.Link.link()
	case "unlink":
		delete(s.links, r.Path)
		s.markGone(r.Path)
	case "ack":
		if l := s.links[r.Path]; l != nil {
			l.acked = max(l.acked, parseOff(r.Acked))
			if r.Inc != 0 {
				l.inc = r.Inc
			}
		}
	case "wake":
		s.gen, s.wakeID, s.inflight, s.holder, s.leaseUntil = r.Gen, r.WakeID, true, r.Holder, fromMs(r.LeaseUntil)
		s.goneThisWake = nil
	case "lease":
		s.holder, s.leaseUntil = r.Holder, fromMs(r.LeaseUntil)
	case "clear":
		s.inflight, s.holder, s.leaseUntil, s.goneThisWake = false, "", time.Time{}, nil
	case "retry":
		s.attempts, s.nextAt = r.Attempts, fromMs(r.NextAt)
	}
}

func marshal(r record) []byte {
	b, _ := json.Marshal(r)
	return b
}
