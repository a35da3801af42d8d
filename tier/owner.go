package tier

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/durastream/durastream/durafile"
	"github.com/minio/minio-go/v7"
)

// A data directory's identity in the bucket: a random id kept in
// Config.IDFile. Every key a server writes under seg/ starts with it, and
// every manifest it writes names it (in its incarnation), so its sweep
// deletes only what this data directory wrote. The first Check of a data
// directory makes the id, and refuses a prefix that already holds objects
// unless the caller restores from it: a replaced disk started with the
// usual flags must not take the bucket for its own leftovers.

// ErrPrefixInUse is Check's answer for a data directory with no identity
// yet on a prefix that holds objects (and no Config.Restore).
var ErrPrefixInUse = errors.New("tier: the bucket prefix already holds objects that this data directory did not write")

// claim makes the data directory's identity if it has none, after making
// sure the prefix is empty (one LIST of at most one key) unless restoring.
func (t *Tier) claim(ctx context.Context) error {
	if t.id != "" {
		return nil
	}
	if !t.cfg.Restore {
		lctx, cancel := context.WithCancel(ctx)
		defer cancel() // ends the listing after its first key
		for oi := range t.s3.ListObjects(lctx, t.cfg.Bucket, minio.ListObjectsOptions{Prefix: t.cfg.Prefix, Recursive: true, MaxKeys: 1}) {
			if oi.Err != nil {
				return fmt.Errorf("tier: list %q in bucket %q: %w", t.cfg.Prefix, t.cfg.Bucket, oi.Err)
			}
			return fmt.Errorf("%w (prefix %q of bucket %q holds %s; %s does not exist)", ErrPrefixInUse, t.cfg.Prefix, t.cfg.Bucket, oi.Key, t.cfg.IDFile)
		}
	}
	var b [8]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	if err := writeID(t.cfg.IDFile, id); err != nil {
		return fmt.Errorf("tier: identity: %w", err)
	}
	t.id = id
	t.log.Info("tier: new data directory identity in the bucket", "id", id, "file", t.cfg.IDFile)
	return nil
}

// loadID reads an identity file; "" if there is none.
func loadID(path string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("tier: identity: %w", err)
	}
	id := strings.TrimSpace(string(b))
	if _, err := hex.DecodeString(id); err != nil || len(id) != 16 {
		return "", fmt.Errorf("tier: identity file %s holds %q, not 16 hex digits", path, id)
	}
	return id, nil
}

// writeID stores id durably (durafile).
func writeID(path, id string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return durafile.Write(path, []byte(id+"\n"), 0o644)
}

// ours reports whether an incarnation is this data directory's.
func (t *Tier) ours(inc string) bool { return t.id != "" && strings.HasPrefix(inc, t.id+"/") }
