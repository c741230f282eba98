package bus

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// The embedded server's read-model buckets flush their writes
// asynchronously (projections), so a crash can lose some of them. A clean
// stop loses none: the server's shutdown writes out every pending write,
// and markCleanStop then fsyncs the whole store and only after that
// records the fact in a file next to it. Connect takes the file away
// (durably) before the server starts, so the file exists exactly when the
// last run ended in a completed, synced stop: a crash at any point, even
// during the stop, leaves no file, and the next start re-checks the read
// models against the log. A run that started without the file writes it
// only once every asynchronously flushed stream was re-checked
// (Conn.Rechecked, Conn.consistentForStop).
//
// The file is in the store directory, beside the server's own "jetstream"
// directory.
const cleanStopFile = "keysd-clean-stop"

// takeCleanStop reports whether dir's last run stopped cleanly, and
// removes the record of it before the server writes anything.
func takeCleanStop(dir string) (bool, error) {
	if dir == "" {
		return false, nil
	}
	p := filepath.Join(dir, cleanStopFile)
	err := os.Remove(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("bus: clean-stop record: %w", err)
	}
	if err := syncPath(dir); err != nil {
		return false, fmt.Errorf("bus: clean-stop record: %w", err)
	}
	return true, nil
}

// markCleanStop fsyncs everything under dir, then records a clean stop.
// Call it only after the server has shut down.
func markCleanStop(dir string) error {
	if dir == "" {
		return nil
	}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		return syncPath(path)
	})
	if err != nil {
		return err
	}
	p := filepath.Join(dir, cleanStopFile)
	f, err := os.Create(p)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncPath(dir)
}

// syncPath fsyncs a file or directory.
func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
