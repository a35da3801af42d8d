package browser

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The demo's answer: answerTokens tokens, one every tokenInterval (6 s).
const (
	answerTokens  = 60
	tokenInterval = 100 * time.Millisecond
)

// pageState is what the chat page shows for its last message.
type pageState struct {
	Ready     bool   `json:"ready"`     // the page has loaded its config
	Answers   int    `json:"answers"`   // answer elements on the page
	ID        string `json:"id"`        // message id of the last one
	Tokens    int    `json:"tokens"`    // tokens appended to it
	State     string `json:"state"`     // streaming, done or error
	Text      string `json:"text"`      // its text, exactly
	FirstRead int    `json:"firstRead"` // tokens after the first body read that had any
	Status    string `json:"status"`    // the status line under it
}

const pageStateJS = `(() => {
  const as = document.querySelectorAll(".answer");
  const a = as[as.length - 1];
  const st = a ? a.parentElement.querySelector(".status") : null;
  return {
    ready: !!document.body && document.body.dataset.ready === "true",
    answers: as.length,
    id: a ? a.dataset.id : "",
    tokens: a ? Number(a.dataset.tokens || 0) : 0,
    state: a ? (a.dataset.state || "") : "",
    text: a ? a.textContent : "",
    firstRead: a && a.dataset.firstReadTokens ? Number(a.dataset.firstReadTokens) : 0,
    status: st ? st.textContent : "",
  };
})()`

func readPage(tab context.Context) (pageState, error) {
	return chromedp.Run(tab, chromedp.Evaluate[pageState](pageStateJS))
}

// waitPage polls the page every 20 ms until cond holds; seen is called
// with every state read.
func waitPage(t *testing.T, tab context.Context, what string, limit time.Duration, seen func(pageState), cond func(pageState) bool) pageState {
	t.Helper()
	deadline := time.Now().Add(limit)
	var s pageState
	for {
		var err error
		s, err = readPage(tab)
		if err != nil {
			t.Fatalf("reading the page while waiting for %s: %v", what, err)
		}
		if seen != nil {
			seen(s)
		}
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; the page shows %+v", limit, what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// progress is the upstream's GET /calls?id= answer.
type progress struct {
	Calls int  `json:"calls"`
	Sent  int  `json:"sent"`
	Done  bool `json:"done"`
}

// inProgress is durablefetch's POST /in-progress answer.
type inProgress struct {
	InProgress        bool  `json:"inProgress"`
	ActiveConnections int   `json:"activeConnections"`
	ChunksStored      int64 `json:"chunksStored"`
	Completed         bool  `json:"completed"`
}

// syncBuffer collects Chromium's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTabClosedMidAnswer: a message is sent, its answer starts streaming
// through durablefetch, the tab is closed mid-answer while the upstream goes
// on, and the page reopened in a new tab replays the whole answer and keeps
// streaming it to the end: every token once, in order, byte-exact; the
// upstream is called once.
func TestTabClosedMidAnswer(t *testing.T) {
	if chromiumPath == "" {
		if os.Getenv("CI") != "" || os.Getenv("DURASTREAM_REQUIRE_BROWSER") == "1" {
			t.Fatalf("no browser in CI (CI or DURASTREAM_REQUIRE_BROWSER set): %s", skipReason)
		}
		t.Skip(skipReason)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()

	var browserOut syncBuffer
	t.Cleanup(func() {
		if t.Failed() {
			out := browserOut.String()
			if len(out) > 8<<10 {
				out = out[len(out)-8<<10:]
			}
			t.Logf("---- Chromium output (tail) ----\n%s", out)
		}
	})
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.CombinedOutput(&browserOut),
	)
	defer cancelAlloc() // waits for Chromium to exit (before TempDir is removed)
	browserCtx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(browserCtx); err != nil {
		t.Fatalf("starting %s: %v", chromiumPath, err)
	}

	var calls struct {
		Total int `json:"total"` // calls of /chat, all messages
	}
	if err := getJSON(ctx, upstreamURL+"/calls", &calls); err != nil {
		t.Fatalf("GET /calls: %v", err)
	}
	callsBefore := calls.Total

	// Tab 1: open the page and send a message.
	tab1, closeTab1 := chromedp.NewContext(browserCtx)
	defer closeTab1()
	if err := chromedp.Do(tab1, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("opening %s: %v", pageURL, err)
	}
	waitPage(t, tab1, "the page to load", 10*time.Second, nil, func(s pageState) bool { return s.Ready })
	if err := chromedp.Do(tab1,
		chromedp.SendKeys(chromedp.CSS("#prompt"), "What does durable fetch do?"),
		chromedp.Click(chromedp.CSS("#send")),
	); err != nil {
		t.Fatalf("sending a message: %v", err)
	}

	// Some tokens, not all.
	const before = 8
	s1 := waitPage(t, tab1, fmt.Sprintf("%d tokens in the first tab", before), 10*time.Second, nil,
		func(s pageState) bool { return s.Tokens >= before || s.State == "error" || s.State == "done" })
	if s1.State != "streaming" || s1.Tokens >= answerTokens {
		t.Fatalf("first tab: want the answer streaming with fewer than %d tokens, page shows %+v", answerTokens, s1)
	}
	id := s1.ID
	upstreamChat := upstreamURL + "/chat?id=" + id
	var answer struct {
		Tokens []string `json:"tokens"`
		Text   string   `json:"text"`
	}
	if err := getJSON(ctx, upstreamURL+"/answer?id="+id, &answer); err != nil {
		t.Fatalf("GET /answer: %v", err)
	}
	if len(answer.Tokens) != answerTokens || !strings.HasPrefix(answer.Tokens[1], " ") {
		t.Fatalf("the demo's answer has %d tokens (want %d, with leading spaces): %q", len(answer.Tokens), answerTokens, answer.Tokens)
	}
	if !strings.HasPrefix(answer.Text, s1.Text) {
		t.Fatalf("first tab shows %q, not a prefix of the answer %q", s1.Text, answer.Text)
	}
	t.Logf("message %s: first tab showed %d tokens %q", id, s1.Tokens, s1.Text)

	var p progress
	if err := getJSON(ctx, upstreamURL+"/calls?id="+id, &p); err != nil {
		t.Fatalf("GET /calls: %v", err)
	}
	if p.Calls != 1 || p.Done {
		t.Fatalf("upstream before the tab closes: %+v, want 1 call, not done", p)
	}
	ipBody, _ := json.Marshal(map[string]string{"url": upstreamChat})
	var ip inProgress
	if err := postJSON(ctx, fetchURL+"/in-progress", string(ipBody), &ip); err != nil {
		t.Fatalf("POST /in-progress: %v", err)
	}
	if !ip.InProgress || ip.Completed || ip.ActiveConnections < 1 {
		t.Fatalf("/in-progress with the first tab reading: %+v, want in progress with a connection", ip)
	}

	// Close the tab mid-answer.
	tab1Target := chromedp.FromContext(tab1).Target.TargetID
	closeTab1()
	targets, err := chromedp.Targets(browserCtx)
	if err != nil {
		t.Fatalf("listing the browser's targets: %v", err)
	}
	for _, tg := range targets {
		if tg.TargetID == tab1Target {
			t.Fatalf("the first tab (%s) is still open after closing it", tab1Target)
		}
	}
	// The tab's response is gone from durablefetch; the fetch goes on.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := postJSON(ctx, fetchURL+"/in-progress", string(ipBody), &ip); err != nil {
			t.Fatalf("POST /in-progress: %v", err)
		}
		if ip.ActiveConnections == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/in-progress 5s after the tab closed: %+v, want no active connection", ip)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !ip.InProgress {
		t.Fatalf("/in-progress after the tab closed: %+v, want the fetch still in progress", ip)
	}
	if err := getJSON(ctx, upstreamURL+"/calls?id="+id, &p); err != nil {
		t.Fatalf("GET /calls: %v", err)
	}
	sentAtClose := p.Sent

	// The upstream keeps going with nobody reading.
	time.Sleep(10 * tokenInterval)
	if err := getJSON(ctx, upstreamURL+"/calls?id="+id, &p); err != nil {
		t.Fatalf("GET /calls: %v", err)
	}
	if p.Calls != 1 || p.Done || p.Sent <= sentAtClose {
		t.Fatalf("upstream with the tab closed: %+v (had sent %d at close), want 1 call still streaming", p, sentAtClose)
	}
	t.Logf("tab closed with %d tokens shown; upstream had sent %d then, %d now", s1.Tokens, sentAtClose, p.Sent)

	// Tab 2: reopen the page. It finds the message in localStorage and
	// fetches the same URL: the answer replays, then follows the upstream.
	tab2, closeTab2 := chromedp.NewContext(browserCtx)
	defer closeTab2()
	if err := chromedp.Do(tab2, chromedp.Navigate(pageURL)); err != nil {
		t.Fatalf("reopening %s: %v", pageURL, err)
	}
	var counts []int // distinct token counts seen after reopening
	seen := func(s pageState) {
		if s.Tokens > 0 && (len(counts) == 0 || counts[len(counts)-1] != s.Tokens) {
			counts = append(counts, s.Tokens)
		}
	}
	s2 := waitPage(t, tab2, "tokens in the reopened tab", 10*time.Second, seen,
		func(s pageState) bool { return s.Tokens > 0 || s.State == "error" || s.State == "done" })
	var pAtReopen progress
	if err := getJSON(ctx, upstreamURL+"/calls?id="+id, &pAtReopen); err != nil {
		t.Fatalf("GET /calls: %v", err)
	}
	if s2.ID != id || s2.Answers != 1 {
		t.Fatalf("reopened tab shows %d answers, the last for message %q; want one, for %q", s2.Answers, s2.ID, id)
	}
	if s2.Tokens >= answerTokens || s2.State != "streaming" || pAtReopen.Done {
		t.Fatalf("reopened tab: want the answer still streaming, page shows %d/%d tokens (%s), upstream %+v",
			s2.Tokens, answerTokens, s2.State, pAtReopen)
	}
	if !strings.HasPrefix(answer.Text, s2.Text) || !strings.HasPrefix(s2.Text, s1.Text) {
		t.Fatalf("reopened tab shows %q: want a prefix of the answer that extends what the first tab showed (%q)", s2.Text, s1.Text)
	}
	t.Logf("reopened: %d tokens at first sight (%d after the first body read), upstream had sent %d",
		s2.Tokens, s2.FirstRead, pAtReopen.Sent)

	s3 := waitPage(t, tab2, "the whole answer", 20*time.Second, seen,
		func(s pageState) bool { return s.State == "done" || s.State == "error" })
	if s3.State != "done" {
		t.Fatalf("reopened tab ended %q (%s) with %d tokens: %q", s3.State, s3.Status, s3.Tokens, s3.Text)
	}
	if s3.Text != answer.Text || s3.Tokens != answerTokens {
		t.Fatalf("reopened tab shows %d tokens:\n got %q\nwant %q (%d tokens)", s3.Tokens, s3.Text, answer.Text, answerTokens)
	}
	// Still streaming when reopened: the count grew in steps after it.
	var live int
	for _, c := range counts {
		if c > s2.Tokens && c < answerTokens {
			live++
		}
	}
	if live < 2 {
		t.Fatalf("reopened tab: token counts seen %v; want it to keep growing after the replay", counts)
	}
	t.Logf("reopened tab: token counts seen %v", counts)

	// One upstream call in all, and the fetch is complete.
	if err := getJSON(ctx, upstreamURL+"/calls?id="+id, &p); err != nil {
		t.Fatalf("GET /calls: %v", err)
	}
	if p.Calls != 1 || !p.Done || p.Sent != answerTokens {
		t.Fatalf("upstream at the end: %+v, want exactly 1 call that sent all %d tokens", p, answerTokens)
	}
	if err := getJSON(ctx, upstreamURL+"/calls", &calls); err != nil {
		t.Fatalf("GET /calls: %v", err)
	}
	if n := calls.Total - callsBefore; n != 1 {
		t.Fatalf("upstream /chat called %d times during the test, want 1", n)
	}
	deadline = time.Now().Add(5 * time.Second)
	for {
		if err := postJSON(ctx, fetchURL+"/in-progress", string(ipBody), &ip); err != nil {
			t.Fatalf("POST /in-progress: %v", err)
		}
		if ip.Completed && !ip.InProgress {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/in-progress after the answer ended: %+v, want completed", ip)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// doJSON sends req and decodes a 200 answer into v.
func doJSON(req *http.Request, v any) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL, resp.Status, strconv.Quote(string(b)))
	}
	return json.Unmarshal(b, v)
}
