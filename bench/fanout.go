package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Fan-out: Subscribers subscribers (SSE or long-poll) tail one text/plain
// stream from its start; once they are connected, one writer appends a
// message every 1/Rate seconds for Duration. The writer pipelines its POSTs
// on a single HTTP/1.1 connection (it does not wait for an acknowledgement
// before sending the next), so a slow server cannot silently lower the
// offered rate, and the server sees the messages in the order they were
// sent. Each message is one line:
//
//	SSSSSSSSSS TTTTTTTTTTTTTTTT pad...\n
//
// with a 10-digit sequence number and the 16-digit send time in
// nanoseconds since the run began (monotonic clock, same process), so a
// subscriber knows each message's delivery latency, and which messages it
// has missed, seen twice or seen out of order.

const msgHead = 28 // "SSSSSSSSSS TTTTTTTTTTTTTTTT\n"

func runFanoutSSE(r *runner) error      { return r.fanout("sse") }
func runFanoutLongPoll(r *runner) error { return r.fanout("long-poll") }

type fanout struct {
	r     *runner
	mode  string
	u     string
	epoch time.Time
	max   int64 // most messages the writer may send (bitmap size)
	hist  *shardedHist

	acked     []uint64 // bitmap of 2xx-acknowledged sequence numbers (set by the ack reader)
	lastAcked atomic.Int64
}

type subscriber struct {
	id        int
	f         *fanout
	seen      []uint64
	maxSeq    atomic.Int64
	ready     atomic.Bool
	readyCh   chan struct{}
	readyOnce sync.Once
	sem       chan struct{} // connect slots: held from the first request until ready
	semHeld   atomic.Bool

	delivered, dups, ooo, reconnects, errs int64
	lats                                   []time.Duration
}

func (f *fanout) fanoutMsgSize() int { return max(f.r.cfg.Size, msgHead) }

func (r *runner) fanout(mode string) error {
	cfg := r.cfg
	urls, err := r.createStreams("s", 1, "text/plain")
	if err != nil {
		return err
	}
	f := &fanout{r: r, mode: mode, u: urls[0], epoch: time.Now(), hist: newShardedHist()}
	f.max = int64(cfg.Rate*cfg.Duration.Seconds()*1.1) + 16
	f.acked = make([]uint64, (f.max+63)/64)
	f.lastAcked.Store(-1)
	r.res.Concurrency = cfg.Subscribers
	r.res.MsgBytes = f.fanoutMsgSize()

	subCtx, stopSubs := context.WithCancel(r.ctx)
	defer stopSubs()
	subs := make([]*subscriber, cfg.Subscribers)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64) // connect at most 64 at a time
	for i := range subs {
		s := &subscriber{id: i, f: f, seen: make([]uint64, (f.max+63)/64), readyCh: make(chan struct{}), sem: sem}
		s.maxSeq.Store(-1)
		subs[i] = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer s.releaseSlot()
			if mode == "sse" {
				s.runSSE(subCtx)
			} else {
				s.runLongPoll(subCtx)
			}
		}()
	}
	// Wait (bounded) for the subscribers to be in place.
	connectBy := time.Now().Add(min(cfg.Timeout, 20*time.Second))
	connected := 0
	for _, s := range subs {
		select {
		case <-s.readyCh:
			connected++
		case <-time.After(time.Until(connectBy)):
		case <-r.ctx.Done():
		}
	}
	r.logf("%d of %d %s subscribers connected", connected, cfg.Subscribers, mode)
	if connected == 0 {
		stopSubs()
		wg.Wait()
		return fmt.Errorf("no %s subscriber could connect", mode)
	}
	time.Sleep(200 * time.Millisecond) // long-poll: let the first requests reach the server

	end := r.startTimed()
	w, err := f.write(end)
	elapsed := time.Since(r.t0).Seconds()
	if err != nil {
		r.res.Notes = append(r.res.Notes, "writer: "+err.Error())
	}
	// Drain: wait for every connected subscriber to reach the last
	// acknowledged message, or for Drain to pass.
	last := f.lastAcked.Load()
	drainBy := time.Now().Add(cfg.Drain)
	for time.Now().Before(drainBy) {
		behind := 0
		for _, s := range subs {
			if s.ready.Load() && s.maxSeq.Load() < last {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	stopSubs()
	wg.Wait()

	st := &FanoutStats{Mode: mode, Subscribers: cfg.Subscribers, TargetRate: cfg.Rate, Sent: w.sent, Acked: w.ackedN}
	st.SentRate = rate(w.sent, w.sendSecs)
	st.AckedRate = rate(w.ackedN, w.ackSecs)
	for _, s := range subs {
		if !s.ready.Load() {
			continue
		}
		st.Connected++
		for i := range s.seen {
			a := f.acked[i]
			st.Delivered += int64(popcount(s.seen[i] & a))
			st.Missing += int64(popcount(a &^ s.seen[i]))
		}
		st.Duplicates += s.dups
		st.OutOfOrder += s.ooo
		st.Reconnects += s.reconnects
		st.SubErrors += s.errs
	}
	st.Expected = w.ackedN * int64(st.Connected)
	dh := f.hist.merged()
	st.Delivery = summarize(dh)
	st.Ack = summarize(w.t.lat)
	r.res.Fanout = st
	t := w.t
	t.ops = st.Delivered
	t.lat = dh
	r.finish(t, "deliveries", elapsed)
	if connected < cfg.Subscribers {
		r.res.Notes = append(r.res.Notes, fmt.Sprintf("only %d of %d subscribers were connected when the writer started", connected, cfg.Subscribers))
	}
	return nil
}

func popcount(x uint64) int {
	n := 0
	for x != 0 {
		x &= x - 1
		n++
	}
	return n
}

type writerStats struct {
	t                 *tally // requests, errors, non-2xx, ack latency
	sent, ackedN      int64
	sendSecs, ackSecs float64
}

// write runs the pipelined writer until end and waits (bounded) for the
// acknowledgements.
func (f *fanout) write(end time.Time) (*writerStats, error) {
	cfg := f.r.cfg
	ws := &writerStats{t: newTally()}
	u, err := url.Parse(f.u)
	if err != nil {
		return ws, err
	}
	conn, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(f.r.ctx, "tcp", u.Host)
	if err != nil {
		return ws, err
	}
	defer conn.Close()
	size := f.fanoutMsgSize()
	head := []byte(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", u.RequestURI(), u.Host, size))
	msg := payload(size)
	msg[10], msg[27] = ' ', ' '
	bw := bufio.NewWriterSize(conn, 16<<10)
	sendAt := make([]time.Duration, f.max)
	sentCh := make(chan int64, f.max)

	start := time.Now()
	ackDone := make(chan error, 1)
	var lastAck time.Time
	go func() { // the acknowledgement reader
		br := bufio.NewReaderSize(conn, 16<<10)
		req := &http.Request{Method: http.MethodPost}
		buf := make([]byte, 4<<10)
		t := ws.t
		for seq := range sentCh {
			conn.SetReadDeadline(time.Now().Add(cfg.Timeout))
			resp, err := http.ReadResponse(br, req)
			if err != nil {
				t.fail(err)
				ackDone <- err
				return
			}
			if _, err := drain(resp, buf); err != nil {
				t.fail(err)
				ackDone <- err
				return
			}
			if t.status(resp.StatusCode) {
				now := time.Since(f.epoch)
				recordUS(t.lat, now-sendAt[seq])
				f.acked[seq/64] |= 1 << (seq % 64)
				f.lastAcked.Store(seq)
				ws.ackedN++
				lastAck = time.Now()
			}
		}
		ackDone <- nil
	}()

	interval := time.Duration(float64(time.Second) / cfg.Rate)
	var werr error
	for seq := int64(0); seq < f.max; seq++ {
		due := start.Add(time.Duration(seq) * interval)
		if !due.Before(end) {
			break
		}
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		now := time.Since(f.epoch)
		putDigits(msg[0:10], uint64(seq))
		putDigits(msg[11:27], uint64(now))
		sendAt[seq] = now
		conn.SetWriteDeadline(time.Now().Add(cfg.Timeout))
		bw.Write(head)
		bw.Write(msg)
		if werr = bw.Flush(); werr != nil {
			break
		}
		ws.sent++
		sentCh <- seq
	}
	ws.sendSecs = time.Since(start).Seconds()
	close(sentCh)
	var aerr error
	select {
	case aerr = <-ackDone:
	case <-time.After(cfg.Timeout + cfg.Drain):
		aerr = errors.New("acknowledgements did not arrive in time")
		conn.Close()
		<-ackDone
	}
	if !lastAck.IsZero() {
		ws.ackSecs = lastAck.Sub(start).Seconds()
	}
	if ws.ackSecs < ws.sendSecs {
		ws.ackSecs = ws.sendSecs
	}
	return ws, errors.Join(werr, aerr)
}

// putDigits writes v in decimal, zero-padded to len(b).
func putDigits(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = '0' + byte(v%10)
		v /= 10
	}
}

// parseMsg parses a message line; ok is false for anything else.
func parseMsg(line []byte) (seq int64, sent time.Duration, ok bool) {
	if len(line) < msgHead-1 || line[10] != ' ' {
		return 0, 0, false
	}
	var s, t int64
	for _, c := range line[0:10] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		s = s*10 + int64(c-'0')
	}
	for _, c := range line[11:27] {
		if c < '0' || c > '9' {
			return 0, 0, false
		}
		t = t*10 + int64(c-'0')
	}
	return s, time.Duration(t), true
}

func (s *subscriber) markReady() {
	s.readyOnce.Do(func() {
		s.ready.Store(true)
		close(s.readyCh)
	})
	s.releaseSlot()
}

// takeSlot waits for a connect slot (at most 64 subscribers connect at a
// time) unless the subscriber is ready or already holds one.
func (s *subscriber) takeSlot(ctx context.Context) {
	if s.ready.Load() || s.semHeld.Load() {
		return
	}
	select {
	case s.sem <- struct{}{}:
		s.semHeld.Store(true)
	case <-ctx.Done():
	}
}

func (s *subscriber) releaseSlot() {
	if s.semHeld.CompareAndSwap(true, false) {
		<-s.sem
	}
}

// deliver records one delivered message line received at now.
func (s *subscriber) deliver(line []byte, now time.Duration) {
	seq, sent, ok := parseMsg(line)
	if !ok || seq < 0 || seq >= s.f.max {
		return
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if s.seen[w]&bit != 0 {
		s.dups++
		return
	}
	s.seen[w] |= bit
	if seq < s.maxSeq.Load() {
		s.ooo++
	} else {
		s.maxSeq.Store(seq)
	}
	s.delivered++
	s.lats = append(s.lats, now-sent)
	if len(s.lats) >= 256 {
		s.flush()
	}
}

func (s *subscriber) flush() {
	if len(s.lats) > 0 {
		s.f.hist.recordMany(s.id, s.lats)
		s.lats = s.lats[:0]
	}
}

// runSSE tails the stream over SSE, reconnecting from the last control
// event's offset when the server ends the response.
func (s *subscriber) runSSE(ctx context.Context) {
	f := s.f
	defer s.flush()
	off := "-1"
	hdr := http.Header{"Accept": {"text/event-stream"}}
	for attempt := 0; ctx.Err() == nil && attempt < 1000; attempt++ {
		if attempt > 0 {
			s.reconnects++
		}
		tmpl, err := template(ctx, http.MethodGet, f.u+"?offset="+url.QueryEscape(off)+"&live=sse", hdr)
		if err != nil {
			s.errs++
			return
		}
		s.takeSlot(ctx)
		resp, err := f.r.c.send(tmpl, nil)
		if err != nil {
			if ctx.Err() == nil {
				s.errs++
				sleepCtx(ctx, 100*time.Millisecond)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			drain(resp, make([]byte, 4<<10))
			s.errs++
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		closed := s.readSSE(ctx, resp.Body, &off)
		resp.Body.Close()
		if closed {
			return
		}
	}
}

// readSSE parses events until the body ends; it updates *off from control
// events and reports whether the stream was closed.
func (s *subscriber) readSSE(ctx context.Context, body io.Reader, off *string) (closed bool) {
	br := bufio.NewReaderSize(body, 8<<10)
	event := ""
	var long []byte
	for {
		line, err := br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			long = append(long[:0], line...)
			for err == bufio.ErrBufferFull {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if ctx.Err() == nil && err != io.EOF {
				s.errs++
			}
			return false
		}
		line = bytes.TrimRight(line, "\r\n")
		switch {
		case len(line) == 0:
			event = ""
		case bytes.HasPrefix(line, []byte("event:")):
			event = string(bytes.TrimSpace(line[6:]))
		case bytes.HasPrefix(line, []byte("data:")):
			data := line[5:]
			if len(data) > 0 && data[0] == ' ' {
				data = data[1:]
			}
			switch event {
			case "data":
				s.deliver(data, time.Since(s.f.epoch))
			case "control":
				if o, ok := jsonString(data, "streamNextOffset"); ok {
					*off = o
				}
				s.markReady()
				if bytes.Contains(data, []byte(`"streamClosed":true`)) {
					return true
				}
			}
		}
		if br.Buffered() == 0 {
			s.flush()
		}
	}
}

// jsonString finds "key":"value" in a flat JSON object.
func jsonString(b []byte, key string) (string, bool) {
	k := []byte(`"` + key + `":"`)
	i := bytes.Index(b, k)
	if i < 0 {
		return "", false
	}
	rest := b[i+len(k):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return "", false
	}
	return string(rest[:j]), true
}

// runLongPoll tails the stream with long-poll requests, each from the
// previous response's Stream-Next-Offset, echoing Stream-Cursor, over a
// bare HTTP/1.1 connection (wireConn) that it redials after an error.
func (s *subscriber) runLongPoll(ctx context.Context) {
	f := s.f
	defer s.flush()
	u, err := url.Parse(f.u)
	if err != nil {
		s.errs++
		return
	}
	base := u.EscapedPath() + "?live=long-poll&offset="
	off, cursor := "-1", ""
	var conn *wireConn
	defer func() {
		if conn != nil {
			conn.close()
		}
	}()
	var resp wireResp
	var target []byte
	fail := func() { // drop the connection (if any) and pause before the next try
		if conn != nil {
			conn.close()
			conn = nil
		}
		if ctx.Err() == nil {
			s.errs++
			sleepCtx(ctx, 100*time.Millisecond)
		}
	}
	for polls := 0; ctx.Err() == nil && polls < 10_000_000; polls++ {
		var sent func()
		if !s.ready.Load() {
			// Ready once the first request is on the wire: the server then
			// holds it until data arrives.
			s.takeSlot(ctx)
			sent = s.markReady
		}
		if conn == nil {
			if conn, err = dialWire(ctx, u, f.r.cfg.Timeout); err != nil {
				conn = nil
				fail()
				continue
			}
		}
		target = append(append(target[:0], base...), url.QueryEscape(off)...)
		if cursor != "" {
			target = append(append(target, "&cursor="...), url.QueryEscape(cursor)...)
		}
		if err := conn.get(string(target), f.r.cfg.Timeout, &resp, sent); err != nil {
			fail()
			continue
		}
		now := time.Since(f.epoch)
		if !resp.keepAlive {
			conn.close()
			conn = nil
		}
		switch resp.status {
		case http.StatusOK, http.StatusNoContent:
		default:
			s.errs++
			sleepCtx(ctx, 100*time.Millisecond)
			continue
		}
		s.markReady()
		for b := resp.body; len(b) > 0; {
			line := b
			if i := bytes.IndexByte(b, '\n'); i >= 0 {
				line, b = b[:i], b[i+1:]
			} else {
				b = nil
			}
			s.deliver(line, now)
		}
		s.flush()
		if resp.nextOffset != "" {
			off = resp.nextOffset
		}
		cursor = resp.cursor
		if resp.closed {
			return
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
