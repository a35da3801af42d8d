package server

// The reserved subscription APIs (PROTOCOL.md 6-7) under {prefix}__ds/,
// mapped onto package subs:
//
//	GET    __ds/jwks.json                         webhook signing keys
//	PUT    __ds/subscriptions/{id}                create or re-confirm (201/200/409)
//	GET    __ds/subscriptions/{id}                read
//	DELETE __ds/subscriptions/{id}                tombstone (204)
//	POST   __ds/subscriptions/{id}/streams        add explicit links (204)
//	DELETE __ds/subscriptions/{id}/streams/{path} remove an explicit link (204; path URL-encoded)
//	POST   __ds/subscriptions/{id}/callback       webhook callback (callback token)
//	POST   __ds/subscriptions/{id}/claim          pull-wake claim
//	POST   __ds/subscriptions/{id}/ack            pull-wake ack / heartbeat (claim token)
//	POST   __ds/subscriptions/{id}/release        pull-wake release (claim token)
//
// Errors are {"error": {"code", "message", ...}}. With access control on,
// managing subscription id needs a grant on the path
// __ds/subscriptions/{id}: create (PUT, POST streams), read (GET), delete
// (DELETE), append (claim); callback, ack and release carry their wake's
// own token; jwks.json is public. What a subscription watches needs grants
// too (mayWatch): it would show the paths and tails of its streams and
// append to its wake stream.

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/durastream/durastream/auth"
	"github.com/durastream/durastream/pathglob"
	"github.com/durastream/durastream/subs"
)

// maxControlBody bounds a subscription API request body.
const maxControlBody = 1 << 20

func (s *Server) serveControl(rec *statusRecorder, r *http.Request, rest string) {
	h := rec.Header()
	h.Set("Cache-Control", "no-store")
	m := s.cfg.Subscriptions
	if rest == "jwks.json" {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			controlError(rec, &subs.Error{Status: 405, Code: "METHOD_NOT_ALLOWED", Message: "GET only"})
			return
		}
		h.Set("Content-Type", "application/jwk-set+json")
		h.Set("Cache-Control", "public, max-age=300")
		rec.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			rec.Write(m.JWKS())
		}
		return
	}
	tail, ok := strings.CutPrefix(rest, "subscriptions/")
	if !ok {
		controlError(rec, &subs.Error{Status: 404, Code: "NOT_FOUND", Message: "the __ds namespace is reserved for control APIs"})
		return
	}
	id, action, _ := strings.Cut(tail, "/")
	if !subs.ValidID(id) {
		controlError(rec, &subs.Error{Status: 400, Code: "INVALID_REQUEST", Message: "subscription ids are 1-128 letters, digits, '-', '_' or '.'"})
		return
	}
	var streamArg string
	if a, _, found := strings.Cut(action, "/"); found && a == "streams" {
		// The path is URL-encoded and may contain slashes: take it from
		// the raw path, decoded once.
		raw, marker := r.URL.EscapedPath(), "/"+id+"/streams/"
		i := strings.Index(raw, marker)
		if i < 0 {
			controlError(rec, &subs.Error{Status: 400, Code: "INVALID_REQUEST", Message: "malformed stream path"})
			return
		}
		dec, err := url.PathUnescape(raw[i+len(marker):])
		if err != nil {
			controlError(rec, &subs.Error{Status: 400, Code: "INVALID_REQUEST", Message: "malformed stream path"})
			return
		}
		action, streamArg = "streams/*", dec
	}
	op, known := controlOp(r.Method, action)
	if !known {
		controlError(rec, &subs.Error{Status: 405, Code: "METHOD_NOT_ALLOWED", Message: r.Method + " is not allowed here"})
		return
	}
	if op != nil && s.cfg.Auth.Enabled() {
		d := s.cfg.Auth.Check(r, auth.Need{Op: *op, Path: "__ds/subscriptions/" + id})
		if !d.Allowed() {
			controlError(rec, refusal(h, d))
			return
		}
	}
	var body []byte
	if r.Method == http.MethodPut || r.Method == http.MethodPost {
		b, err := io.ReadAll(http.MaxBytesReader(rec, r.Body, maxControlBody))
		if err != nil {
			controlError(rec, &subs.Error{Status: 413, Code: "INVALID_REQUEST", Message: "body larger than 1 MiB or unreadable"})
			return
		}
		body = b
	}
	token := bearerToken(r.Header.Get("Authorization"))
	var out []byte
	var cerr *subs.Error
	status := http.StatusOK
	switch r.Method + " " + action {
	case "PUT ":
		var created bool
		out, created, cerr = m.Put(id, body, requestOrigin(r)+s.cfg.Prefix, func(c subs.Config) *subs.Error {
			return s.mayWatch(h, r, c.Pattern, c.Streams, c.WakeStream)
		})
		if created {
			status = http.StatusCreated
		}
	case "GET ":
		out, cerr = m.Get(id)
	case "DELETE ":
		cerr, status = m.Delete(id), http.StatusNoContent
	case "POST streams":
		cerr, status = m.AddStreams(id, body, func(paths []string) *subs.Error {
			return s.mayWatch(h, r, "", paths, "")
		}), http.StatusNoContent
	case "DELETE streams/*":
		cerr, status = m.RemoveStream(id, strings.Trim(streamArg, "/")), http.StatusNoContent
	case "POST callback":
		out, cerr = m.Callback(id, token, body)
	case "POST claim":
		out, cerr = m.Claim(id, body)
	case "POST ack":
		out, cerr = m.Ack(id, token, body)
	case "POST release":
		cerr, status = m.Release(id, token, body), http.StatusNoContent
	}
	if cerr != nil {
		controlError(rec, cerr)
		return
	}
	if out != nil {
		h.Set("Content-Type", "application/json")
		rec.WriteHeader(status)
		rec.Write(out)
		return
	}
	rec.WriteHeader(status)
}

// mayWatch checks, with access control on, that the caller may have a
// subscription watch pattern and streams and append its wakes to wake
// (any may be empty): whoever reads a subscription sees the paths and
// tails of the streams it links. So it needs read on each explicit
// stream, append on the wake stream, and a read grant that covers every
// path the pattern can match.
func (s *Server) mayWatch(h http.Header, r *http.Request, pattern string, streams []string, wake string) *subs.Error {
	if !s.cfg.Auth.Enabled() {
		return nil
	}
	var needs []auth.Need
	for _, p := range streams {
		needs = append(needs, auth.Need{Op: auth.OpRead, Path: p})
	}
	if wake != "" {
		needs = append(needs, auth.Need{Op: auth.OpAppend, Path: wake})
	}
	if len(needs) > 0 {
		if d := s.cfg.Auth.Check(r, needs...); !d.Allowed() {
			return refusal(h, d)
		}
	}
	if pattern != "" {
		q, _ := pathglob.Parse(pattern) // valid: ParseConfig checked it
		if !s.cfg.Auth.Covers(r, auth.OpRead, q) {
			return refusal(h, auth.Decision{Status: http.StatusForbidden,
				Reason: "no read grant of the token covers every stream the pattern " + pattern + " can match"})
		}
	}
	return nil
}

// refusal is the error for a refused decision, with its challenge set.
func refusal(h http.Header, d auth.Decision) *subs.Error {
	auth.WriteChallenge(h, d)
	return &subs.Error{Status: d.Status, Code: map[int]string{401: "UNAUTHORIZED", 403: "FORBIDDEN"}[d.Status], Message: d.Reason}
}

// controlOp is the grant a control request needs (nil: the route carries
// its own token), and whether the route exists.
func controlOp(method, action string) (*auth.Op, bool) {
	op := func(o auth.Op) *auth.Op { return &o }
	switch method + " " + action {
	case "PUT ", "POST streams", "DELETE streams/*":
		return op(auth.OpCreate), true
	case "GET ":
		return op(auth.OpRead), true
	case "DELETE ":
		return op(auth.OpDelete), true
	case "POST claim":
		return op(auth.OpAppend), true
	case "POST callback", "POST ack", "POST release":
		return nil, true
	}
	return nil, false
}

// bearerToken is the token of an "Authorization: Bearer" value ("" if none).
func bearerToken(authorization string) string {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(authorization), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

func controlError(w http.ResponseWriter, e *subs.Error) {
	obj := map[string]any{"code": e.Code, "message": e.Message}
	for k, v := range e.Extra {
		obj[k] = v
	}
	b, _ := json.Marshal(map[string]any{"error": obj})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(e.Status)
	w.Write(b)
}
