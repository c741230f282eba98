// Package testkit holds what the tests of several packages share: the
// keysd binary they run as a real process, and a buffer safe for a
// process's concurrent log writes.
package testkit

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"
)

// Build builds the Go package pkg (an import path, e.g.
// "github.com/infrakeys/infrakeys/cmd/keysd") into dir and returns the
// binary's path.
func Build(dir, pkg string) (string, error) {
	bin := filepath.Join(dir, filepath.Base(pkg))
	out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin, nil
}

// KeysdPackage is the import path of the service.
const KeysdPackage = "github.com/infrakeys/infrakeys/cmd/keysd"

// LockedBuffer is a bytes.Buffer safe for concurrent writers.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written so far.
func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
