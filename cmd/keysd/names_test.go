package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
	"github.com/infrakeys/infrakeys/domain"
)

// segmentNames are names of every class of character a key name or an
// instance id may hold: letters, digits, white space inside, non-ASCII
// letters, combining marks, emoji, dots that are not dot segments, text
// that looks percent-encoded, the longest name, and each printable ASCII
// punctuation character but '/', inside a name and alone.
func segmentNames() []string {
	names := []string{
		"web", "2024", "public only", "ключ", "鍵", "κλειδί", "e\u0301", "🔑",
		"...", ".hidden", "a.", "..a", "%2E%2E", "%2e", "a%2Fb", "a%41", "100%",
		strings.Repeat("n", 255),
	}
	for _, c := range "!\"#$%&'()*+,-.:;<=>?@[\\]^_`{|}~" {
		names = append(names, "a"+string(c)+"b")
		if c != '.' {
			names = append(names, string(c))
		}
	}
	return names
}

// refusedSegmentNames are names that cannot round-trip as a path segment,
// with a part of the message that says why.
var refusedSegmentNames = []struct{ name, in, want string }{
	{"Dot", ".", `must not be "."`},
	{"DotDot", "..", `must not be ".."`},
	{"Slash", "a/b", "must not contain '/'"},
	{"Control", "a\x01b", "must not contain control"},
	{"ZeroWidth", "a\u200bb", "must not contain control, format"},
	{"LeadingSpace", " web", "must not begin or end with white space"},
	{"TrailingSpace", "web ", "must not begin or end with white space"},
	{"TooLong", strings.Repeat("n", 256), "must be at most 255 bytes"},
}

// curl sends method url with c's credentials through the curl command
// line tool, which (unlike Go's client) resolves dot segments as browsers
// and proxies do, and returns the status and body.
func (c *client) curl(tb testing.TB, method, url string, body any) (int, []byte) {
	tb.Helper()
	bin, err := exec.LookPath("curl")
	if err != nil {
		tb.Skip("curl is not installed")
	}
	req := newRequest(tb, method, url, body)
	c.authorize(tb, req)
	args := []string{"-sS", "-X", method, "-o", "-", "-w", "\n%{http_code}"}
	for name, vs := range req.Header {
		for _, v := range vs {
			args = append(args, "-H", name+": "+v)
		}
	}
	if req.Body != nil {
		args = append(args, "--data-binary", "@-")
	}
	cmd := exec.Command(bin, append(args, url)...)
	if req.Body != nil {
		cmd.Stdin = req.Body
	}
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("curl %s %s: %v", method, url, err)
	}
	i := bytes.LastIndexByte(out, '\n')
	status, err := strconv.Atoi(string(out[i+1:]))
	if err != nil {
		tb.Fatalf("curl %s %s: no status in %q", method, url, out)
	}
	return status, out[:i]
}

// locationName is the name a client such as lmctl reads from a Location:
// its last segment, decoded.
func locationName(tb testing.TB, loc string) string {
	tb.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		tb.Fatalf("Location %q: %v", loc, err)
	}
	return path.Base(u.Path)
}

// TestSharedKeyNamesRoundTrip creates an LM shared key with a name of
// every class, then reads, updates and deletes it at exactly the Location
// the creation answered, with Go's client and with curl.
func TestSharedKeyNamesRoundTrip(t *testing.T) {
	k := MustStart(t, nil)
	token, _ := MustToken(t, k, "manager", "keys:manage")
	c := k.Bearer(token)
	for _, name := range segmentNames() {
		t.Run(url.PathEscape(name), func(t *testing.T) {
			r := c.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": name, "publicKey": AuthorizedKey(t, MustKey(t), "")})
			wantStatus(t, r, http.StatusCreated)
			loc := r.Header.Get("Location")
			if got := locationName(t, loc); got != name {
				t.Fatalf("Location %q names %q", loc, got)
			}
			var got infraKeyJSON
			c.Do(t, "GET", loc, nil).JSON(t, &got)
			if got.Name != name {
				t.Fatalf("GET %s (Go): name %q", loc, got.Name)
			}
			status, body := c.curl(t, "GET", k.URL+loc, nil)
			if err := json.Unmarshal(body, &got); status != http.StatusOK || err != nil || got.Name != name {
				t.Fatalf("GET %s (curl): %d %s", loc, status, body)
			}
			wantStatus(t, c.Do(t, "PUT", loc, map[string]any{"description": "by Go"}), http.StatusNoContent)
			if status, body := c.curl(t, "PUT", k.URL+loc, map[string]any{"description": "by curl"}); status != http.StatusNoContent {
				t.Fatalf("PUT %s (curl): %d %s", loc, status, body)
			}
			c.Do(t, "GET", loc, nil).JSON(t, &got)
			if got.Description != "by curl" {
				t.Errorf("description %q after both updates, want %q", got.Description, "by curl")
			}
			if status, body := c.curl(t, "DELETE", k.URL+loc, nil); status != http.StatusNoContent {
				t.Fatalf("DELETE %s (curl): %d %s", loc, status, body)
			}
			wantLMError(t, c.Do(t, "GET", loc, nil), http.StatusNotFound, "application/json", "does not exist")
		})
	}
	for _, tc := range refusedSegmentNames {
		t.Run("Err"+tc.name, func(t *testing.T) {
			r := c.Do(t, "POST", lmPrefix+"/shared", map[string]any{"name": tc.in, "publicKey": AuthorizedKey(t, MustKey(t), "")})
			wantLMError(t, r, http.StatusBadRequest, "application/json", "name "+tc.want)
		})
	}
	var pool []infraKeyJSON
	c.Do(t, "GET", lmPrefix+"/shared", nil).JSON(t, &pool)
	if len(pool) != 0 {
		t.Errorf("the pool holds %d keys after every one was deleted or refused: %+v", len(pool), pool)
	}
}

// TestAccountKeyNamesRoundTrip creates an account key with a name of every
// class, then reads it at its Location and reads and deletes it by name,
// encoded as the triton CLI does, with Go's client and with curl.
func TestAccountKeyNamesRoundTrip(t *testing.T) {
	k := MustStart(t, nil)
	alice := MustAccount(t, k, "alice")
	for _, name := range segmentNames() {
		t.Run(url.PathEscape(name), func(t *testing.T) {
			r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": name, "key": AuthorizedKey(t, MustKey(t), "")})
			if r.StatusCode != http.StatusCreated {
				t.Fatalf("create: %d %s", r.StatusCode, r.Body)
			}
			var got keyJSON
			loc := r.Header.Get("Location")
			alice.Do(t, "GET", loc, nil).JSON(t, &got)
			if got.Name != name {
				t.Fatalf("GET %s: name %q", loc, got.Name)
			}
			byName := "/my/keys/" + encodeURIComponent(name)
			alice.Do(t, "GET", byName, nil).JSON(t, &got)
			if got.Name != name {
				t.Fatalf("GET %s (Go): name %q", byName, got.Name)
			}
			status, body := alice.curl(t, "GET", k.URL+byName, nil)
			if err := json.Unmarshal(body, &got); status != http.StatusOK || err != nil || got.Name != name {
				t.Fatalf("GET %s (curl): %d %s", byName, status, body)
			}
			if status, body := alice.curl(t, "DELETE", k.URL+"/alice/keys/"+url.PathEscape(name), nil); status != http.StatusNoContent {
				t.Fatalf("DELETE (curl): %d %s", status, body)
			}
			if r := alice.Do(t, "GET", loc, nil); r.StatusCode != http.StatusNotFound {
				t.Errorf("GET %s after the delete: %d", loc, r.StatusCode)
			}
		})
	}
	for _, tc := range refusedSegmentNames {
		t.Run("Err"+tc.name, func(t *testing.T) {
			r := alice.Do(t, "POST", "/alice/keys", map[string]any{"name": tc.in, "key": AuthorizedKey(t, MustKey(t), "")})
			if code, msg := r.ErrorBody(t); r.StatusCode != http.StatusConflict || code != "InvalidArgument" || !strings.Contains(msg, "name "+tc.want) {
				t.Errorf("got %d %s %q, want 409 InvalidArgument %q", r.StatusCode, code, msg, tc.want)
			}
		})
	}
	t.Run("RefusedCommentFallsBackToFingerprint", func(t *testing.T) {
		r := alice.Do(t, "POST", "/alice/keys", map[string]any{"key": AuthorizedKey(t, MustKey(t), "..")})
		var got keyJSON
		r.JSON(t, &got)
		if r.StatusCode != http.StatusCreated || got.Name != got.Fingerprint {
			t.Errorf("key with comment \"..\": %d, name %q, want its fingerprint", r.StatusCode, got.Name)
		}
	})
	var keys []keyJSON
	alice.Do(t, "GET", "/alice/keys", nil).JSON(t, &keys)
	if len(keys) != 2 {
		t.Errorf("alice has %d keys, want 2 (her first and the fingerprint-named one)", len(keys))
	}
}

// TestLoginsRoundTrip creates accounts with logins of every allowed class,
// including logins that are also the first segment of other routes, and
// reads each at the Location its creation answered and through its keys.
func TestLoginsRoundTrip(t *testing.T) {
	k := MustStart(t, nil)
	for _, login := range []string{"ab", "a1", "a_b", "a.b", "a@b", "a-b", "a..", "bob.smith@corp", "api", "healthz", "metrics", "openapi.yaml", "A" + strings.Repeat("z", 63)} {
		t.Run(login, func(t *testing.T) {
			r := k.Admin.Do(t, "POST", "/--admin/accounts", map[string]any{"login": login, "key": AuthorizedKey(t, MustKey(t), "")})
			if r.StatusCode != http.StatusCreated {
				t.Fatalf("create: %d %s", r.StatusCode, r.Body)
			}
			loc := r.Header.Get("Location")
			var got struct{ Login string }
			k.Admin.Do(t, "GET", loc, nil).JSON(t, &got)
			if got.Login != login {
				t.Fatalf("GET %s (Go): login %q", loc, got.Login)
			}
			status, body := k.Admin.curl(t, "GET", k.URL+loc, nil)
			if err := json.Unmarshal(body, &got); status != http.StatusOK || err != nil || got.Login != login {
				t.Fatalf("GET %s (curl): %d %s", loc, status, body)
			}
			var keys []keyJSON
			if r := k.Admin.Do(t, "GET", "/"+encodeURIComponent(login)+"/keys", nil); r.StatusCode != http.StatusOK {
				t.Fatalf("GET /%s/keys: %d %s", login, r.StatusCode, r.Body)
			} else if r.JSON(t, &keys); len(keys) != 1 {
				t.Errorf("GET /%s/keys: %d keys, want 1", login, len(keys))
			}
		})
	}
	for _, login := range []string{"my", ".", "..", "a/b", " ab", "a b", "a%41"} {
		t.Run("Err"+url.PathEscape(login), func(t *testing.T) {
			r := k.Admin.Do(t, "POST", "/--admin/accounts", map[string]any{"login": login, "key": AuthorizedKey(t, MustKey(t), "")})
			if code, _ := r.ErrorBody(t); r.StatusCode != http.StatusConflict || code != "InvalidArgument" {
				t.Errorf("got %d %s %s, want 409 InvalidArgument", r.StatusCode, code, r.Body)
			}
		})
	}
}

// TestInstanceNamesRoundTrip has a driver publish keys for instances whose
// ids, and keys whose names, are of every class, then lists each
// instance's keys and removes the instance at its path, with Go's client
// and with curl. Ids and names that cannot round-trip are rejected by the
// intake as they are over HTTP.
func TestInstanceNamesRoundTrip(t *testing.T) {
	k := MustStartLM(t, nil)
	nc, _ := MustConnectRole(t, k, bus.RoleDriver)
	d := newDriver(t, nc)
	token, _ := MustToken(t, k, "manager", "keys:manage")
	c := k.Bearer(token)
	for _, id := range segmentNames() {
		t.Run(url.PathEscape(id), func(t *testing.T) {
			_, pub := genKey(t, "")
			// The key has the id for a name too: names of every class go
			// through the intake as well.
			_, ch := d.publish(t, bus.IntakeKeySubject(id), driverKey(t, map[string]any{"keyName": id, "publicKey": pub}), "")
			if o := outcome(t, ch); o.Outcome != domain.OutcomeCreated {
				t.Fatalf("intake outcome %+v", o)
			}
			p := lmPrefix + "/instances/" + url.PathEscape(id)
			var keys []infraKeyJSON
			c.Do(t, "GET", p, nil).JSON(t, &keys)
			if len(keys) != 1 || keys[0].Name != id {
				t.Fatalf("GET %s (Go): %+v", p, keys)
			}
			status, body := c.curl(t, "GET", k.URL+p, nil)
			if err := json.Unmarshal(body, &keys); status != http.StatusOK || err != nil || len(keys) != 1 || keys[0].Name != id {
				t.Fatalf("GET %s (curl): %d %s", p, status, body)
			}
			status, body = c.curl(t, "DELETE", k.URL+p, nil)
			var removed struct{ InstanceID string }
			if err := json.Unmarshal(body, &removed); status != http.StatusAccepted || err != nil || removed.InstanceID != id {
				t.Fatalf("DELETE %s (curl): %d %s", p, status, body)
			}
		})
	}
	for _, tc := range refusedSegmentNames {
		t.Run("Err"+tc.name, func(t *testing.T) {
			_, pub := genKey(t, "")
			_, ch := d.publish(t, bus.IntakeKeySubject(tc.in), driverKey(t, map[string]any{"keyName": "k", "publicKey": pub}), "")
			if o := outcome(t, ch); o.Outcome != domain.OutcomeRejected || o.Reason != domain.ReasonInvalidInstance || !strings.Contains(o.Message, "instanceId "+tc.want) {
				t.Errorf("instance id %q: outcome %+v", tc.in, o)
			}
			_, ch = d.publish(t, bus.IntakeKeySubject("vm-1"), driverKey(t, map[string]any{"keyName": tc.in, "publicKey": pub}), "")
			if o := outcome(t, ch); o.Outcome != domain.OutcomeRejected || o.Reason != domain.ReasonInvalidKey || !strings.Contains(o.Message, "name "+tc.want) {
				t.Errorf("key name %q: outcome %+v", tc.in, o)
			}
			_, ch = d.publish(t, bus.IntakeKeySubject("vm-1"), driverKey(t, map[string]any{"keyName": tc.in, "publicKey": pub, "scope": "shared"}), "")
			if o := outcome(t, ch); o.Outcome != domain.OutcomeRejected || o.Reason != domain.ReasonInvalidKey {
				t.Errorf("shared key name %q: outcome %+v", tc.in, o)
			}
			// Over HTTP, with Go's client, which sends dot segments as
			// they are.
			r := c.Do(t, "DELETE", lmPrefix+"/instances/"+url.PathEscape(tc.in), nil)
			wantLMError(t, r, http.StatusBadRequest, "application/json", "instanceId "+tc.want)
		})
	}
	if keys := k.instanceKeys(t, "vm-1"); len(keys) != 0 {
		t.Errorf("vm-1 has keys after only refusals: %+v", keys)
	}
}

// TestRefusedInstanceIDOfEarlierKeysdStillRemovable plays a log written by
// a keysd from before the name rules, holding a key of instance "..": the
// resource manager must still be able to remove that instance, since only
// the cascade of the removal deletes its keys.
func TestRefusedInstanceIDOfEarlierKeysdStillRemovable(t *testing.T) {
	k := MustStart(t, nil)
	k.Stop(t)
	o := MustOpenOffline(t, k)
	pub := MustSSHPublic(t, MustKey(t))
	owner := domain.InstanceOwner("..")
	ev := domain.NewEvent(owner, domain.KeyCreated{
		ID: "01M8XQ77KRM3FRMEVV0G4X81QQ", Name: "old", Fingerprint: ssh.FingerprintLegacyMD5(pub),
		FingerprintSHA256: ssh.FingerprintSHA256(pub), Key: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))),
		Type: pub.Type(), Bits: 256,
	}, domain.Meta{Actor: "driver"})
	if _, err := o.Log.Append(context.Background(), owner, 0, []domain.Event{ev}); err != nil {
		o.Close()
		t.Fatal(err)
	}
	o.Close()
	k.Restart(t)

	// Go's client sends the dot segment as it is.
	p := lmPrefix + "/instances/.."
	eventually(t, 10*time.Second, "the old key listed", func() bool {
		var keys []infraKeyJSON
		k.Admin.Do(t, "GET", p, nil).JSON(t, &keys)
		return len(keys) == 1
	})
	wantStatus(t, k.Admin.Do(t, "DELETE", p, nil), http.StatusAccepted)
	eventually(t, 10*time.Second, "the cascade deleted the old key", func() bool {
		var keys []infraKeyJSON
		k.Admin.Do(t, "GET", p, nil).JSON(t, &keys)
		return len(keys) == 0
	})
	// An id refused that names no instance with keys stays refused.
	wantLMError(t, k.Admin.Do(t, "DELETE", lmPrefix+"/instances/.", nil), http.StatusBadRequest, "application/json", `instanceId must not be "."`)
}

// TestTritonCLIKeyNames adds keys under names of the classes most likely
// to be mangled with the triton CLI (which encodes them with
// encodeURIComponent), gets each by name and deletes it by name; a dot
// segment is refused with a message the CLI shows.
func TestTritonCLIKeyNames(t *testing.T) {
	triton := findTool(t, "triton", "KEYSD_TRITON", "../../.ci/node_modules/.bin/triton")
	home := newCLIHome(t)
	signer := home.SigningKey(t, "id_ed25519", "tri-ed25519", "-t", "ed25519")
	k := MustStart(t, nil)
	mustAccountWithKeyFile(t, k, "tri", signer)
	cli := home.Tool(triton, "TRITON_URL="+k.URL, "TRITON_ACCOUNT=tri", "TRITON_PROFILE=env", "TRITON_KEY_ID="+signer.MD5)
	for i, name := range []string{"a b", "a%41", "a?b#c", "...", "ключ", "a\\b"} {
		t.Run(url.PathEscape(name), func(t *testing.T) {
			extra := home.SpareKey(t, "k"+strconv.Itoa(i), "c", "-t", "ed25519")
			cli.Run(t, "key", "add", "-n", name, extra.Path+".pub")
			got := decodeKeys(t, cli.Run(t, "key", "get", "-j", name))
			if len(got) != 1 || got[0].Name != name || got[0].Fingerprint != extra.MD5 {
				t.Fatalf("key get %q = %+v", name, got)
			}
			cli.Run(t, "key", "delete", "-y", name)
			if out, _, err := cli.Try("key", "get", name); err == nil {
				t.Errorf("key get %q after delete succeeded: %s", name, out)
			}
		})
	}
	t.Run("ErrDotDot", func(t *testing.T) {
		extra := home.SpareKey(t, "dotdot", "c", "-t", "ed25519")
		_, errOut, err := cli.Try("key", "add", "-n", "..", extra.Path+".pub")
		if err == nil || !strings.Contains(errOut, `name must not be ".."`) {
			t.Errorf("key add -n ..: err %v, stderr %q", err, errOut)
		}
	})
}
