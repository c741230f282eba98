//go:build unix

package main

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// dirState describes every file and directory under dir: mode, size,
// modification time and, for files, a digest of the content.
func dirState(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	state := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			s += fmt.Sprintf(" %x", sha256.Sum256(data))
		}
		state[path] = s
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return state
}

// A second keysd on a data directory in use exits at once, naming the
// directory and the first one's PID, and changes no file in it. The first
// is stopped (SIGSTOP) while the second runs, so that every change to the
// directory would be the second's. Once the first is killed with SIGKILL,
// its lock is gone with it and a new keysd starts on the directory.
func TestDataDirLockedAgainstSecondKeysd(t *testing.T) {
	env, _ := processEnv(t, t.TempDir())
	dataDir := env["KEYSD_DATA_DIR"]
	first, url := startProcess(t, env)

	if err := first.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitStopped(t, first.Process.Pid)
	before := dirState(t, dataDir)
	second := runToExit(t, env)
	after := dirState(t, dataDir)
	if err := first.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	MustFatalLine(t, second, dataDir, fmt.Sprintf("pid %d", first.Process.Pid), "KEYSD_DATA_DIR")
	for path, was := range before {
		if now, ok := after[path]; !ok {
			t.Errorf("%s removed by the second keysd", path)
		} else if now != was {
			t.Errorf("%s changed by the second keysd: %s, was %s", path, now, was)
		}
	}
	for path := range after {
		if _, ok := before[path]; !ok {
			t.Errorf("%s created by the second keysd", path)
		}
	}
	resp, err := http.Get(url + "/healthz")
	if err != nil {
		t.Fatalf("the first keysd after the second one's attempt: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("the first keysd after the second one's attempt: %d", resp.StatusCode)
	}

	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	third, _ := startProcess(t, env)
	pid, err := os.ReadFile(filepath.Join(dataDir, lockFileName))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.TrimSpace(string(pid)), strconv.Itoa(third.Process.Pid); got != want {
		t.Errorf("lock file holds pid %s, want the new keysd's %s", got, want)
	}
	_ = third.Process.Signal(syscall.SIGTERM)
	if err := third.Wait(); err != nil {
		t.Errorf("the new keysd's exit after SIGTERM: %v", err)
	}
}

// waitStopped waits until process pid is stopped: a signal is delivered
// asynchronously, and a file write the process finishes after the
// directory is looked at would pass for the second keysd's.
func waitStopped(tb testing.TB, pid int) {
	tb.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			tb.Fatal(err)
		}
		// The state follows the command name, which ends with ")".
		if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'T' {
			return
		}
	}
	tb.Fatalf("process %d did not stop", pid)
}
