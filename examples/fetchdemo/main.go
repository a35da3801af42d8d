// Command fetchdemo shows durastream's durablefetch front door doing what it
// is for: a chat page asks a (fake) LLM for an answer through a durable
// fetch; close the tab mid-answer, reopen the page, and the whole answer is
// there and keeps streaming. The model is asked once.
//
// It runs two HTTP servers on loopback:
//
//   - a fake LLM upstream that streams an answer as OpenAI-style
//     Server-Sent Events, one token every -interval (default 60 tokens,
//     100 ms apart):
//
//     data: {"choices":[{"index":0,"delta":{"content":" token"}}]}
//
//     and a final "data: [DONE]". GET /chat?id=ID streams the answer to
//     message ID; GET /calls?id=ID says how often /chat was called for it
//     and how far that answer got ({"calls","sent","done"}; without id: the
//     totals); GET /answer?id=ID is the whole answer at once, for checks.
//
//   - a chat page (index.html, embedded) that, for each message, fetches
//     <durablefetch>/127.0.0.1:<upstream port>/chat?id=<message id> (the
//     durablefetch URL form: the upstream host:port is the first path
//     segment), parses the SSE tokens from the streamed body and appends
//     them to the page. The message id is kept in localStorage, so a
//     reopened page fetches the same URL again: durastream replays what the
//     upstream has sent so far and then follows it live.
//
// # Run it
//
// Start durastream with the durablefetch API on its own listener and let
// durable fetches reach loopback upstreams on any port (loopback addresses
// are refused unless a pattern names the IP literal; see package fetch):
//
//	go run ./cmd/durastream serve --durability memory \
//	    --fetch-addr 127.0.0.1:4438 --proxy-allow 'http://127.0.0.1:*/**'
//
// (--durability sync, the default, keeps answers across restarts, in
// ./data.) Then, in another terminal, from the repository root:
//
//	go run ./examples/fetchdemo -durablefetch http://127.0.0.1:4438
//
// and open http://127.0.0.1:8090/. Send a message, close the tab while the
// answer streams, wait a few seconds and open the page again: the answer
// is replayed from its first token and goes on streaming; the upstream's
// /calls (http://127.0.0.1:8091/calls) still says one call per message.
//
// Flags: -addr (page, default 127.0.0.1:8090), -upstream-addr (fake LLM,
// default 127.0.0.1:8091; port 0 picks a free port), -tokens, -interval.
// The page reads the durablefetch URL and the upstream's host:port from
// /config.json. It prints "fetchdemo: fake LLM upstream at URL" and
// "fetchdemo: chat page at URL" once both listen (the browser test in
// interop/browser reads them).
package main

import (
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
)

//go:embed index.html
var indexHTML []byte

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fetchdemo:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		dfURL    = flag.String("durablefetch", "", "URL of durastream's durablefetch API (its --fetch-addr), e.g. http://127.0.0.1:4438 (required)")
		pageAddr = flag.String("addr", "127.0.0.1:8090", "listen address of the chat page")
		upAddr   = flag.String("upstream-addr", "127.0.0.1:8091", "listen address of the fake LLM upstream (loopback; port 0: any free port)")
		tokens   = flag.Int("tokens", 60, "tokens per answer")
		interval = flag.Duration("interval", 100*time.Millisecond, "time between tokens")
	)
	flag.Parse()
	if flag.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", flag.Args())
	}
	df, err := url.Parse(strings.TrimRight(*dfURL, "/"))
	if *dfURL == "" || err != nil || (df.Scheme != "http" && df.Scheme != "https") || df.Host == "" {
		return errors.New("-durablefetch must be the URL of durastream's --fetch-addr listener, e.g. http://127.0.0.1:4438")
	}
	if *tokens < 1 || *interval < 0 {
		return errors.New("-tokens must be at least 1 and -interval not negative")
	}

	upLn, err := net.Listen("tcp", *upAddr)
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	pageLn, err := net.Listen("tcp", *pageAddr)
	if err != nil {
		return fmt.Errorf("page: %w", err)
	}
	up := &upstream{tokens: *tokens, interval: *interval, answers: map[string]*progress{}, done: make(chan struct{})}
	upHost := upLn.Addr().String()
	page := pageHandler(df.String(), upHost)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	servers := []*http.Server{
		{Handler: up.handler(), ReadHeaderTimeout: 10 * time.Second},
		{Handler: page, ReadHeaderTimeout: 10 * time.Second},
	}
	errc := make(chan error, 2)
	for i, ln := range []net.Listener{upLn, pageLn} {
		go func() { errc <- servers[i].Serve(ln) }()
	}
	fmt.Printf("fetchdemo: fake LLM upstream at http://%s (GET /chat?id=ID, /calls, /answer?id=ID)\n", upHost)
	fmt.Printf("fetchdemo: chat page at http://%s/ (answers through %s)\n", pageLn.Addr(), df)

	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	up.stop()
	sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	for _, s := range servers {
		s.Shutdown(sctx)
	}
	return nil
}

// pageHandler serves the chat page and its configuration.
func pageHandler(durablefetch, upstreamHost string) http.Handler {
	cfg, _ := json.Marshal(map[string]string{"durablefetch": durablefetch, "upstream": upstreamHost})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(indexHTML)
	})
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(cfg)
	})
	mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}

// upstream is the fake LLM.
type upstream struct {
	tokens   int
	interval time.Duration

	mu      sync.Mutex
	total   int                  // calls of /chat
	answers map[string]*progress // by message id
	done    chan struct{}        // closed by stop: answers in flight end
	once    sync.Once
}

// progress is how far the answer to one message got.
type progress struct {
	Calls int  `json:"calls"` // calls of /chat for this id
	Sent  int  `json:"sent"`  // tokens sent by the latest call
	Done  bool `json:"done"`  // the latest call sent [DONE]
}

func (u *upstream) stop() { u.once.Do(func() { close(u.done) }) }

func (u *upstream) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/chat", u.chat)
	mux.HandleFunc("GET /calls", u.calls)
	mux.HandleFunc("GET /answer", u.answer)
	return mux
}

// messageID is the id query parameter, or "" if it is missing or unfit.
func messageID(r *http.Request) string {
	id := r.URL.Query().Get("id")
	if id == "" || len(id) > 128 {
		return ""
	}
	for _, c := range id {
		if !(c == '-' || c == '_' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return ""
		}
	}
	return id
}

// answerTokens is the answer to message id: tokens as an LLM streams them,
// each but the first with its leading space.
func answerTokens(id string, n int) []string {
	short := id
	if len(short) > 8 {
		short = short[:8]
	}
	words := append([]string{"Answer", "to", short + ":"}, strings.Fields(answerText)...)
	toks := make([]string, n)
	for i := range toks {
		w := words[i%len(words)]
		if i > 0 {
			w = " " + w
		}
		toks[i] = w
	}
	return toks
}

const answerText = `durable fetch keeps this answer safe. The server asked the
model once and stores every token as it arrives — close the tab, lose the
network or reload the page, and the same URL replays what was already said,
then follows the rest live, token by token, until the model is done. Nothing
is lost, nothing is repeated, and the model is never asked twice. ✓`

// chat streams the answer to ?id= as SSE, one token every interval.
func (u *upstream) chat(w http.ResponseWriter, r *http.Request) {
	id := messageID(r)
	if id == "" {
		http.Error(w, "want ?id=<message id> (letters, digits, - _ .; at most 128)", http.StatusBadRequest)
		return
	}
	u.mu.Lock()
	u.total++
	p := u.answers[id]
	if p == nil {
		p = &progress{}
		u.answers[id] = p
	}
	p.Calls++
	p.Sent, p.Done = 0, false
	u.mu.Unlock()
	log.Printf("fetchdemo: upstream: %s /chat?id=%s (call %d for this id)", r.Method, id, p.Calls)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream; charset=utf-8")
	h.Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	rc.Flush()
	tick := time.NewTicker(max(u.interval, time.Microsecond))
	defer tick.Stop()
	for i, tok := range answerTokens(id, u.tokens) {
		if i > 0 || u.interval > 0 {
			select {
			case <-tick.C:
			case <-r.Context().Done():
				log.Printf("fetchdemo: upstream: /chat?id=%s: caller left after %d tokens", id, i)
				return
			case <-u.done:
				return
			}
		}
		b, _ := json.Marshal(chunk{ID: "chatcmpl-" + id, Object: "chat.completion.chunk", Model: "fake-llm",
			Choices: []choice{{Delta: delta{Content: tok}}}})
		if _, err := fmt.Fprintf(w, "data: %s\n\n", b); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		u.mu.Lock()
		p.Sent = i + 1
		u.mu.Unlock()
	}
	io.WriteString(w, "data: [DONE]\n\n")
	rc.Flush()
	u.mu.Lock()
	p.Done = true
	u.mu.Unlock()
}

// chunk is one OpenAI-style chat completion chunk.
type chunk struct {
	ID      string   `json:"id"`
	Object  string   `json:"object"`
	Model   string   `json:"model"`
	Choices []choice `json:"choices"`
}

type choice struct {
	Index int   `json:"index"`
	Delta delta `json:"delta"`
}

type delta struct {
	Content string `json:"content"`
}

// calls reports how often /chat was called: for ?id= that message's
// progress, else {"total", "byId"}.
func (u *upstream) calls(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	var v any
	if id := r.URL.Query().Get("id"); id != "" {
		p := progress{}
		if a := u.answers[id]; a != nil {
			p = *a
		}
		v = p
	} else {
		by := make(map[string]progress, len(u.answers))
		for id, a := range u.answers {
			by[id] = *a
		}
		v = map[string]any{"total": u.total, "byId": by}
	}
	u.mu.Unlock()
	writeJSON(w, v)
}

// answer is the whole answer to ?id=, as its tokens and their text.
func (u *upstream) answer(w http.ResponseWriter, r *http.Request) {
	id := messageID(r)
	if id == "" {
		http.Error(w, "want ?id=<message id>", http.StatusBadRequest)
		return
	}
	toks := answerTokens(id, u.tokens)
	writeJSON(w, map[string]any{"tokens": toks, "text": strings.Join(toks, "")})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(v)
}
