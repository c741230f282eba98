package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/infrakeys/infrakeys/krl"
)

// exitUnchanged is keysctl krl fetch's exit status when the list it has
// is current: nothing was written.
const exitUnchanged = 3

// exitStatus is an error that only sets keysctl's exit status; main
// prints nothing for it.
type exitStatus int

func (s exitStatus) Error() string { return fmt.Sprintf("exit status %d", int(s)) }

// krlCmd runs "keysctl krl fetch FILE": no account is needed, the list is
// public.
func krlCmd(ctx context.Context, base string, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "fetch" {
		fmt.Fprint(stderr, usage)
		if len(args) > 0 && isHelp(args[0]) {
			return flag.ErrHelp
		}
		return errors.New(`unknown command: want "krl fetch FILE"`)
	}
	fs := commandFlags("krl fetch")
	fs.SetOutput(stderr)
	pos, err := parseCommand(fs, args[1:], 1)
	if err != nil {
		return err
	}
	changed, msg, err := fetchKRL(ctx, &http.Client{Timeout: time.Minute}, strings.TrimRight(base, "/"), pos[0])
	if err != nil {
		return err
	}
	if !changed {
		return exitStatus(exitUnchanged)
	}
	_, err = fmt.Fprintln(stdout, msg)
	return err
}

// fetchKRL brings the list in file up to keysd's, sending the ETag kept
// beside it (file + ".etag"): keysd answers 304 while the list is the
// same, and file is left as it is. A new list is checked (it must parse:
// sshd refuses every key when its RevokedKeys file does not) and replaces
// file in one rename, so sshd never reads half a list.
func fetchKRL(ctx context.Context, hc *http.Client, base, file string) (changed bool, msg string, err error) {
	etagFile := file + ".etag"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/--krl", nil)
	if err != nil {
		return false, "", err
	}
	if _, err := os.Stat(file); err == nil {
		// The ETag says which list file holds; without file it means
		// nothing.
		if etag, err := os.ReadFile(etagFile); err == nil && len(strings.TrimSpace(string(etag))) > 0 {
			req.Header.Set("If-None-Match", strings.TrimSpace(string(etag)))
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, "", err
	}
	switch {
	case resp.StatusCode == http.StatusNotModified:
		return false, "", nil
	case resp.StatusCode != http.StatusOK:
		return false, "", responseError(resp, data)
	}
	list, err := krl.Parse(data)
	if err != nil {
		return false, "", fmt.Errorf("%s/--krl answered something that is not a revocation list; %s left as it is: %w", base, file, err)
	}
	if err := replaceFile(file, data, 0o644); err != nil {
		return false, "", err
	}
	if etag := resp.Header.Get("ETag"); etag != "" {
		err = replaceFile(etagFile, []byte(etag+"\n"), 0o644)
	} else {
		err = os.Remove(etagFile)
		if errors.Is(err, os.ErrNotExist) {
			err = nil
		}
	}
	if err != nil {
		// The list is in place; the next fetch gets it again.
		return true, "", err
	}
	entries := len(list.SHA256) + len(list.SHA1) + len(list.Keys)
	for _, cr := range list.Certificates {
		for _, s := range cr.Serials {
			entries += int(s.Last - s.First + 1)
		}
		entries += len(cr.KeyIDs)
	}
	return true, fmt.Sprintf("%s: revocation list version %d, %d bytes, %d entries", file, list.Version, len(data), entries), nil
}

// replaceFile writes data to a temporary file beside path, flushes it to
// disk, and renames it to path: a reader sees the old file or the new
// one, never a part.
func replaceFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the rename, there is nothing to remove
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
