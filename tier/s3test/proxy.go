package s3test

import (
	"crypto/rand"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7/pkg/signer"
)

// Mode is what the proxy does with a request.
type Mode int

const (
	// Pass forwards the request unchanged.
	Pass Mode = iota
	// Fail503 answers 503 with an S3 SlowDown error, forwarding nothing.
	Fail503
	// Refuse closes the connection without answering.
	Refuse
	// Hang holds the request until its method's mode is no longer Hang,
	// then handles it per the new mode, or until the client gives up. A
	// held request with a body (a PUT) does not see the client go, as
	// net/http notices that only once the body is read: it stays held
	// until a mode change or the proxy's cleanup.
	Hang
	// StripRange forwards the request without its Range header, as a proxy
	// that does not pass it on would: a ranged GET is answered with the
	// whole object and 200. S3 signatures cover Range, so the request is
	// signed again with the keys given to SignWith.
	StripRange
)

func (m Mode) String() string {
	switch m {
	case Pass:
		return "Pass"
	case Fail503:
		return "Fail503"
	case Refuse:
		return "Refuse"
	case Hang:
		return "Hang"
	case StripRange:
		return "StripRange"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Proxy is a fault-injecting HTTP proxy in front of an S3 server. It
// forwards requests unchanged, the Host header included, since S3
// signatures cover it: clients sign for the proxy's address and the server
// checks what it receives. Bodies stream both ways.
type Proxy struct {
	Endpoint string // 127.0.0.1:PORT, no scheme

	t      testing.TB
	srv    *httptest.Server
	rp     *httputil.ReverseProxy
	closed chan struct{} // releases held requests at cleanup

	mu       sync.Mutex
	def      Mode
	byMethod map[string]Mode
	changed  chan struct{} // closed and replaced on every mode change
	counts   map[string]int64
	ended    bool // no t.Logf once the test is over

	accessKey, secretKey string // SignWith
}

// NewProxy starts a proxy to target ("host:port", plain HTTP) on a free
// 127.0.0.1 port, in Pass mode, and closes it when the test ends.
func NewProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	p := &Proxy{
		t:        t,
		closed:   make(chan struct{}),
		byMethod: map[string]Mode{},
		changed:  make(chan struct{}),
		counts:   map[string]int64{},
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.Proxy = nil               // straight to target, whatever HTTP_PROXY says
	tr.DisableCompression = true // no Accept-Encoding added, no body decoded
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme = "http"
			r.Out.URL.Host = target
			r.Out.Host = r.In.Host
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorHandler:  p.proxyError,
	}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	p.Endpoint = strings.TrimPrefix(p.srv.URL, "http://")
	t.Cleanup(func() {
		p.mu.Lock()
		p.ended = true
		p.mu.Unlock()
		close(p.closed)
		p.srv.CloseClientConnections()
		p.srv.Close()
		tr.CloseIdleConnections()
	})
	return p
}

// SetMode sets the mode of every method, dropping SetModeFor overrides.
func (p *Proxy) SetMode(m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.def = m
	clear(p.byMethod)
	p.notifyLocked()
}

// SetModeFor sets the mode of one method ("PUT"), overriding the default;
// method "" sets the default, keeping the overrides.
func (p *Proxy) SetModeFor(method string, m Mode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if method == "" {
		p.def = m
	} else {
		p.byMethod[strings.ToUpper(method)] = m
	}
	p.notifyLocked()
}

// SignWith gives the keys StripRange signs requests with again.
func (p *Proxy) SignWith(accessKey, secretKey string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.accessKey, p.secretKey = accessKey, secretKey
}

// Count returns how many requests of method ("" for all) the proxy has
// received, whatever their mode.
func (p *Proxy) Count(method string) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if method == "" {
		var n int64
		for _, c := range p.counts {
			n += c
		}
		return n
	}
	return p.counts[strings.ToUpper(method)]
}

func (p *Proxy) notifyLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// mode returns method's mode and a channel closed at the next change.
func (p *Proxy) mode(method string) (Mode, <-chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	m, ok := p.byMethod[method]
	if !ok {
		m = p.def
	}
	return m, p.changed
}

func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.counts[r.Method]++
	p.mu.Unlock()

	m, changed := p.mode(r.Method)
	for m == Hang {
		select {
		case <-changed:
			m, changed = p.mode(r.Method)
		case <-r.Context().Done():
			panic(http.ErrAbortHandler) // the client is gone: no answer
		case <-p.closed:
			panic(http.ErrAbortHandler)
		}
	}
	if r.Context().Err() != nil {
		panic(http.ErrAbortHandler) // gave up as it was released
	}

	switch m {
	case Fail503:
		writeSlowDown(w, r)
	case Refuse:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		conn.Close()
	case StripRange:
		p.rp.ServeHTTP(w, p.unranged(r))
	default:
		p.rp.ServeHTTP(w, r)
	}
}

// unranged is r without its Range header, signed again (SignWith).
func (p *Proxy) unranged(r *http.Request) *http.Request {
	r = r.Clone(r.Context())
	r.Header.Del("Range")
	r.Header.Del("Authorization")
	p.mu.Lock()
	access, secret := p.accessKey, p.secretKey
	p.mu.Unlock()
	return signer.SignV4(*r, access, secret, "", Region)
}

// writeSlowDown answers like S3 does when it sheds load.
func writeSlowDown(w http.ResponseWriter, r *http.Request) {
	id := rand.Text()[:16]
	var res strings.Builder
	_ = xml.EscapeText(&res, []byte(r.URL.Path))
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Retry-After", "1")
	h.Set("X-Amz-Request-Id", id)
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+
		`<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message>`+
		`<Resource>%s</Resource><RequestId>%s</RequestId></Error>`, res.String(), id)
}

// proxyError answers 502 when the target cannot be reached (it is stopped,
// say) and notes why in the test log, unless the client left.
func (p *Proxy) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	p.mu.Lock()
	if !p.ended && r.Context().Err() == nil {
		p.t.Logf("s3test proxy: %s %s: %v", r.Method, r.URL.Path, err)
	}
	p.mu.Unlock()
	w.WriteHeader(http.StatusBadGateway)
}
