package engine

import "strings"

// List returns the paths of the live streams whose path starts with prefix,
// in no particular order. It walks the whole stream table: for startup
// scans by embedding packages (the fetch manager finds its records with
// it), not for request paths.
func (e *Engine) List(prefix string) ([]string, error) {
	if err := e.enter(); err != nil {
		return nil, err
	}
	defer e.leave()
	var out []string
	e.streams.Range(func(path string, s *stream) bool {
		if strings.HasPrefix(path, prefix) && s.ready.Load() && s.stateNow() == stLive {
			out = append(out, path)
		}
		return true
	})
	return out, nil
}
