package sealing_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/infrakeys/infrakeys/sealing"
)

func TestLoadOrCreateMasterKeyFile(t *testing.T) {
	t.Run("CreatesThenReloads", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "secrets")
		path := filepath.Join(dir, "master.key")

		m, created, err := sealing.LoadOrCreateMasterKeyFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !created {
			t.Error("created = false for a missing file")
		}
		if got, want := mode(t, path), os.FileMode(0o600); got != want {
			t.Errorf("file mode = %04o, want %04o", got, want)
		}
		if got, want := mode(t, dir), os.FileMode(0o700); got != want {
			t.Errorf("directory mode = %04o, want %04o", got, want)
		}
		assertOnlyFile(t, dir, "master.key")

		again, created, err := sealing.LoadOrCreateMasterKeyFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if created {
			t.Error("created = true for an existing file")
		}
		if got, want := again.ID(), m.ID(); got != want {
			t.Errorf("reloaded id = %q, want %q", got, want)
		}
		if again.Encode() != m.Encode() {
			t.Error("reloaded key differs")
		}

		loaded, err := sealing.LoadMasterKeyFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := loaded.ID(), m.ID(); got != want {
			t.Errorf("LoadMasterKeyFile id = %q, want %q", got, want)
		}
	})

	t.Run("ConcurrentCallersAgree", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "master.key")
		const n = 8
		ids := make([]string, n)
		var created int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				m, c, err := sealing.LoadOrCreateMasterKeyFile(path)
				if err != nil {
					t.Error(err)
					return
				}
				ids[i] = m.ID()
				if c {
					mu.Lock()
					created++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if created != 1 {
			t.Errorf("%d callers created the key, want 1", created)
		}
		for _, id := range ids[1:] {
			if id != ids[0] {
				t.Fatalf("callers got different keys: %v", ids)
			}
		}
		// Temporary files hold secrets too: none may be left behind.
		assertOnlyFile(t, filepath.Dir(path), "master.key")
	})

	t.Run("ErrGroupReadable", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "master.key")
		m := MustNewMasterKey(t)
		writeFile(t, path, m.Encode()+"\n", 0o644)

		for name, load := range map[string]func() error{
			"Load":         func() error { _, err := sealing.LoadMasterKeyFile(path); return err },
			"LoadOrCreate": func() error { _, _, err := sealing.LoadOrCreateMasterKeyFile(path); return err },
		} {
			err := load()
			if err == nil {
				t.Fatalf("%s accepted a 0644 file", name)
			}
			if !strings.Contains(err.Error(), "chmod 600") {
				t.Errorf("%s: error %q does not say to chmod 600", name, err)
			}
			assertNoSecret(t, m, name+" error", err.Error())
		}
		// Refusing must not mean replacing.
		if got, err := os.ReadFile(path); err != nil || string(got) != m.Encode()+"\n" {
			t.Error("the refused file was modified")
		}
	})

	t.Run("ErrCorruptFileKept", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "master.key")
		writeFile(t, path, "infrakeys-master-key-v1:truncat", 0o600)
		_, _, err := sealing.LoadOrCreateMasterKeyFile(path)
		if err == nil {
			t.Fatal("accepted a corrupt file")
		}
		if !errors.Is(err, sealing.ErrInvalidMasterKey) {
			t.Errorf("err = %v, want ErrInvalidMasterKey", err)
		}
		if strings.Contains(err.Error(), "truncat") {
			t.Errorf("error echoes the file content: %v", err)
		}
		if got, _ := os.ReadFile(path); string(got) != "infrakeys-master-key-v1:truncat" {
			t.Error("the corrupt file was replaced")
		}
	})
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Mode().Perm()
}

// writeFile writes content with exactly mode perm, whatever the umask.
func writeFile(t *testing.T, path, content string, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// assertOnlyFile fails the test unless name is the only entry in dir.
func assertOnlyFile(t *testing.T, dir, name string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if len(names) != 1 || names[0] != name {
		t.Errorf("%s holds %v, want only %s", dir, names, name)
	}
}
