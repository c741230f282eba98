package sealing

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxMasterKeyFileSize bounds what is read from a master key file: the text
// form is 69 bytes, so anything much larger is the wrong file.
const maxMasterKeyFileSize = 4096

// LoadMasterKeyFile reads a master key from the file at path. It refuses a
// file that group or others may access, because a secret that other users
// could have read must be treated as leaked; the error says how to fix it.
func LoadMasterKeyFile(path string) (*MasterKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("sealing: open master key file: %w", err)
	}
	defer f.Close()

	// Stat the open file rather than the path, so the mode checked is the
	// mode of the file read.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("sealing: stat master key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("sealing: master key file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("sealing: master key file %s has mode %04o, which lets group or others access it; run chmod 600 %s (and consider the key leaked if others could read it)", path, perm, path)
	}

	buf, err := io.ReadAll(io.LimitReader(f, maxMasterKeyFileSize+1))
	defer clear(buf)
	if err != nil {
		return nil, fmt.Errorf("sealing: read master key file: %w", err)
	}
	if len(buf) > maxMasterKeyFileSize {
		return nil, fmt.Errorf("sealing: master key file %s is larger than %d bytes; is it a master key file?", path, maxMasterKeyFileSize)
	}
	m, err := parseMasterKey(string(buf))
	if err != nil {
		return nil, fmt.Errorf("sealing: master key file %s: %w", path, err)
	}
	return m, nil
}

// LoadOrCreateMasterKeyFile loads the master key file at path, or, if there
// is none, creates it with a new master key: the parent directory with mode
// 0700 if missing, the file with mode 0600. It never overwrites an existing
// file, whatever its content, because replacing a master key would lose
// every data key it wraps. created reports whether the key is new.
func LoadOrCreateMasterKeyFile(path string) (m *MasterKey, created bool, err error) {
	m, err = LoadMasterKeyFile(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return m, false, err
	}
	m, err = createMasterKeyFile(path)
	if errors.Is(err, fs.ErrExist) {
		// Another process created it in between: use its key, not ours.
		m, err = LoadMasterKeyFile(path)
		return m, false, err
	}
	if err != nil {
		return nil, false, err
	}
	return m, true, nil
}

// createMasterKeyFile writes a new master key to path, which must not exist.
// The key is written to a temporary file (created 0600 with O_EXCL) and
// published with a hard link, which, unlike a rename, fails if path exists:
// so a process starting at the same time never reads a half-written key, and
// two processes never both write one. Everything is synced before returning,
// since data sealed under a key that a crash then loses is lost too.
func createMasterKeyFile(path string) (*MasterKey, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("sealing: create master key directory: %w", err)
	}
	m, err := NewMasterKey()
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".new-*")
	if err != nil {
		return nil, fmt.Errorf("sealing: create master key file: %w", err)
	}
	defer os.Remove(f.Name())
	text := []byte(m.Encode() + "\n")
	defer clear(text)
	_, err = f.Write(text)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("sealing: write master key file: %w", err)
	}
	if err := os.Link(f.Name(), path); err != nil {
		return nil, fmt.Errorf("sealing: create master key file: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return nil, fmt.Errorf("sealing: sync master key directory: %w", err)
	}
	return m, nil
}

// syncDir makes a new directory entry durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
