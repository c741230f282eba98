package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// lockFileName is the file in the data directory that keysd holds locked
// while it runs. It is left in place when keysd stops: the lock, not the
// file, says whether the directory is in use.
const lockFileName = "keysd.lock"

// lockDataDir makes dir if need be and takes an exclusive lock on it,
// before anything else in it is read or written: two keysd processes on
// one directory each run an embedded NATS server on the same JetStream
// files, and acknowledged writes of one are lost at the next start; the
// second would also record a clean stop while the first still writes.
//
// The lock is flock(2) on dir/keysd.lock (LockFileEx on Windows), so the kernel releases it when
// the process ends however it ends (a crash, SIGKILL): a stale lock never
// blocks a restart. The holder writes its PID into the file, for the
// message a second keysd gives. A keysd that finds the lock taken changes
// no file: it opens the lock file without truncating it and only reads it.
//
// The returned file holds the lock until it is closed.
func lockDataDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, lockFileName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	if err := tryLock(f); err != nil {
		holder := "another process"
		if pid := holderPID(f); pid > 0 {
			holder = fmt.Sprintf("another process (pid %d)", pid)
		}
		f.Close()
		if errors.Is(err, errLockHeld) {
			return nil, fmt.Errorf("data dir %s (--data-dir, KEYSD_DATA_DIR) is in use by %s, which holds the lock %s: two keysd processes on one data dir lose acknowledged writes; stop the other one, or give this one a data dir of its own", dir, holder, path)
		}
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	if err := writePID(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir lock %s: %w", path, err)
	}
	return f, nil
}

// errLockHeld is tryLock's error when another open file holds the lock.
var errLockHeld = errors.New("lock held by another process")

// writePID replaces the content of the locked file f with this process's
// PID.
func writePID(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return err
}

// holderPID reads the PID the lock's holder wrote into f, or 0 when there
// is none yet (the holder has the lock but has not written it).
func holderPID(f *os.File) int {
	buf := make([]byte, 32)
	n, _ := f.ReadAt(buf, 0)
	pid, err := strconv.Atoi(strings.TrimSpace(string(buf[:n])))
	if err != nil {
		return 0
	}
	return pid
}
