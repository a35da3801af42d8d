package s3test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	// VersityModule is the versitygw build the helpers are written against.
	VersityModule = "github.com/versity/versitygw/cmd/versitygw@v1.8.0"

	// RequireEnv set to 1 turns a missing versitygw from a skip into a
	// failure.
	RequireEnv = "DURASTREAM_REQUIRE_S3"
)

// errNoBinary explains how to get versitygw.
var errNoBinary = errors.New("versitygw not found in PATH, $(go env GOBIN) or $(go env GOPATH)/bin; " +
	"install it with `go install " + VersityModule + "` (or `make deps`)")

// Binary returns the path of versitygw: the one in PATH, else the one
// `go install` puts in $(go env GOBIN) or $(go env GOPATH)/bin.
func Binary() (string, error) {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p, nil
	}
	for _, dir := range goBinDirs() {
		p := filepath.Join(dir, "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errNoBinary
}

// goBinDirs lists where `go install` puts binaries: GOBIN if set, and the
// bin directory of every GOPATH entry.
func goBinDirs() []string {
	out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output()
	if err != nil {
		return nil
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	var dirs []string
	if len(lines) > 0 && lines[0] != "" {
		dirs = append(dirs, lines[0])
	}
	if len(lines) > 1 {
		for _, p := range filepath.SplitList(lines[1]) {
			if p != "" {
				dirs = append(dirs, filepath.Join(p, "bin"))
			}
		}
	}
	return dirs
}

// requireBinary returns versitygw's path, or ends the test: a skip, or a
// failure when RequireEnv is 1.
func requireBinary(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err == nil {
		return bin
	}
	msg := fmt.Sprintf("s3test: %v", err)
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s (%s=1)", msg, RequireEnv)
	}
	t.Skip(msg)
	return ""
}
