package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/infrakeys/infrakeys/krl"
)

// krl fetch writes the revocation list to a file with its ETag beside
// it, needs no account, leaves the file alone (exit status 3) while the
// list is current, replaces it when it changed, and never installs an
// error or something that is not a list.
func TestKRLFetch(t *testing.T) {
	dir := t.TempDir()
	d, _, must := MustAdminKeysd(t, dir)
	out := t.TempDir()
	file := filepath.Join(out, "revoked.krl")
	// fetch runs keysctl krl fetch as a host would: no account, no key.
	fetch := func(url string) (string, error) {
		t.Helper()
		return keysctl(t, map[string]string{"HOME": dir}, "--url", url, "krl", "fetch", file)
	}
	read := func() *krl.KRL {
		t.Helper()
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		k, err := krl.Parse(data)
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		return k
	}

	msg, err := fetch(d.url)
	if err != nil || !strings.Contains(msg, "revocation list version 0") {
		t.Fatalf("first fetch: %v %q", err, msg)
	}
	if etag, err := os.ReadFile(file + ".etag"); err != nil || string(etag) != "\"0\"\n" {
		t.Errorf("%s.etag = %q (%v), want \"0\"", file, etag, err)
	}
	unchanged := func(what string) {
		t.Helper()
		before, _ := os.ReadFile(file)
		msg, err := fetch(d.url)
		var st exitStatus
		if !errors.As(err, &st) || st != exitUnchanged {
			t.Errorf("%s: fetch again: %v %q, want exit status %d", what, err, msg, exitUnchanged)
		}
		if after, _ := os.ReadFile(file); !slices.Equal(before, after) {
			t.Errorf("%s: the file changed", what)
		}
	}
	unchanged("Current")

	must("ca", "create", "user")
	_, bobPub := MustKeyFiles(t, dir, "bob-laptop")
	must("account", "create", "bob", "--key", bobPub)
	var cert struct{ Serial uint64 }
	if err := json.Unmarshal([]byte(must("cert", "sign", "bob", "bob-laptop", "--out", filepath.Join(dir, "cert.pub"))), &cert); err != nil {
		t.Fatal(err)
	}
	unchanged("Signed")
	serial := strconv.FormatUint(cert.Serial, 10)
	must("cert", "revoke", "bob", serial)
	if msg, err := fetch(d.url); err != nil || !strings.Contains(msg, "1 entries") {
		t.Fatalf("fetch after a revocation: %v %q", err, msg)
	}
	k := read()
	if len(k.Certificates) != 1 || strconv.FormatUint(k.Certificates[0].Serials[0].First, 10) != serial {
		t.Errorf("the list revokes %+v, want serial %s", k.Certificates, serial)
	}
	if etag, _ := os.ReadFile(file + ".etag"); string(etag) != "\""+strconv.FormatUint(k.Version, 10)+"\"\n" {
		t.Errorf("etag %q, list version %d", etag, k.Version)
	}
	unchanged("Revoked")

	// Without the list beside it, the ETag is not sent: the list is
	// fetched again.
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	if _, err := fetch(d.url); err != nil {
		t.Fatalf("fetch without the file: %v", err)
	}
	want, _ := os.ReadFile(file)

	// An error, or an answer that is not a list, leaves the file alone.
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"99"`)
		w.Write([]byte("<html>captive portal</html>"))
	}))
	defer garbage.Close()
	for _, tc := range []struct{ name, url, msg string }{
		{"ErrNotFound", d.url + "/nowhere", "ResourceNotFound (404)"},
		{"ErrNotAList", garbage.URL, "not a revocation list"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if msg, err := fetch(tc.url); err == nil || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("fetch: %v %q, want an error containing %q", err, msg, tc.msg)
			}
			if got, _ := os.ReadFile(file); !slices.Equal(got, want) {
				t.Errorf("the file changed")
			}
			if etag, _ := os.ReadFile(file + ".etag"); string(etag) == "\"99\"\n" {
				t.Errorf("the ETag file changed")
			}
		})
	}
	if entries, _ := os.ReadDir(out); len(entries) != 2 {
		t.Errorf("%s holds %d files, want the list and its ETag: a temporary file was left", out, len(entries))
	}
}
