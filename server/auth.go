package server

// Access control on the stream routes (package auth decides; this maps its
// decision onto HTTP). Each request names what it needs: read (GET, HEAD),
// append (POST), create (PUT; a fork also needs read on its source), delete
// (DELETE). The check comes after path validation (a malformed path is 400
// whoever asks: it names no stream) and before any lookup, so a 401 or 403
// never reveals whether a stream exists. Responses that needed a
// credential are kept out of shared caches (privateCache).

import (
	"net/http"
	"strings"

	"github.com/durastream/durastream/auth"
)

// needs returns what a stream request needs, or an error for a bad fork
// source.
func (s *Server) needs(r *http.Request, name string) ([]auth.Need, error) {
	switch r.Method {
	case http.MethodPut:
		if src := r.Header.Get(hForkedFrom); src != "" {
			sp, err := s.sourcePath(src)
			if err != nil {
				return nil, err
			}
			return []auth.Need{{Op: auth.OpCreate, Path: name}, {Op: auth.OpRead, Path: sp}}, nil
		}
		return []auth.Need{{Op: auth.OpCreate, Path: name}}, nil
	case http.MethodPost:
		return []auth.Need{{Op: auth.OpAppend, Path: name}}, nil
	case http.MethodDelete:
		return []auth.Need{{Op: auth.OpDelete, Path: name}}, nil
	default: // GET, HEAD (other methods are refused later)
		return []auth.Need{{Op: auth.OpRead, Path: name}}, nil
	}
}

// authorize checks a stream request; false means it was answered.
func (s *Server) authorize(rec *statusRecorder, r *http.Request, name string) bool {
	if !s.cfg.Auth.Enabled() {
		return true
	}
	needs, err := s.needs(r, name)
	if err != nil {
		s.writeError(rec, r, err)
		return false
	}
	d := s.cfg.Auth.Check(r, needs...)
	if !d.Allowed() {
		s.refuse(rec, r, d)
		return false
	}
	rec.private = !d.Public
	return true
}

// authorizeOps checks /health and /metrics on the main listener.
func (s *Server) authorizeOps(w http.ResponseWriter, r *http.Request) bool {
	if s.cfg.OpenOps || !s.cfg.Auth.Enabled() {
		return true
	}
	if d := s.cfg.Auth.CheckOps(r); !d.Allowed() {
		s.refuse(w, r, d)
		return false
	}
	return true
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, d auth.Decision) {
	auth.WriteChallenge(w.Header(), d)
	s.writeError(w, r, &httpError{d.Status, d.Reason})
}

// privateCache turns a response's shared-cache permission into a private
// one: "public, ..." becomes "private, ...", no-cache gains private, and a
// response without Cache-Control gets "private". no-store stays.
func privateCache(h http.Header) {
	switch cc := h.Get("Cache-Control"); {
	case cc == "":
		h.Set("Cache-Control", "private")
	case strings.HasPrefix(cc, "public"):
		h.Set("Cache-Control", "private"+strings.TrimPrefix(cc, "public"))
	case strings.Contains(cc, "private") || strings.Contains(cc, "no-store"):
	default:
		h.Set("Cache-Control", "private, "+cc)
	}
}

// OpsHandler serves /health and /metrics only, without authentication: for
// a listener on a private interface (serve --ops-addr).
func (s *Server) OpsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			s.handleHealth(w, r)
		case "/metrics":
			s.handleMetrics(w, r)
		default:
			http.NotFound(w, r)
		}
	})
}
