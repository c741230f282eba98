package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
	"github.com/infrakeys/infrakeys/sealing"
)

// offline is the data directory of a stopped keysd, opened with the bus
// package as keysd opens it.
type offline struct {
	conn *bus.Conn
	Log  *bus.EventLog
	Keys *bus.DataKeys
}

// MustOpenOffline opens k's data directory; k must be stopped, and the
// caller closes it before starting k again.
func MustOpenOffline(tb testing.TB, k *keysd) *offline {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := bus.Connect(ctx, bus.Config{StoreDir: filepath.Join(k.DataDir, "jetstream")})
	if err != nil {
		tb.Fatal(err)
	}
	o := &offline{conn: c}
	if o.Log, err = bus.OpenEventLog(ctx, c); err != nil {
		c.Close()
		tb.Fatal(err)
	}
	if o.Keys, err = bus.OpenDataKeys(ctx, c); err != nil {
		c.Close()
		tb.Fatal(err)
	}
	return o
}

// Close stops the embedded server.
func (o *offline) Close() { o.conn.Close() }

// sealedOf is a sealed private half as an event carried it, with the key
// it was recorded for.
type sealedOf struct {
	Key domain.KeyRef
	domain.SealedSecret
}

// sealedHistory replays the whole log and returns, per shared key name,
// every sealed private half its KeyCreated and KeyUpdated events carried.
func (o *offline) sealedHistory(tb testing.TB) map[string][]sealedOf {
	tb.Helper()
	out := map[string][]sealedOf{}
	_, err := o.Log.Replay(context.Background(), bus.ReplayOptions{Subjects: []string{bus.KindSubjects(domain.OwnerShared)}}, func(r bus.Recorded) error {
		if r.Event.Type != domain.TypeKeyCreated && r.Event.Type != domain.TypeKeyUpdated {
			return nil
		}
		var p domain.KeyCreated
		if err := r.Event.Decode(&p); err != nil {
			return err
		}
		if p.SealedPrivateKey != nil {
			if s := out[p.Name]; len(s) == 0 || s[len(s)-1].SecretID != p.SealedPrivateKey.SecretID {
				ref := domain.KeyRef{ID: p.ID, Scope: domain.ScopeShared, Name: p.Name}
				out[p.Name] = append(s, sealedOf{ref, *p.SealedPrivateKey})
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// TestLMIncludePrivateKey checks private halves are released only with
// includePrivateKey=true to keys:private callers, and that each release
// is recorded first: who, which key, which request, never the material.
func TestLMIncludePrivateKey(t *testing.T) {
	k := MustStartLM(t, nil)
	private, privateID := MustToken(t, k, "auditor", "keys:private")
	reader, _ := MustToken(t, k, "reader", "keys:read")
	pems := map[string]string{"alpha": MustOpenSSHPEM(t, MustKey(t)), "beta": MustOpenSSHPEM(t, MustECDSA(t))}
	for name, p := range pems {
		wantStatus(t, k.Admin.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": name, "privateKey": p}), http.StatusCreated)
	}
	wantStatus(t, k.Admin.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "gamma", "publicKey": AuthorizedKey(t, MustKey(t), "")}), http.StatusCreated)
	ids := map[string]string{}
	var list []infraKeyJSON
	k.Admin.Do(t, "GET", lmPrefix+"/shared", nil).JSON(t, &list)
	for _, key := range list {
		ids[key.Name] = key.ID
	}

	// reads returns the PrivateKeyRead events after seq.
	reads := func(t *testing.T, seq uint64) []bus.Recorded {
		t.Helper()
		var out []bus.Recorded
		for _, e := range eventsOf(MustEvents(t, k), domain.TypePrivateKeyRead) {
			if e.Seq > seq {
				out = append(out, e)
			}
		}
		return out
	}
	checkRead := func(t *testing.T, e bus.Recorded, actor, name string, r *response) {
		t.Helper()
		var p domain.PrivateKeyRead
		if err := e.Event.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if e.Event.Actor != actor || e.Event.RequestID != r.Header.Get("Request-Id") || e.Event.Owner != domain.SharedOwner(name) {
			t.Errorf("event by %q, request %q, owner %v; want %q, %q, %v", e.Event.Actor, e.Event.RequestID, e.Event.Owner, actor, r.Header.Get("Request-Id"), domain.SharedOwner(name))
		}
		if p.ID != ids[name] || p.Name != name || p.Purpose != domain.PurposeInclude {
			t.Errorf("payload %+v, want key %s (%s), purpose %s", p, name, ids[name], domain.PurposeInclude)
		}
		for _, pemText := range pems {
			for _, line := range bodyLines(pemText) {
				if strings.Contains(string(e.Event.Data), line) {
					t.Errorf("the audit event holds key material: %s", e.Event.Data)
				}
			}
		}
	}

	for _, tc := range []struct{ name, path string }{
		{"Get", keyPath("alpha")},
		{"GetByName", lmPrefix + "/alpha"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq := MustLastSeq(t, k)
			r := k.Bearer(private).Do(t, "GET", tc.path+"?includePrivateKey=true", nil)
			wantStatus(t, r, http.StatusOK)
			var got infraKeyJSON
			r.JSON(t, &got)
			if got.PrivateKey != pems["alpha"] {
				t.Errorf("privateKey %q", got.PrivateKey)
			}
			evs := reads(t, seq)
			if len(evs) != 1 {
				t.Fatalf("%d PrivateKeyRead events, want 1", len(evs))
			}
			checkRead(t, evs[0], "token:"+privateID+" (auditor)", "alpha", r)
		})
	}
	t.Run("List", func(t *testing.T) {
		seq := MustLastSeq(t, k)
		r := k.Bearer(private).Do(t, "GET", lmPrefix+"/shared?includePrivateKey=true", nil)
		wantStatus(t, r, http.StatusOK)
		var got []infraKeyJSON
		r.JSON(t, &got)
		for _, key := range got {
			if key.PrivateKey != pems[key.Name] {
				t.Errorf("%s: privateKey %q, want %q", key.Name, key.PrivateKey, pems[key.Name])
			}
		}
		evs := reads(t, seq)
		if len(evs) != 2 {
			t.Fatalf("%d PrivateKeyRead events, want 2 (gamma has no private half)", len(evs))
		}
		var names []string
		for _, e := range evs {
			var p domain.PrivateKeyRead
			_ = e.Event.Decode(&p)
			names = append(names, p.Name)
			checkRead(t, e, "token:"+privateID+" (auditor)", p.Name, r)
		}
		if slices.Sort(names); !slices.Equal(names, []string{"alpha", "beta"}) {
			t.Errorf("reads of %q", names)
		}
	})
	t.Run("Operator", func(t *testing.T) {
		seq := MustLastSeq(t, k)
		r := k.Admin.YAML(t, "GET", keyPath("beta")+"?includePrivateKey=true", nil)
		wantStatus(t, r, http.StatusOK)
		var got infraKeyJSON
		r.Decode(t, &got)
		if got.PrivateKey != pems["beta"] {
			t.Errorf("privateKey %q", got.PrivateKey)
		}
		evs := reads(t, seq)
		if len(evs) != 1 {
			t.Fatalf("%d PrivateKeyRead events, want 1", len(evs))
		}
		checkRead(t, evs[0], "admin", "beta", r)
	})
	t.Run("NotReleased", func(t *testing.T) {
		seq := MustLastSeq(t, k)
		for _, tc := range []struct {
			name   string
			c      *client
			query  string
			status int
		}{
			{"ErrReader", k.Bearer(reader), "?includePrivateKey=true", 403},
			{"ErrNotBoolean", k.Bearer(private), "?includePrivateKey=yes", 400},
			{"False", k.Bearer(private), "?includePrivateKey=false", 200},
			{"Absent", k.Bearer(private), "", 200},
		} {
			t.Run(tc.name, func(t *testing.T) {
				r := tc.c.Do(t, "GET", keyPath("alpha")+tc.query, nil)
				if r.StatusCode != tc.status {
					t.Errorf("status %d, want %d: %s", r.StatusCode, tc.status, r.Body)
				}
				if bytes.Contains(r.Body, []byte("PRIVATE KEY")) {
					t.Errorf("released: %s", r.Body)
				}
			})
		}
		if after := MustLastSeq(t, k); after != seq {
			t.Errorf("%d events recorded without a release", after-seq)
		}
	})
}

// TestLMCryptoShredding deletes a key and replaces another's private half,
// then opens the stopped service's data directory: their data keys are
// gone, from the stream and from its files, and replaying the log cannot
// open their private halves, while it still opens a live key's, so the
// procedure itself would recover a key that was not shredded.
func TestLMCryptoShredding(t *testing.T) {
	k := MustStart(t, nil)
	pems := map[string]string{"doomed": MustOpenSSHPEM(t, MustKey(t)), "kept": MustOpenSSHPEM(t, MustKey(t)), "replaced": MustOpenSSHPEM(t, MustKey(t))}
	for name, p := range pems {
		wantStatus(t, k.Admin.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": name, "privateKey": p}), http.StatusCreated)
	}

	// The wrapped data keys as stored, to look for them in the files later.
	k.Stop(t)
	o := MustOpenOffline(t, k)
	wrapped := map[string][]byte{}
	for name, s := range o.sealedHistory(t) {
		data, _, err := o.Keys.Get(context.Background(), s[0].SecretID)
		if err != nil || data == nil {
			t.Fatalf("data key of %s: %v", name, err)
		}
		var w sealing.WrappedKey
		if err := json.Unmarshal(data, &w); err != nil {
			t.Fatal(err)
		}
		wrapped[name] = w.Ciphertext
	}
	o.Close()
	k.Restart(t)

	replacement := MustOpenSSHPEM(t, MustKey(t))
	wantStatus(t, k.Admin.Do(t, "DELETE", keyPath("doomed"), nil), http.StatusNoContent)
	wantStatus(t, k.Admin.Do(t, "PUT", keyPath("replaced"), map[string]any{"privateKey": replacement}), http.StatusNoContent)
	k.Stop(t)

	o = MustOpenOffline(t, k)
	defer o.Close()
	master, err := sealing.LoadMasterKeyFile(filepath.Join(k.DataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	vault := sealing.NewVault(sealing.NewKeyring(master), o.Keys)
	history := o.sealedHistory(t)
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		secret  sealedOf
		want    string // "" if it must not open
		wrapped []byte // its original data key, if known
	}{
		{"doomed", history["doomed"][0], "", wrapped["doomed"]},
		{"replaced/old", history["replaced"][0], "", wrapped["replaced"]},
		{"replaced/new", history["replaced"][len(history["replaced"])-1], replacement, nil},
		{"kept", history["kept"][0], pems["kept"], wrapped["kept"]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, _, err := o.Keys.Get(ctx, tc.secret.SecretID)
			if err != nil {
				t.Fatal(err)
			}
			plain, openErr := vault.Open(ctx, tc.secret.Key, &tc.secret.SealedSecret)
			var hits []hit
			if tc.wrapped != nil {
				hits = searchTree(t, k.DataDir, []needle{{tc.name, tc.wrapped}, {tc.name, []byte(base64.StdEncoding.EncodeToString(tc.wrapped))}})
			}
			if tc.want != "" {
				if data == nil || openErr != nil || string(plain) != tc.want {
					t.Errorf("live key: data key %v, open %v, %d bytes", data != nil, openErr, len(plain))
				}
				if tc.wrapped != nil && len(hits) == 0 {
					t.Errorf("the search does not find a live data key in the files")
				}
				return
			}
			if data != nil {
				t.Errorf("the data key of %s is still stored", tc.secret.SecretID)
			}
			if openErr == nil {
				t.Errorf("replaying the log recovered a shredded private key")
			}
			if len(hits) > 0 {
				t.Errorf("the destroyed data key is still in the files: %v", hits)
			}
		})
	}
	if len(history["doomed"]) == 0 || len(history["replaced"]) != 2 {
		t.Errorf("history %v: the log should still hold every ciphertext", history)
	}
}

// needle is something no file may hold: key material, in one encoding.
type needle struct {
	Key  string
	Text []byte
}

// bodyLines returns the base64 lines of a PEM block long enough to be
// unique to the key.
func bodyLines(pemText string) []string {
	var out []string
	for _, line := range strings.Split(pemText, "\n") {
		if len(line) >= 24 && !strings.HasPrefix(line, "-----") && !strings.Contains(line, ":") {
			out = append(out, line)
		}
	}
	return out
}

// needlesOf returns how the private key pemText could sit in a file: its
// base64 body lines (plain or in JSON), its DER bytes, the whole PEM in
// base64 (a []byte field in JSON). Lines that encode only the public half
// (OpenSSH keys carry it, RSA keys their modulus) are left out when they
// also appear in the public key line, which keysd stores on purpose, and
// so is the first line of OpenSSH keys, the same in every key of a type.
func needlesOf(tb testing.TB, key, pemText string) []needle {
	tb.Helper()
	public := base64.StdEncoding.EncodeToString(publicOfPEM(tb, pemText).Marshal())
	var out []needle
	for _, line := range bodyLines(pemText) {
		if !strings.Contains(public, line) && !strings.HasPrefix(line, "b3BlbnNzaC1rZXktdjE") {
			out = append(out, needle{key, []byte(line)})
		}
	}
	if len(out) == 0 {
		tb.Fatalf("%s: %d private body lines to look for", key, len(out))
	}
	block, _ := pem.Decode([]byte(pemText))
	if block == nil {
		tb.Fatalf("%s: not PEM", key)
	}
	out = append(out, needle{key, block.Bytes}, needle{key, []byte(base64.StdEncoding.EncodeToString([]byte(pemText)))})
	return out
}

// hit is a needle found in a file.
type hit struct{ File, Key string }

// searchTree returns every needle found in a file under dir.
func searchTree(tb testing.TB, dir string, needles []needle) []hit {
	tb.Helper()
	var hits []hit
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		rel, _ := filepath.Rel(dir, path)
		hits = append(hits, searchBytes(rel, data, needles)...)
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if files == 0 {
		tb.Fatalf("no file under %s", dir)
	}
	return hits
}

// searchBytes returns the keys of the needles in data, once per key.
func searchBytes(name string, data []byte, needles []needle) []hit {
	var hits []hit
	seen := map[string]bool{}
	for _, n := range needles {
		if !seen[n.Key] && bytes.Contains(data, n.Text) {
			seen[n.Key] = true
			hits = append(hits, hit{name, n.Key})
		}
	}
	return hits
}

// TestLMDataDirectorySearch writes private keys through every path that
// takes or makes one, reads them back through every path that releases
// one, stops keysd and searches its whole data directory and its log for
// any of them.
func TestLMDataDirectorySearch(t *testing.T) {
	k := MustStartLM(t, nil)
	manager, _ := MustToken(t, k, "manager", "keys:manage")
	private, _ := MustToken(t, k, "private", "keys:private")
	m, p := k.Bearer(manager), k.Bearer(private)
	secrets := map[string]string{} // what must be nowhere, by a name for messages
	release := func(t *testing.T, name string) string {
		t.Helper()
		r := p.Do(t, "GET", keyPath(name)+"?includePrivateKey=true", nil)
		wantStatus(t, r, http.StatusOK)
		var got infraKeyJSON
		r.JSON(t, &got)
		if got.PrivateKey == "" {
			t.Fatalf("%s has no private half", name)
		}
		return got.PrivateKey
	}

	// Sent by clients, in every format, in JSON and in YAML.
	for _, pk := range MustPrivateKeys(t) {
		wantStatus(t, m.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "json-" + pk.Format, "privateKey": pk.PEM}), http.StatusCreated)
		secrets["json-"+pk.Format] = pk.PEM
	}
	for _, pk := range MustPrivateKeys(t) {
		wantStatus(t, m.YAML(t, "POST", lmPrefix+"/shared", map[string]any{"name": "yaml-" + pk.Format, "privateKey": pk.PEM}), http.StatusCreated)
		secrets["yaml-"+pk.Format] = pk.PEM
	}
	// Generated by keysd.
	for _, alg := range domain.KeyAlgorithms {
		wantStatus(t, m.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "gen-" + alg, "generate": alg}), http.StatusCreated)
		secrets["gen-"+alg] = release(t, "gen-"+alg)
	}
	// Replaced by PUT, with a half sent and with one generated: the old
	// and the new halves must be nowhere.
	put := MustOpenSSHPEM(t, MustRSA(t, 2048))
	wantStatus(t, m.Do(t, "PUT", keyPath("json-OpenSSH-ed25519"), map[string]any{"privateKey": put}), http.StatusNoContent)
	secrets["put"] = put
	wantStatus(t, m.YAML(t, "PUT", keyPath("gen-ed25519"), map[string]any{"generate": "ecdsa-p256"}), http.StatusNoContent)
	secrets["put-generated"] = release(t, "gen-ed25519")
	// Refused requests that carried a private half.
	refused := MustOpenSSHPEM(t, MustKey(t))
	wantStatus(t, m.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "json-SEC1-EC", "privateKey": refused}), http.StatusConflict)
	wantStatus(t, m.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "mismatch", "privateKey": refused, "publicKey": AuthorizedKey(t, MustKey(t), "")}), http.StatusConflict)
	secrets["refused"] = refused
	// Published by a driver.
	driver := MustOpenSSHPEM(t, MustECDSA(t))
	MustDriverKey(t, k, "vm-1", "driver-key", driver)
	secrets["driver"] = driver
	// Released by substitution, over HTTP and NATS.
	props := map[string]any{}
	for name := range secrets {
		if strings.HasPrefix(name, "json-") || strings.HasPrefix(name, "gen-") {
			props[name] = map[string]any{"type": "key", "value": name}
		}
	}
	props["driver"] = map[string]any{"type": "key", "value": "driver-key"}
	body := map[string]any{"instanceId": "vm-1", "properties": props}
	wantStatus(t, p.Do(t, "POST", lmPrefix+"/substitute", body), http.StatusOK)
	wantStatus(t, p.YAML(t, "POST", lmPrefix+"/substitute", body), http.StatusOK)
	if out := askSubstitute(t, MustNATS(t, k, bus.RoleManager), private, mustJSON(t, body)); out.Error != nil || len(out.Properties) != len(props) {
		t.Fatalf("NATS substitution: %+v", out.Error)
	}
	// Released in lists.
	wantStatus(t, p.Do(t, "GET", lmPrefix+"/shared?includePrivateKey=true", nil), http.StatusOK)
	wantStatus(t, p.YAML(t, "GET", lmPrefix+"/instances/vm-1?includePrivateKey=true", nil), http.StatusOK)
	// Tokens are secrets too: only their hashes may be stored.
	secretsTokens := map[string]string{"token-manager": manager, "token-private": private}

	k.Stop(t)

	var needles []needle
	for name, pemText := range secrets {
		needles = append(needles, needlesOf(t, name, pemText)...)
	}
	for name, tok := range secretsTokens {
		needles = append(needles, needle{name, []byte(tok)})
	}

	// The search finds what is planted in the directory, in each encoding
	// it looks for, and only that.
	plant := filepath.Join(k.DataDir, "planted")
	if err := os.MkdirAll(plant, 0o700); err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode([]byte(secrets["gen-rsa-4096"]))
	for file, data := range map[string][]byte{
		"event.json": mustJSON(t, map[string]any{"privateKey": secrets["yaml-PKCS8-RSA"]}),
		"bytes.json": mustJSON(t, map[string]any{"privateKey": []byte(secrets["driver"])}),
		"key.der":    append(append([]byte("prefix"), block.Bytes...), "suffix"...),
		"token.log":  []byte(`{"msg":"auth","token":"` + manager + `"}`),
	} {
		if err := os.WriteFile(filepath.Join(plant, file), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got := searchTree(t, k.DataDir, needles)
	sort.Slice(got, func(i, j int) bool { return got[i].File < got[j].File })
	want := []hit{
		{filepath.Join("planted", "bytes.json"), "driver"},
		{filepath.Join("planted", "event.json"), "yaml-PKCS8-RSA"},
		{filepath.Join("planted", "key.der"), "gen-rsa-4096"},
		{filepath.Join("planted", "token.log"), "token-manager"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("key material in the data directory %s:\n%v\nwant only the planted files:\n%v", k.DataDir, got, want)
	}

	logs := k.stderr.String()
	if !strings.Contains(logs, `"msg":"request"`) || !strings.Contains(logs, `"msg":"intake processed"`) {
		t.Fatalf("the log was not captured (%d bytes)", len(logs))
	}
	// Nor the master key, which sits in the data directory on purpose.
	master, err := os.ReadFile(filepath.Join(k.DataDir, "master.key"))
	if err != nil {
		t.Fatal(err)
	}
	_, masterKey, ok := strings.Cut(strings.TrimSpace(string(master)), ":")
	if !ok || len(masterKey) < 40 {
		t.Fatalf("master key file %q", master)
	}
	needles = append(needles, needle{"master key", []byte(masterKey)})
	if hits := searchBytes("stderr", []byte(logs), needles); len(hits) > 0 {
		t.Errorf("key material in the log: %v", hits)
	}
	if hits := searchBytes("stderr", []byte(logs+string(mustJSON(t, secrets["put"]))), needles); len(hits) != 1 || hits[0].Key != "put" {
		t.Errorf("the log search does not find a planted key: %v", hits)
	}
}

// TestLMMasterKeyRotation rotates the master key as docs/sealing.md says,
// with requests served throughout, and checks that no event is written by
// the rewrap and that the old master key is no longer needed afterwards.
func TestLMMasterKeyRotation(t *testing.T) {
	dir := t.TempDir()
	fileA, fileB := filepath.Join(dir, "a.key"), filepath.Join(dir, "b.key")
	keyA, _, err := sealing.LoadOrCreateMasterKeyFile(fileA)
	if err != nil {
		t.Fatal(err)
	}
	keyB, _, err := sealing.LoadOrCreateMasterKeyFile(fileB)
	if err != nil {
		t.Fatal(err)
	}
	k := MustStartLM(t, map[string]string{"KEYSD_MASTER_KEY_FILE": fileA})
	worker, workerID := MustToken(t, k, "worker", "keys:manage", "keys:private")

	pems := map[string]string{}
	create := func(t *testing.T, c *client, name string) {
		t.Helper()
		p := MustOpenSSHPEM(t, MustKey(t))
		wantStatus(t, c.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": name, "privateKey": p}), http.StatusCreated)
		pems[name] = p
	}
	for i := range 40 {
		create(t, k.Admin, "before-"+string(rune('a'+i/26))+string(rune('a'+i%26)))
	}
	checkAll := func(t *testing.T, c *client) {
		t.Helper()
		var list []infraKeyJSON
		r := c.Do(t, "GET", lmPrefix+"/shared?includePrivateKey=true", nil)
		wantStatus(t, r, http.StatusOK)
		r.JSON(t, &list)
		if len(list) != len(pems) {
			t.Errorf("%d keys, want %d", len(list), len(pems))
		}
		for _, key := range list {
			if key.PrivateKey != pems[key.Name] {
				t.Errorf("%s: private half %q, want %q", key.Name, key.PrivateKey, pems[key.Name])
			}
		}
	}

	t.Run("ErrNotOperator", func(t *testing.T) {
		alice := MustAccount(t, k, "alice")
		wantStatus(t, alice.Do(t, "POST", "/--admin/master-key/rewrap", nil), http.StatusForbidden)
	})

	// The data keys as A wraps them, to look for in the files at the end.
	k.Stop(t)
	underA := map[string][]byte{}
	o := MustOpenOffline(t, k)
	for name, s := range o.sealedHistory(t) {
		data, _, err := o.Keys.Get(context.Background(), s[0].SecretID)
		if err != nil || data == nil {
			o.Close()
			t.Fatalf("data key of %s: %v", name, err)
		}
		var wk sealing.WrappedKey
		if err := json.Unmarshal(data, &wk); err != nil {
			o.Close()
			t.Fatal(err)
		}
		underA[name] = wk.Ciphertext
	}
	o.Close()

	// Step 2: the new master key, the old one kept to open.
	k.Env["KEYSD_MASTER_KEY_FILE"] = fileB
	k.Env["KEYSD_PREVIOUS_MASTER_KEY_FILES"] = fileA
	k.Restart(t)
	w := k.Bearer(worker)
	t.Run("OldKeysOpenBeforeRewrap", func(t *testing.T) { checkAll(t, w) })
	create(t, w, "under-b")

	// Step 3: rewrap while the service serves creates, reads and deletes.
	t.Run("Rewrap", func(t *testing.T) {
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			stop    = make(chan struct{})
			ops     int
			failed  []string
			deleted []string
		)
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := "during-" + string(rune('a'+i/26%26)) + string(rune('a'+i%26))
				p := MustOpenSSHPEM(t, MustKey(t))
				steps := []struct {
					method, path string
					body         any
					want         int
				}{
					{"POST", lmPrefix + "/shared", map[string]any{"name": name, "privateKey": p}, 201},
					{"GET", keyPath("before-a"+string(rune('a'+i%20))) + "?includePrivateKey=true", nil, 200},
					{"DELETE", keyPath("before-b" + string(rune('a'+i%14))), nil, 0},
				}
				for _, s := range steps {
					r := w.Do(t, s.method, s.path, s.body)
					mu.Lock()
					ops++
					switch {
					case s.want != 0 && r.StatusCode != s.want:
						failed = append(failed, s.method+" "+s.path+": "+string(r.Body))
					case s.want == 0 && r.StatusCode == 204:
						deleted = append(deleted, strings.TrimPrefix(s.path, lmPrefix+"/shared/"))
					case s.want == 0 && r.StatusCode != 404:
						failed = append(failed, s.method+" "+s.path+": "+string(r.Body))
					}
					if s.method == "POST" && r.StatusCode == 201 {
						pems[name] = p
					}
					mu.Unlock()
				}
			}
		})
		time.Sleep(20 * time.Millisecond)
		before := MustLastSeq(t, k)
		r := k.Admin.Do(t, "POST", "/--admin/master-key/rewrap", nil)
		after := MustLastSeq(t, k)
		close(stop)
		wg.Wait()
		wantStatus(t, r, http.StatusOK)
		var res sealing.RewrapResult
		r.JSON(t, &res)
		if res.MasterKeyID != keyB.ID() || res.Rewrapped == 0 || res.Rewrapped > 40 || res.Current == 0 {
			t.Errorf("rewrap %+v: want master key %s, at most 40 rewrapped, under-b already current", res, keyB.ID())
		}
		if len(failed) > 0 {
			t.Errorf("%d of %d requests failed during the rewrap: %q", len(failed), ops, failed)
		}
		t.Logf("%d requests served around a rewrap of %d data keys", ops, res.Rewrapped)
		for _, name := range deleted {
			delete(pems, name)
		}
		// Every event meanwhile is the worker's: the rewrap wrote none.
		for _, e := range MustEvents(t, k) {
			if e.Seq > before && e.Seq <= after && (e.Event.Actor != "token:"+workerID+" (worker)" || e.Event.RequestID == r.Header.Get("Request-Id")) {
				t.Errorf("event %d during the rewrap: %s by %s", e.Seq, e.Event.Type, e.Event.Actor)
			}
		}
	})
	t.Run("AfterRewrap", func(t *testing.T) { checkAll(t, w) })

	// Step 4: the old master key retired.
	delete(k.Env, "KEYSD_PREVIOUS_MASTER_KEY_FILES")
	k.Restart(t)
	w = k.Bearer(worker)
	t.Run("OnlyNewMasterKey", func(t *testing.T) { checkAll(t, w) })
	t.Run("DataKeys", func(t *testing.T) {
		// Exactly the live keys have a data key, each wrapped by B:
		// none destroyed during the rewrap came back.
		k.Stop(t)
		o := MustOpenOffline(t, k)
		defer o.Close()
		ids, err := o.Keys.IDs(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var live []string
		for name, s := range o.sealedHistory(t) {
			if _, ok := pems[name]; ok {
				live = append(live, s[len(s)-1].SecretID)
			}
		}
		slices.Sort(ids)
		slices.Sort(live)
		if !slices.Equal(ids, live) {
			t.Errorf("%d data keys stored, want the %d of the live keys", len(ids), len(live))
		}
		for _, id := range ids {
			data, _, err := o.Keys.Get(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			var wk sealing.WrappedKey
			if err := json.Unmarshal(data, &wk); err != nil {
				t.Fatal(err)
			}
			if wk.MasterKeyID != keyB.ID() {
				t.Errorf("data key %s wrapped by %s, want %s (A is %s)", id, wk.MasterKeyID, keyB.ID(), keyA.ID())
			}
		}
	})
	t.Run("NoDataKeyUnderAInTheFiles", func(t *testing.T) {
		// Rewrapped or destroyed, a data key wrapped by A must be gone from
		// the stream's files too: whoever kept A could open it otherwise.
		var needles []needle
		for name, ct := range underA {
			needles = append(needles, needle{name, ct}, needle{name, []byte(base64.StdEncoding.EncodeToString(ct))})
		}
		if len(needles) != 2*40 {
			t.Fatalf("%d needles, want the 40 keys made under A in two encodings", len(needles))
		}
		if hits := searchTree(t, k.DataDir, needles); len(hits) > 0 {
			t.Errorf("%d data keys wrapped by the retired master key are still in the files: %v", len(hits), hits)
		}
	})
}

// TestLMMasterKeyFile checks the embedded default: a master key made on
// first start, readable by its owner only, its path logged, and a key
// file that others can read refused.
func TestLMMasterKeyFile(t *testing.T) {
	k := MustStart(t, nil)
	path := filepath.Join(k.DataDir, "master.key")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("master key mode %04o, want 0600", perm)
	}
	if logs := k.stderr.String(); !strings.Contains(logs, path) {
		t.Errorf("the new master key's path is not logged")
	}
	k.Stop(t)
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	env := k.Env
	env["KEYSD_HTTP_ADDR"] = freeAddr(t)
	var stderr syncBuffer
	err = run(context.Background(), nil, func(n string) string { return env[n] }, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Errorf("keysd started with a master key others can read: %v", err)
	}
}

// TestLMMasterKeyFileExternalNATS checks that keysd on an external NATS
// deployment never makes a master key of its own: each replica would make
// a different one and could not open the others' data keys. A missing
// file fails the start, with a message naming it, and is not created.
func TestLMMasterKeyFileExternalNATS(t *testing.T) {
	ns := MustNATSServer(t)
	missing := filepath.Join(t.TempDir(), "shared", "master.key")
	env := map[string]string{
		"KEYSD_NATS_URL":        ns.ClientURL(),
		"KEYSD_MASTER_KEY_FILE": missing,
		"KEYSD_DATA_DIR":        filepath.Join(t.TempDir(), "data"),
		"KEYSD_HTTP_ADDR":       freeAddr(t),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	var stderr syncBuffer
	go func() { done <- run(ctx, nil, func(n string) string { return env[n] }, io.Discard, &stderr) }()
	var err error
	deadline := time.Now().Add(30 * time.Second)
wait:
	for {
		select {
		case err = <-done:
			break wait
		default:
		}
		if resp, herr := http.Get("http://" + env["KEYSD_HTTP_ADDR"] + "/healthz"); herr == nil {
			resp.Body.Close()
			cancel()
			<-done
			t.Fatal("keysd started on an external NATS deployment with a master key file that did not exist")
		}
		if time.Now().After(deadline) {
			t.Fatalf("keysd neither failed nor started within 30s\n%s", &stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("err = %v, want one naming %s", err, missing)
	}
	if _, serr := os.Stat(missing); !errors.Is(serr, fs.ErrNotExist) {
		t.Errorf("a master key file was created: %v", serr)
	}
}

// TestLMReleaseWhileChanging releases private halves while other requests
// replace or delete them: a release shows the halves of one key pair, the
// one it recorded, or 404 once the key is deleted; never an error.
func TestLMReleaseWhileChanging(t *testing.T) {
	k := MustStart(t, nil)
	consistent := func(t *testing.T, public, private string) {
		t.Helper()
		if string(publicOfPEM(t, private).Marshal()) != string(publicOf(t, public).Marshal()) {
			t.Errorf("released halves that do not belong together")
		}
	}
	for i := range 30 {
		name := fmt.Sprintf("busy-%d", i)
		deleting := i%2 == 1
		wantStatus(t, k.Admin.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": name, "generate": "ed25519"}), http.StatusCreated)
		var wg sync.WaitGroup
		var get, list, sub *response
		wg.Go(func() { get = k.Admin.Do(t, "GET", keyPath(name)+"?includePrivateKey=true", nil) })
		wg.Go(func() { list = k.Admin.Do(t, "GET", lmPrefix+"/shared?includePrivateKey=true", nil) })
		wg.Go(func() {
			sub = k.Admin.Do(t, "POST", lmPrefix+"/substitute", map[string]any{"properties": map[string]any{"k": map[string]any{"type": "key", "value": name}}})
		})
		wg.Go(func() {
			if deleting {
				wantStatus(t, k.Admin.Do(t, "DELETE", keyPath(name), nil), http.StatusNoContent)
			} else {
				wantStatus(t, k.Admin.Do(t, "PUT", keyPath(name), map[string]any{"generate": "ed25519"}), http.StatusNoContent)
			}
		})
		wg.Wait()
		for _, r := range []*response{get, sub} {
			if r.StatusCode != http.StatusOK && !(deleting && r.StatusCode == http.StatusNotFound) {
				t.Errorf("%s %s during a change: %d %s", r.Request.Method, r.Request.URL.Path, r.StatusCode, r.Body)
			}
		}
		wantStatus(t, list, http.StatusOK)
		if get.StatusCode == http.StatusOK {
			var key infraKeyJSON
			get.JSON(t, &key)
			consistent(t, key.PublicKey, key.PrivateKey)
		}
		if sub.StatusCode == http.StatusOK {
			var out struct{ Properties map[string]map[string]string }
			sub.JSON(t, &out)
			consistent(t, out.Properties["k"]["publicKey"], out.Properties["k"]["privateKey"])
		}
		var keys []infraKeyJSON
		list.JSON(t, &keys)
		for _, key := range keys {
			consistent(t, key.PublicKey, key.PrivateKey)
		}
	}
}

// TestLMMasterKeyFromEnvironment seals with KEYSD_MASTER_KEY, writing no
// master key file.
func TestLMMasterKeyFromEnvironment(t *testing.T) {
	file := filepath.Join(t.TempDir(), "m.key")
	if _, _, err := sealing.LoadOrCreateMasterKeyFile(file); err != nil {
		t.Fatal(err)
	}
	value, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	k := MustStart(t, map[string]string{"KEYSD_MASTER_KEY": strings.TrimSpace(string(value))})
	keyPEM := MustOpenSSHPEM(t, MustKey(t))
	wantStatus(t, k.Admin.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "env", "privateKey": keyPEM}), http.StatusCreated)
	k.Restart(t)
	var got infraKeyJSON
	k.Admin.Do(t, "GET", keyPath("env")+"?includePrivateKey=true", nil).JSON(t, &got)
	if got.PrivateKey != keyPEM {
		t.Errorf("private half after a restart %q", got.PrivateKey)
	}
	if _, err := os.Stat(filepath.Join(k.DataDir, "master.key")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a master key file was written: %v", err)
	}
	if strings.Contains(k.stderr.String(), strings.TrimSpace(string(value))) {
		t.Errorf("the master key is in the log")
	}
}

// TestLMSealedKeyBoundToKeyID plays an attacker who can append to the
// event log: key A's sealedPrivateKey, copied whole into a KeyUpdated of
// key B that also claims A's id, must not be released as B's private half,
// neither by includePrivateKey nor by substitution for a driver.
func TestLMSealedKeyBoundToKeyID(t *testing.T) {
	k := MustStart(t, nil)
	pemA := MustOpenSSHPEM(t, MustKey(t))
	wantStatus(t, k.Admin.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "key-a", "privateKey": pemA}), http.StatusCreated)
	wantStatus(t, k.Admin.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": "key-b", "generate": "ed25519"}), http.StatusCreated)
	k.Stop(t)

	o := MustOpenOffline(t, k)
	ctx := context.Background()
	sealedA := o.sealedHistory(t)["key-a"][0]
	owner := domain.SharedOwner("key-b")
	recs, err := o.Log.ReadOwner(ctx, owner, 0)
	if err != nil || len(recs) == 0 {
		o.Close()
		t.Fatalf("events of key-b: %d, %v", len(recs), err)
	}
	last := recs[len(recs)-1]
	var p domain.KeyCreated
	if err := last.Event.Decode(&p); err != nil {
		o.Close()
		t.Fatal(err)
	}
	if p.ID == sealedA.Key.ID {
		o.Close()
		t.Fatal("key-a and key-b have the same id")
	}
	// The forger copies key A's id too: binding the id alone would then
	// let it open.
	p.ID, p.SealedPrivateKey, p.Description = sealedA.Key.ID, &sealedA.SealedSecret, "forged"
	forged := domain.NewEvent(owner, domain.KeyUpdated(p), domain.Meta{Actor: "attacker"})
	if _, err := o.Log.Append(ctx, owner, last.Seq, []domain.Event{forged}); err != nil {
		o.Close()
		t.Fatal(err)
	}
	o.Close()
	k.Restart(t)

	// The read model has the forged event once key-b shows its
	// description: wait for that, so that a refusal is not a stale read.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var b infraKeyJSON
		k.Admin.Do(t, "GET", keyPath("key-b"), nil).JSON(t, &b)
		if b.Description == "forged" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the forged event did not reach the read model")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, tc := range []struct {
		name string
		do   func() *response
	}{
		{"IncludePrivateKey", func() *response {
			return k.Admin.Do(t, "GET", keyPath("key-b")+"?includePrivateKey=true", nil)
		}},
		{"Substitute", func() *response {
			return k.Admin.Do(t, "POST", lmPrefix+"/substitute", map[string]any{"properties": map[string]any{"k": map[string]any{"type": "key", "value": "key-b"}}})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.do()
			for _, line := range bodyLines(pemA) {
				if strings.Contains(string(r.Body), line) {
					t.Fatalf("key-a's private half released as key-b's: %d", r.StatusCode)
				}
			}
			wantLMError(t, r, http.StatusInternalServerError, "application/json", "internal error")
		})
	}
	// Key A itself still opens.
	var got infraKeyJSON
	k.Admin.Do(t, "GET", keyPath("key-a")+"?includePrivateKey=true", nil).JSON(t, &got)
	if got.PrivateKey != pemA {
		t.Errorf("key-a's private half %q", got.PrivateKey)
	}
}
