package s3test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"io"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
)

// testCtx bounds a test's S3 calls.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func md5Hex(b []byte) string {
	sum := md5.Sum(b)
	return hex.EncodeToString(sum[:])
}

// singlePut is how the tier writes: one PUT, Content-MD5 set.
func singlePut() minio.PutObjectOptions {
	return minio.PutObjectOptions{DisableMultipart: true, SendContentMd5: true}
}

// createOnly is singlePut with If-None-Match: *.
func createOnly() minio.PutObjectOptions {
	o := singlePut()
	o.SetMatchETagExcept("*")
	return o
}

// getAll reads a whole object, or a range of it.
func getAll(ctx context.Context, c *minio.Client, bucket, key string, opts minio.GetObjectOptions) ([]byte, error) {
	obj, err := c.GetObject(ctx, bucket, key, opts)
	if err != nil {
		return nil, err
	}
	defer obj.Close()
	return io.ReadAll(obj)
}

// wantS3Error fails unless err is an S3 error answer with that status and,
// if code is not "", that code.
func wantS3Error(t *testing.T, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %d %s", status, code)
	}
	resp := minio.ToErrorResponse(err)
	if resp.StatusCode != status || (code != "" && resp.Code != code) {
		t.Fatalf("got %v (status %d, code %q), want status %d, code %q", err, resp.StatusCode, resp.Code, status, code)
	}
}

// waitFor polls cond for at most 3 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
