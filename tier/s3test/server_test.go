package s3test

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/minio/minio-go/v7"
)

// TestServerFeatures checks that versitygw, as Start runs it, does what the
// object-storage tier relies on, each through minio-go as the tier uses it.
func TestServerFeatures(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	ctx := testCtx(t)

	// Conflicting creates are kept small: versitygw answers 412 before
	// reading the body, then resets the connection, so with a body of
	// 1 MiB or more the client often gets the reset instead of the 412.
	t.Run("CreateOnly", func(t *testing.T) {
		const key = "create-only"
		if _, err := c.PutObject(ctx, s.Bucket, key, strings.NewReader("first"), 5, createOnly()); err != nil {
			t.Fatalf("first create-only PUT: %v", err)
		}
		_, err := c.PutObject(ctx, s.Bucket, key, strings.NewReader("second"), 6, createOnly())
		wantS3Error(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
		if got, err := getAll(ctx, c, s.Bucket, key, minio.GetObjectOptions{}); err != nil || string(got) != "first" {
			t.Fatalf("after refused create: %q, %v; want \"first\"", got, err)
		}
		if err := c.RemoveObject(ctx, s.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutObject(ctx, s.Bucket, key, strings.NewReader("third"), 5, createOnly()); err != nil {
			t.Fatalf("create-only PUT after delete: %v", err)
		}
	})

	t.Run("CreateOnlyRace", func(t *testing.T) {
		const key, writers = "create-race", 8
		errs := make([]error, writers)
		var wg sync.WaitGroup
		for i := range writers {
			wg.Go(func() {
				body := strings.Repeat(string(rune('a'+i)), 64<<10)
				_, errs[i] = c.PutObject(ctx, s.Bucket, key, strings.NewReader(body), int64(len(body)), createOnly())
			})
		}
		wg.Wait()
		winner := -1
		for i, err := range errs {
			if err == nil {
				if winner >= 0 {
					t.Fatalf("writers %d and %d both created %q", winner, i, key)
				}
				winner = i
				continue
			}
			wantS3Error(t, err, http.StatusPreconditionFailed, "PreconditionFailed")
		}
		if winner < 0 {
			t.Fatal("no writer created the object")
		}
		got, err := getAll(ctx, c, s.Bucket, key, minio.GetObjectOptions{})
		if err != nil || len(got) != 64<<10 || strings.Trim(string(got), string(rune('a'+winner))) != "" {
			t.Fatalf("object is not writer %d's body (len %d, err %v)", winner, len(got), err)
		}
	})

	t.Run("ContentMD5", func(t *testing.T) {
		body := []byte("checked body")
		info, err := c.PutObject(ctx, s.Bucket, "md5-good", bytes.NewReader(body), int64(len(body)), singlePut())
		if err != nil {
			t.Fatal(err)
		}
		if info.ETag != md5Hex(body) {
			t.Fatalf("PUT ETag %q, want %q", info.ETag, md5Hex(body))
		}

		// Core.PutObject sends the Content-MD5 it is given: one of
		// other bytes, as if the body were corrupted on the way.
		wrong := md5.Sum([]byte("other bytes"))
		_, err = minio.Core{Client: c}.PutObject(ctx, s.Bucket, "md5-bad", bytes.NewReader(body), int64(len(body)),
			base64.StdEncoding.EncodeToString(wrong[:]), "", minio.PutObjectOptions{DisableMultipart: true})
		wantS3Error(t, err, http.StatusBadRequest, "BadDigest")
		_, err = c.StatObject(ctx, s.Bucket, "md5-bad", minio.StatObjectOptions{})
		wantS3Error(t, err, http.StatusNotFound, "NoSuchKey")
	})

	t.Run("Stat", func(t *testing.T) {
		body := make([]byte, 100_000)
		rand.Read(body)
		if _, err := c.PutObject(ctx, s.Bucket, "stat/obj", bytes.NewReader(body), int64(len(body)), singlePut()); err != nil {
			t.Fatal(err)
		}
		st, err := c.StatObject(ctx, s.Bucket, "stat/obj", minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if st.Size != int64(len(body)) || st.ETag != md5Hex(body) {
			t.Fatalf("stat: size %d ETag %q, want %d %q", st.Size, st.ETag, len(body), md5Hex(body))
		}
		_, err = c.StatObject(ctx, s.Bucket, "stat/missing", minio.StatObjectOptions{})
		wantS3Error(t, err, http.StatusNotFound, "NoSuchKey")
		_, err = getAll(ctx, c, s.Bucket, "stat/missing", minio.GetObjectOptions{})
		wantS3Error(t, err, http.StatusNotFound, "NoSuchKey")

		// The posix backend keeps objects as plain files under Dir.
		onDisk, err := os.ReadFile(filepath.Join(s.Dir, s.Bucket, "stat", "obj"))
		if err != nil || !bytes.Equal(onDisk, body) {
			t.Fatalf("object file: %d bytes, %v; want the body", len(onDisk), err)
		}
	})

	t.Run("Range", func(t *testing.T) {
		body := make([]byte, 1000)
		rand.Read(body)
		if _, err := c.PutObject(ctx, s.Bucket, "range", bytes.NewReader(body), int64(len(body)), singlePut()); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			start, end int64 // as SetRange takes them
			want       []byte
		}{
			{0, 0, body[:1]},
			{0, 99, body[:100]},
			{100, 499, body[100:500]},
			{999, 999, body[999:]},
			{500, 999, body[500:]},
			{500, 0, body[500:]},    // bytes=500-
			{0, -10, body[990:]},    // bytes=-10
			{900, 5000, body[900:]}, // past the end: clipped
		} {
			var opts minio.GetObjectOptions
			if err := opts.SetRange(tc.start, tc.end); err != nil {
				t.Fatal(err)
			}
			got, err := getAll(ctx, c, s.Bucket, "range", opts)
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Errorf("range %d,%d: %d bytes, %v; want %d bytes", tc.start, tc.end, len(got), err, len(tc.want))
			}
		}
	})

	t.Run("RemoveIdempotent", func(t *testing.T) {
		if err := c.RemoveObject(ctx, s.Bucket, "remove/never-was", minio.RemoveObjectOptions{}); err != nil {
			t.Fatalf("remove missing: %v", err)
		}
		if _, err := c.PutObject(ctx, s.Bucket, "remove/x", strings.NewReader("x"), 1, singlePut()); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			if err := c.RemoveObject(ctx, s.Bucket, "remove/x", minio.RemoveObjectOptions{}); err != nil {
				t.Fatalf("remove #%d: %v", i+1, err)
			}
		}
		_, err := c.StatObject(ctx, s.Bucket, "remove/x", minio.StatObjectOptions{})
		wantS3Error(t, err, http.StatusNotFound, "NoSuchKey")
	})

	t.Run("List", func(t *testing.T) {
		keys := []string{"list/a/1", "list/a/2", "list/a/3", "list/b/1", "listx"}
		for _, k := range keys {
			if _, err := c.PutObject(ctx, s.Bucket, k, strings.NewReader(k), int64(len(k)), singlePut()); err != nil {
				t.Fatal(err)
			}
		}
		list := func(opts minio.ListObjectsOptions) []string {
			t.Helper()
			var got []string
			for o := range c.ListObjects(ctx, s.Bucket, opts) {
				if o.Err != nil {
					t.Fatalf("list %+v: %v", opts, o.Err)
				}
				if !strings.HasSuffix(o.Key, "/") && (o.Size != int64(len(o.Key)) || o.ETag != md5Hex([]byte(o.Key))) {
					t.Errorf("list: %s has size %d ETag %q", o.Key, o.Size, o.ETag)
				}
				got = append(got, o.Key)
			}
			return got
		}
		for _, tc := range []struct {
			opts minio.ListObjectsOptions
			want []string
		}{
			{minio.ListObjectsOptions{Prefix: "list/a/", Recursive: true}, keys[:3]},
			{minio.ListObjectsOptions{Prefix: "list/", Recursive: true}, keys[:4]},
			{minio.ListObjectsOptions{Prefix: "list/", Recursive: true, MaxKeys: 1}, keys[:4]}, // one key a page
			{minio.ListObjectsOptions{Prefix: "list/"}, []string{"list/a/", "list/b/"}},
			{minio.ListObjectsOptions{Prefix: "nothing/", Recursive: true}, nil},
		} {
			if got := list(tc.opts); !slices.Equal(got, tc.want) {
				t.Errorf("list %+v: %q, want %q", tc.opts, got, tc.want)
			}
		}
	})
}

// TestServerRestart checks that objects survive Restart, on the same
// endpoint, and that a stopped server refuses connections.
func TestServerRestart(t *testing.T) {
	s := Start(t)
	c := s.Client(t)
	once := newClient(t, s.Endpoint, s.AccessKey, s.SecretKey, 1)
	ctx := testCtx(t)
	endpoint := s.Endpoint

	if _, err := c.PutObject(ctx, s.Bucket, "kept", strings.NewReader("kept"), 4, singlePut()); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	s.Stop() // idempotent
	if _, err := once.StatObject(ctx, s.Bucket, "kept", minio.StatObjectOptions{}); err == nil {
		t.Fatal("stat on a stopped server succeeded")
	} else if resp := minio.ToErrorResponse(err); resp.StatusCode != 0 {
		t.Fatalf("stopped server answered %d: %v", resp.StatusCode, err)
	}

	s.Restart(t)
	if s.Endpoint != endpoint {
		t.Fatalf("endpoint moved from %s to %s", endpoint, s.Endpoint)
	}
	if ok, err := c.BucketExists(ctx, s.Bucket); err != nil || !ok {
		t.Fatalf("bucket after restart: %v, %v", ok, err)
	}
	if got, err := getAll(ctx, c, s.Bucket, "kept", minio.GetObjectOptions{}); err != nil || string(got) != "kept" {
		t.Fatalf("object after restart: %q, %v", got, err)
	}
	s.Restart(t) // from running, too
	if _, err := c.StatObject(ctx, s.Bucket, "kept", minio.StatObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

func TestBinary(t *testing.T) {
	bin, err := Binary()
	if err != nil {
		t.Skip(err)
	}
	if !filepath.IsAbs(bin) && !strings.Contains(bin, string(filepath.Separator)) {
		t.Fatalf("Binary() = %q, want a path", bin)
	}
}
