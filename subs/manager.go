package subs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/durastream/durastream/engine"
	"github.com/durastream/durastream/pathglob"
	"github.com/puzpuzpuz/xsync/v3"
)

// Options configure a Manager. Zero fields take the defaults named.
type Options struct {
	// KeyFile keeps the webhook signing key (created 0600 when missing);
	// "" keeps a key in memory only.
	KeyFile string
	// DevWebhooks allows http://localhost and http://127.0.0.x webhook URLs.
	DevWebhooks bool
	// Client delivers webhooks. Default: one whose dialer refuses
	// restricted addresses (loopback only with DevWebhooks) and that
	// follows no redirects, with DeliveryTimeout.
	Client *http.Client
	// DeliveryTimeout bounds one webhook request. Default 10 s.
	DeliveryTimeout time.Duration
	// MaxDeliveries bounds webhook requests in flight over all
	// subscriptions (each has at most one). Default 64.
	MaxDeliveries int
	// MaxSubscriptions bounds how many subscriptions exist. Default 10000.
	MaxSubscriptions int
	Logger           *slog.Logger
}

// Namespace is where subscription state streams live.
const Namespace = "__ds/subs"

// Manager keeps subscriptions: their links to streams, cursors and wakes.
// Safe for concurrent use. Lock order: a sub's mu before the Manager's mu.
type Manager struct {
	eng  *engine.Engine
	opt  Options
	log  *slog.Logger
	sign *signer
	sem  chan struct{}

	mu   sync.Mutex
	subs map[string]*sub
	// linked maps a stream path to the subscriptions linked to it. The sets
	// are copied on write (under mu) and read without a lock: Notify, on
	// every append, costs one lock-free lookup.
	linked *xsync.MapOf[string, map[*sub]struct{}]
	index  trie // patterns
	// creates is held, shared, by a stream create from BeforeCreate until
	// the create is done, and exclusively while a new subscription's
	// pattern is indexed: a stream created meanwhile is then either
	// created before the pattern is indexed (so the backfill lists it) or
	// linked by BeforeCreate; never neither.
	creates sync.RWMutex
	// afterList, in tests only, runs when a new subscription has listed
	// the streams its pattern matches.
	afterList func()

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type sub struct {
	m  *Manager
	id string

	mu       sync.Mutex
	cfg      Config
	hash     string
	pattern  pathglob.Pattern
	created  time.Time
	baseURL  string
	epoch    uint64
	records  int
	links    map[string]*link
	gen      uint64
	wakeID   string
	inflight bool // a wake is issued and not finished
	holder   string
	// leaseUntil: a webhook wake's or a claim's lease; for an unclaimed
	// pull-wake wake, when another wake event is written.
	leaseUntil time.Time
	snapshot   map[string]engine.Offset // the tails a webhook wake carried
	attempts   int                      // failed webhook deliveries in a row
	nextAt     time.Time                // next delivery attempt after a failure
	deleted    bool
	// goneThisWake: streams whose links went (unlink) while the wake in
	// flight was issued; one linked again before it ends is fenced.
	goneThisWake map[string]bool
	timer        *time.Timer
	// post is held by the webhook delivery that is POSTing: one request
	// per subscription at a time, even when a wake ends before its POST
	// does. stopPost cuts the current wake's POST (clearWake, Delete).
	post     sync.Mutex
	stopPost context.CancelFunc
}

// New opens the subscriptions stored in eng and starts their timers.
func New(eng *engine.Engine, o Options) (*Manager, error) {
	if o.DeliveryTimeout <= 0 {
		o.DeliveryTimeout = 10 * time.Second
	}
	if o.MaxDeliveries <= 0 {
		o.MaxDeliveries = 64
	}
	if o.MaxSubscriptions <= 0 {
		o.MaxSubscriptions = 10000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Client == nil {
		o.Client = webhookClient(webhookDialer(o.DevWebhooks), o.DeliveryTimeout)
	}
	sg, err := loadSigner(o.KeyFile)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Manager{eng: eng, opt: o, log: o.Logger, sign: sg, sem: make(chan struct{}, o.MaxDeliveries),
		subs: map[string]*sub{}, linked: xsync.NewMapOf[string, map[*sub]struct{}](), ctx: ctx, cancel: cancel}
	if err := m.recover(); err != nil {
		cancel()
		return nil, err
	}
	return m, nil
}

// Close stops deliveries and timers. Wakes in flight are redelivered after
// the next start (at least once).
func (m *Manager) Close() {
	m.cancel()
	m.mu.Lock()
	for _, s := range m.subs {
		if s.timer != nil {
			s.timer.Stop()
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
}

// JWKS is the JSON Web Key Set of the webhook signing key.
func (m *Manager) JWKS() []byte { return m.sign.jwks }

// Kid is the signing key's id.
func (m *Manager) Kid() string { return m.sign.kid }

func statePath(id string, epoch uint64) string {
	return Namespace + "/" + id + "/" + strconv.FormatUint(epoch, 10)
}

// ValidID: ids are one path segment of letters, digits, '-', '_', '.'.
func ValidID(id string) bool {
	if id == "" || len(id) > 128 || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ---- recovery ----------------------------------------------------------------

func (m *Manager) recover() error {
	paths, err := m.eng.List(Namespace + "/")
	if err != nil {
		return err
	}
	latest := map[string]uint64{}
	var all []struct {
		id    string
		epoch uint64
	}
	for _, p := range paths {
		rest := strings.TrimPrefix(p, Namespace+"/")
		id, e, ok := strings.Cut(rest, "/")
		epoch, err := strconv.ParseUint(e, 10, 64)
		if !ok || err != nil || !ValidID(id) {
			m.log.Warn("subscriptions: unexpected state stream; ignored", "path", p)
			continue
		}
		all = append(all, struct {
			id    string
			epoch uint64
		}{id, epoch})
		if cur, ok := latest[id]; !ok || epoch > cur {
			latest[id] = epoch
		}
	}
	ctx := context.Background()
	for _, x := range all {
		if x.epoch < latest[x.id] { // compacted: the newer epoch holds everything
			m.eng.Delete(ctx, statePath(x.id, x.epoch))
		}
	}
	for id, epoch := range latest {
		s := &sub{m: m, id: id, epoch: epoch, links: map[string]*link{}}
		if err := s.load(); err != nil {
			m.log.Error("subscriptions: state unreadable; subscription dropped", "id", id, "err", err)
			continue
		}
		s.pattern, _ = pathglob.Parse(s.cfg.Pattern)
		m.subs[id] = s
		m.register(s)
	}
	for _, s := range m.subs {
		s.mu.Lock()
		for p, l := range s.links {
			info, err := m.eng.Head(p)
			s.observe(p, l, info, err)
		}
		if s.inflight && s.cfg.Type == TypeWebhook {
			// The delivery was cut by the restart: deliver again (new generation).
			s.clearWake()
		}
		s.evaluate()
		s.mu.Unlock()
	}
	if len(m.subs) > 0 {
		m.log.Info("subscriptions recovered", "count", len(m.subs))
	}
	return nil
}

func (s *sub) load() error {
	p := statePath(s.id, s.epoch)
	var buf []byte
	from := engine.ReadFrom{Kind: engine.FromStart}
	for {
		c, err := s.m.eng.Read(p, from, engine.ReadOptions{MaxBytes: 4 << 20})
		if err != nil {
			return err
		}
		buf = append(buf, c.Bytes()...)
		next, upToDate := c.Next, c.UpToDate
		c.Release()
		if upToDate {
			break
		}
		from = engine.At(next)
	}
	// Pages of a JSON stream are arrays each; join them.
	var recs []record
	dec := json.NewDecoder(strings.NewReader(string(buf)))
	for dec.More() {
		var page []record
		if err := dec.Decode(&page); err != nil {
			return err
		}
		recs = append(recs, page...)
	}
	if len(recs) == 0 || recs[0].Op != "snapshot" || recs[0].State == nil {
		return errors.New("no snapshot record")
	}
	for _, r := range recs {
		s.apply(r)
	}
	s.records = len(recs)
	return nil
}

// register indexes s's pattern and links. Called without m.mu.
func (m *Manager) register(s *sub) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.cfg.Pattern != "" {
		m.index.add(s.pattern, strings.Split(s.cfg.Pattern, "/"), s)
	}
	for p := range s.links {
		m.linkIndex(p, s)
	}
}

// unregister undoes register. Called without m.mu.
func (m *Manager) unregister(s *sub) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if s.cfg.Pattern != "" {
		m.index.remove(s.pattern, strings.Split(s.cfg.Pattern, "/"), s)
	}
	for p := range s.links {
		m.unlinkIndex(p, s)
	}
}

// linkIndex and unlinkIndex update the linked sets. Called with m.mu.
func (m *Manager) linkIndex(p string, s *sub) {
	old, _ := m.linked.Load(p)
	if _, ok := old[s]; ok {
		return
	}
	set := make(map[*sub]struct{}, len(old)+1)
	for x := range old {
		set[x] = struct{}{}
	}
	set[s] = struct{}{}
	m.linked.Store(p, set)
}

func (m *Manager) unlinkIndex(p string, s *sub) {
	old, _ := m.linked.Load(p)
	if _, ok := old[s]; !ok {
		return
	}
	if len(old) == 1 {
		m.linked.Delete(p)
		return
	}
	set := make(map[*sub]struct{}, len(old)-1)
	for x := range old {
		if x != s {
			set[x] = struct{}{}
		}
	}
	m.linked.Store(p, set)
}

// ---- persistence ---------------------------------------------------------------

// persist appends r to s's state stream (durably), compacting the stream
// first when it has grown. Called with s.mu held. Callers apply r to s
// only once persist returns, so the compaction runs before r is appended,
// never after: a snapshot taken after the append would miss r and, once
// the old log is deleted, lose it (an acknowledged ack came back one
// offset behind after a crash).
func (s *sub) persist(r record) error {
	if s.records >= compactEvery {
		s.compact()
	}
	ctx := context.Background()
	if _, err := s.m.eng.Append(ctx, statePath(s.id, s.epoch), marshal(r), engine.AppendOptions{ContentType: "application/json"}); err != nil {
		return err
	}
	s.records++
	return nil
}

func (s *sub) compact() {
	ctx := context.Background()
	next := s.epoch + 1
	snap := marshal(record{Op: "snapshot", State: s.state()})
	if _, _, err := s.m.eng.Create(ctx, statePath(s.id, next), engine.CreateOptions{ContentType: "application/json", Data: snap}); err != nil {
		s.m.log.Warn("subscriptions: compaction failed; keeping the log", "id", s.id, "err", err)
		return
	}
	s.m.eng.Delete(ctx, statePath(s.id, s.epoch))
	s.epoch, s.records = next, 1
}

// ---- subscription CRUD -----------------------------------------------------------

// Put creates subscription id (created true) or re-confirms it. baseURL
// is the stream root as clients reach it (for callback and JWKS URLs).
// allow, if not nil, decides whether the caller may have the configuration
// (access control): it runs once the body is valid, before anything else.
func (m *Manager) Put(id string, body []byte, baseURL string, allow func(Config) *Error) ([]byte, bool, *Error) {
	if !ValidID(id) {
		return nil, false, badRequest("INVALID_REQUEST", "subscription ids are 1-128 letters, digits, '-', '_' or '.'")
	}
	cfg, perr := ParseConfig(body, m.opt.DevWebhooks)
	if perr != nil {
		return nil, false, perr
	}
	if allow != nil {
		if err := allow(cfg); err != nil {
			return nil, false, err
		}
	}
	hash := cfg.Hash()
	for {
		m.mu.Lock()
		s := m.subs[id]
		if s == nil && len(m.subs) >= m.opt.MaxSubscriptions {
			m.mu.Unlock()
			return nil, false, &Error{Status: 503, Code: "TOO_MANY_SUBSCRIPTIONS", Message: "the server's subscription limit is reached"}
		}
		if s == nil {
			s = &sub{m: m, id: id, cfg: cfg, hash: hash, created: time.Now().UTC(), baseURL: baseURL, links: map[string]*link{}}
			s.pattern, _ = pathglob.Parse(cfg.Pattern)
			s.mu.Lock() // nobody else can have s yet
			m.subs[id] = s
			m.mu.Unlock()
			err := s.create()
			s.mu.Unlock()
			if err != nil {
				return nil, false, err
			}
			s.mu.Lock()
			v := s.view()
			s.mu.Unlock()
			return v, true, nil
		}
		m.mu.Unlock()
		s.mu.Lock()
		if s.deleted {
			s.mu.Unlock()
			continue // deleted meanwhile: create anew
		}
		defer s.mu.Unlock()
		if s.hash != hash {
			return nil, false, &Error{Status: 409, Code: "SUBSCRIPTION_EXISTS", Message: "subscription " + id + " exists with a different configuration"}
		}
		return s.view(), false, nil
	}
}

// create stores a new subscription and links its streams at their
// current tails. Called with s.mu, which keeps BeforeCreate and Notify for
// its streams waiting until it is done.
func (s *sub) create() *Error {
	m := s.m
	ctx := context.Background()
	for _, p := range s.cfg.Streams {
		s.links[p] = &link{explicit: true}
	}
	// Index first, then list (see Manager.creates): a stream that a
	// concurrent create makes is listed here or linked by BeforeCreate
	// (at 0, after this create: the backfill below never saw it).
	m.creates.Lock()
	m.register(s)
	m.creates.Unlock()
	if s.cfg.Pattern != "" {
		paths, err := m.eng.List(literalPrefix(s.cfg.Pattern))
		if m.afterList != nil {
			m.afterList()
		}
		if err == nil {
			for _, p := range paths {
				if strings.HasPrefix(p, "__ds/") || !s.pattern.MatchPath(p) {
					continue
				}
				l := s.links[p]
				if l == nil {
					l = &link{}
					s.links[p] = l
					m.mu.Lock()
					m.linkIndex(p, s)
					m.mu.Unlock()
				}
				l.glob = true
			}
		}
	}
	for p, l := range s.links {
		if info, err := m.eng.Head(p); err == nil {
			l.acked, l.tail, l.inc = info.Tail, info.Tail, incarnation(info)
		}
	}
	s.epoch, s.records = 1, 1
	snap := marshal(record{Op: "snapshot", State: s.state()})
	if _, _, err := m.eng.Create(ctx, statePath(s.id, s.epoch), engine.CreateOptions{ContentType: "application/json", Data: snap}); err != nil {
		m.unregister(s)
		m.mu.Lock()
		delete(m.subs, s.id)
		m.mu.Unlock()
		s.deleted = true
		return internal(err)
	}
	m.log.Info("subscription created", "id", s.id, "type", s.cfg.Type, "pattern", s.cfg.Pattern, "links", len(s.links))
	return nil
}

// literalPrefix is the part of a pattern before its first wildcard, for
// listing: logs/app-*/x -> "logs/".
func literalPrefix(p string) string {
	i := strings.IndexByte(p, '*')
	if i < 0 {
		return p
	}
	return p[:strings.LastIndexByte(p[:i], '/')+1]
}

func (m *Manager) lookup(id string) (*sub, *Error) {
	m.mu.Lock()
	s := m.subs[id]
	m.mu.Unlock()
	if s == nil {
		return nil, &Error{Status: 404, Code: "SUBSCRIPTION_NOT_FOUND", Message: "no subscription " + id}
	}
	return s, nil
}

// locked returns s locked, or an error if it was deleted meanwhile.
func (m *Manager) locked(id string) (*sub, *Error) {
	s, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.deleted {
		s.mu.Unlock()
		return nil, &Error{Status: 404, Code: "SUBSCRIPTION_NOT_FOUND", Message: "no subscription " + id}
	}
	return s, nil
}

// Get returns a subscription's JSON.
func (m *Manager) Get(id string) ([]byte, *Error) {
	s, err := m.locked(id)
	if err != nil {
		return nil, err
	}
	defer s.mu.Unlock()
	return s.view(), nil
}

// Delete tombstones a subscription: its state stream is deleted, requests
// for its wakes fail from now on.
func (m *Manager) Delete(id string) *Error {
	s, err := m.locked(id)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	if derr := m.eng.Delete(context.Background(), statePath(s.id, s.epoch)); derr != nil && !errors.Is(derr, engine.ErrNotFound) {
		return internal(derr)
	}
	s.deleted = true
	if s.timer != nil {
		s.timer.Stop()
	}
	if s.stopPost != nil {
		s.stopPost()
	}
	m.unregister(s)
	m.mu.Lock()
	delete(m.subs, id)
	m.mu.Unlock()
	m.log.Info("subscription deleted", "id", id)
	return nil
}

// AddStreams links streams explicitly (at their current tails). allow, if
// not nil, decides whether the caller may watch the paths (access control).
func (m *Manager) AddStreams(id string, body []byte, allow func(paths []string) *Error) *Error {
	var in struct {
		Streams []string `json:"streams"`
	}
	if err := json.Unmarshal(body, &in); err != nil || len(in.Streams) == 0 {
		return badRequest("INVALID_REQUEST", `the body must be {"streams": ["path", ...]}`)
	}
	var paths []string
	for _, p := range in.Streams {
		c, err := CleanPath(p)
		if err != nil {
			return badRequest("INVALID_REQUEST", "streams: %v", err)
		}
		paths = append(paths, c)
	}
	if allow != nil {
		if err := allow(paths); err != nil {
			return err
		}
	}
	s, err := m.locked(id)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	for _, p := range paths {
		l := s.links[p]
		if l != nil && l.explicit {
			continue
		}
		if l == nil {
			l = s.newLink(p)
			if info, err := m.eng.Head(p); err == nil {
				l.acked, l.tail, l.inc = info.Tail, info.Tail, incarnation(info)
			}
		}
		n := *l
		n.explicit = true
		if perr := s.persist(record{Op: "link", Path: p, Link: n.rec()}); perr != nil {
			return internal(perr)
		}
		s.links[p] = &n
		m.mu.Lock()
		m.linkIndex(p, s)
		m.mu.Unlock()
	}
	return nil
}

// RemoveStream drops an explicit link (a glob link stays).
func (m *Manager) RemoveStream(id, p string) *Error {
	s, err := m.locked(id)
	if err != nil {
		return err
	}
	defer s.mu.Unlock()
	l := s.links[p]
	if l == nil || !l.explicit {
		return nil
	}
	if l.glob {
		n := *l
		n.explicit = false
		if perr := s.persist(record{Op: "link", Path: p, Link: n.rec()}); perr != nil {
			return internal(perr)
		}
		l.explicit = false
		return nil
	}
	if perr := s.persist(record{Op: "unlink", Path: p}); perr != nil {
		return internal(perr)
	}
	delete(s.links, p)
	m.mu.Lock()
	m.unlinkIndex(p, s)
	m.mu.Unlock()
	return nil
}

// ---- stream events -------------------------------------------------------------------

// BeforeCreate links a stream about to be created to every subscription
// whose pattern matches it, at offset 0, durably: the data the create
// brings is pending work for them, even across a crash right after it.
// The caller calls done once the create is over (Manager.creates).
func (m *Manager) BeforeCreate(p string) (done func()) {
	if strings.HasPrefix(p, "__ds/") {
		return func() {}
	}
	m.creates.RLock()
	matched := map[*sub]struct{}{}
	m.mu.Lock()
	m.index.match(strings.Split(p, "/"), 0, matched)
	m.mu.Unlock()
	for s := range matched {
		s.mu.Lock()
		if s.deleted {
			s.mu.Unlock()
			continue
		}
		switch l := s.links[p]; {
		case l == nil || !l.glob:
			n := l
			if n == nil {
				n = s.newLink(p)
			}
			r := *n.rec()
			r.Glob = true
			if err := s.persist(record{Op: "link", Path: p, Link: &r}); err != nil {
				m.log.Warn("subscriptions: linking a new stream failed", "id", s.id, "stream", p, "err", err)
				break
			}
			n.glob = true
			s.links[p] = n
			m.mu.Lock()
			m.linkIndex(p, s)
			m.mu.Unlock()
		case l.inc != 0:
			// Linked to an incarnation that is gone (expired: nobody said):
			// make it a link ahead of this create, which a Notify that finds
			// the stream missing leaves alone, rather than drop it.
			if _, err := m.eng.Head(p); isGone(err) {
				s.reset(p, l, 0)
			}
		}
		s.mu.Unlock()
	}
	return m.creates.RUnlock
}

// Notify tells the subscriptions linked to stream p that it changed
// (created, appended to, closed or deleted): each looks at it again, and
// pending work wakes them. For a stream nobody links it is one lock-free
// lookup.
func (m *Manager) Notify(p string) {
	set, _ := m.linked.Load(p)
	if len(set) == 0 {
		return
	}
	// One look for all the subscriptions when it only moves a tail on (an
	// append: tails only grow, so a stale one changes nothing). A look
	// that would reset or drop a link (the stream gone, or another
	// incarnation) is made again under s.mu: of two Notifies, the one that
	// runs last then looks last, and a stale "missing" never undoes a
	// newer look.
	info, err := m.eng.Head(p)
	for s := range set {
		s.mu.Lock()
		if l := s.links[p]; l != nil && !s.deleted {
			i, e := info, err
			if e != nil || incarnation(i) != l.inc {
				i, e = m.eng.Head(p)
			}
			if s.observe(p, l, i, e) {
				s.evaluate()
			}
		}
		s.mu.Unlock()
	}
}

// incarnation identifies one life of a stream path: a stream deleted or
// expired and created again is another one. StreamInfo has no id for it;
// the creation time serves, in nanoseconds of the engine's clock, which two
// creates of one path (each a commit) do not share unless that clock
// stands still (engine.Options.Clock in a test). Keying the links on it,
// rather than on delete events, covers every way a stream goes: a DELETE,
// a TTL expiry (which tells nobody), a crash between a delete and its
// Notify; and recovery checks it against the streams it finds.
func incarnation(info engine.StreamInfo) int64 { return info.CreatedAt.UnixNano() }

func isGone(err error) bool {
	return errors.Is(err, engine.ErrNotFound) || errors.Is(err, engine.ErrGone)
}

// observe brings link l of stream p up to date with what Head found (info
// or err): the tail moves on; a stream of another incarnation resets the
// link to its start (all of it is pending); a stream gone drops a glob
// link and resets an explicit one (the stream may come back). Reports
// whether anything changed. Called with s.mu.
func (s *sub) observe(p string, l *link, info engine.StreamInfo, err error) bool {
	switch {
	case isGone(err):
		if l.inc == 0 {
			return false // linked ahead of its create, or reset already
		}
		if !l.explicit {
			s.unlink(p)
			return true
		}
		s.reset(p, l, 0)
		return true
	case err != nil:
		return false // (the engine is closing)
	}
	inc := incarnation(info)
	changed := false
	if l.inc != inc && (l.inc != 0 || l.acked > info.Tail) {
		s.reset(p, l, inc)
		changed = true
	}
	l.inc = inc
	if info.Tail > l.tail {
		l.tail, changed = info.Tail, true
	}
	return changed
}

// markGone notes that p's link went during the wake in flight (newLink).
func (s *sub) markGone(p string) {
	if !s.inflight {
		return
	}
	if s.goneThisWake == nil {
		s.goneThisWake = map[string]bool{}
	}
	s.goneThisWake[p] = true
}

// newLink is a link to p made now. It is fenced for the wake in flight if
// p's link went during it (its stream deleted, or expired, and created
// again): that wake's acks for p are for the stream that went. A stream
// linked for the first time is not fenced: an ack for it can only mean
// the stream that is there. Called with s.mu.
func (s *sub) newLink(p string) *link {
	l := &link{}
	if s.inflight && s.goneThisWake[p] {
		l.fence = s.gen
	}
	return l
}

// reset moves l back to the start of the stream's incarnation inc (0:
// none). It takes effect even if it cannot be stored: a cursor moved back
// redelivers, and recovery finds the same change again. Called with s.mu.
func (s *sub) reset(p string, l *link, inc int64) {
	l.acked, l.tail, l.inc = 0, 0, inc
	if s.inflight {
		l.fence = s.gen
	}
	if err := s.persist(record{Op: "link", Path: p, Link: l.rec()}); err != nil {
		s.m.log.Warn("subscriptions: storing a reset link failed", "id", s.id, "stream", p, "err", err)
	}
	s.m.log.Info("subscriptions: stream deleted or created again; its link starts over", "id", s.id, "stream", p)
}

// unlink drops the link to p (a glob link to a stream that is gone); if
// that cannot be stored, the link is reset instead. Called with s.mu.
func (s *sub) unlink(p string) {
	if err := s.persist(record{Op: "unlink", Path: p}); err != nil {
		s.reset(p, s.links[p], 0)
		return
	}
	delete(s.links, p)
	s.markGone(p)
	s.m.mu.Lock()
	s.m.unlinkIndex(p, s)
	s.m.mu.Unlock()
}

// ---- views --------------------------------------------------------------------------

type streamView struct {
	Path       string `json:"path"`
	LinkType   string `json:"link_type"`
	AckedOff   string `json:"acked_offset"`
	TailOff    string `json:"tail_offset,omitempty"`
	HasPending *bool  `json:"has_pending,omitempty"`
}

func (l *link) linkType() string {
	if l.explicit {
		return "explicit"
	}
	return "glob"
}

// view is the GET representation. Called with s.mu.
func (s *sub) view() []byte {
	streams := make([]streamView, 0, len(s.links))
	for _, p := range sortedPaths(s.links) {
		l := s.links[p]
		streams = append(streams, streamView{Path: p, LinkType: l.linkType(), AckedOff: l.acked.String()})
	}
	v := map[string]any{
		"id": s.id, "subscription_id": s.id, "type": s.cfg.Type, "pattern": nullable(s.cfg.Pattern),
		"streams": streams, "wake_stream": nullable(s.cfg.WakeStream), "lease_ttl_ms": s.cfg.LeaseTTLMs,
		"created_at": s.created.Format("2006-01-02T15:04:05.000Z07:00"), "status": s.status(),
		"description": nullable(s.cfg.Description), "generation": s.gen,
	}
	if s.cfg.Type == TypeWebhook {
		v["webhook"] = map[string]any{"url": s.cfg.WebhookURL, "signing": map[string]string{
			"alg": "ed25519", "kid": s.m.sign.kid, "jwks_url": s.baseURL + "__ds/jwks.json"}}
		if !s.nextAt.IsZero() {
			v["next_attempt_at"] = s.nextAt.UTC().Format(time.RFC3339Nano)
		}
	} else {
		v["webhook"] = nil
	}
	b, _ := json.Marshal(v)
	return b
}

func (s *sub) status() string {
	if s.attempts > 0 {
		return "failed"
	}
	return "active"
}

func nullable(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func sortedPaths(m map[string]*link) []string {
	out := make([]string, 0, len(m))
	for p := range m {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// pending returns the linked streams with unacked data, with their tails.
// Called with s.mu.
func (s *sub) pending() []streamView {
	var out []streamView
	yes := true
	for p, l := range s.links {
		if l.tail > l.acked {
			out = append(out, streamView{Path: p, LinkType: l.linkType(), AckedOff: l.acked.String(),
				TailOff: l.tail.String(), HasPending: &yes})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

func newWakeID() string {
	var b [12]byte
	rand.Read(b[:])
	return "w_" + hex.EncodeToString(b[:])
}

// errFenced answers a request for a wake that is not the current one.
var errFenced = &Error{Status: 409, Code: "FENCED", Message: "the wake is not current (stale wake_id or generation)"}

func internal(err error) *Error {
	return &Error{Status: 500, Code: "INTERNAL", Message: fmt.Sprintf("storing subscription state failed: %v", err)}
}
