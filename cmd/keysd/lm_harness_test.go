package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.yaml.in/yaml/v3"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/bus"
)

// lmPrefix is where the Lifecycle Manager surface lives.
const lmPrefix = "/api/resource-manager/infrastructure-keys"

// infraKeyJSON is an infrastructure key as the LM API returns it.
type infraKeyJSON struct {
	ID                string `json:"id" yaml:"id"`
	Name              string `json:"name" yaml:"name"`
	Description       string `json:"description" yaml:"description"`
	PublicKey         string `json:"publicKey" yaml:"publicKey"`
	PrivateKey        string `json:"privateKey" yaml:"privateKey"`
	Fingerprint       string `json:"fingerprint" yaml:"fingerprint"`
	FingerprintSHA256 string `json:"fingerprintSHA256" yaml:"fingerprintSHA256"`
	Scope             string `json:"scope" yaml:"scope"`
	InstanceID        string `json:"instanceId" yaml:"instanceId"`
}

// lmErrorJSON is LM's error body.
type lmErrorJSON struct {
	LocalizedMessage string         `json:"localizedMessage" yaml:"localizedMessage"`
	Details          map[string]any `json:"details" yaml:"details"`
	URL              string         `json:"url" yaml:"url"`
}

// MustStartLM starts keysd with its embedded NATS server also listening
// (KEYSD_NATS_LISTEN), so tests can talk to it as the resource manager,
// a driver or an audit consumer.
func MustStartLM(tb testing.TB, env map[string]string) *keysd {
	tb.Helper()
	full := map[string]string{"KEYSD_NATS_LISTEN": freeAddr(tb)}
	for k, v := range env {
		full[k] = v
	}
	return MustStart(tb, full)
}

// Bearer returns a client that authenticates with an API token; an empty
// token sends no credentials at all.
func (k *keysd) Bearer(token string) *client {
	return &client{k: k, base: k.URL, token: token}
}

// MustToken creates an API token with roles through the operator API and
// returns its secret and id.
func MustToken(tb testing.TB, k *keysd, name string, roles ...string) (secret, id string) {
	tb.Helper()
	r := k.Admin.Do(tb, "POST", "/--admin/tokens", map[string]any{"name": name, "roles": roles})
	if r.StatusCode != http.StatusCreated {
		tb.Fatalf("create token %s: %d %s", name, r.StatusCode, r.Body)
	}
	var out struct{ ID, Token string }
	r.JSON(tb, &out)
	return out.Token, out.ID
}

// LMError decodes an LM error body (JSON or YAML, as the response says)
// and checks its shape: a message, the request id in details, the path.
func (r *response) LMError(tb testing.TB) lmErrorJSON {
	tb.Helper()
	var e lmErrorJSON
	r.Decode(tb, &e)
	if e.LocalizedMessage == "" {
		tb.Errorf("error body without localizedMessage: %s", r.Body)
	}
	if got, want := e.Details["requestId"], r.Header.Get("Request-Id"); got != want {
		tb.Errorf("details.requestId = %v, want the Request-Id header %q", got, want)
	}
	if got, want := e.URL, r.Request.URL.Path; got != want {
		tb.Errorf("url = %q, want %q", got, want)
	}
	return e
}

// Decode decodes a JSON or YAML body, as its Content-Type says.
func (r *response) Decode(tb testing.TB, v any) {
	tb.Helper()
	switch ct := r.Header.Get("Content-Type"); {
	case strings.HasPrefix(ct, "application/yaml"):
		if err := yaml.Unmarshal(r.Body, v); err != nil {
			tb.Fatalf("decode YAML %s: %v", r.Body, err)
		}
	case strings.HasPrefix(ct, "application/json"):
		r.JSON(tb, v)
	default:
		tb.Fatalf("unexpected Content-Type %q: %s", ct, r.Body)
	}
}

// DoWith is Do with extra request headers (Content-Type, Accept, ...).
// body is sent as is when it is a string or []byte.
func (c *client) DoWith(tb testing.TB, method, path string, body any, h http.Header) *response {
	tb.Helper()
	req := newRequest(tb, method, c.base+path, body)
	for name, vs := range h {
		req.Header[name] = vs
	}
	return c.send(tb, req)
}

// YAML sends body (any value, encoded as YAML) with Content-Type and
// Accept application/yaml.
func (c *client) YAML(tb testing.TB, method, path string, body any) *response {
	tb.Helper()
	var data any
	switch b := body.(type) {
	case nil, string, []byte:
		data = b
	default:
		out, err := yaml.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		data = out
	}
	h := http.Header{"Accept": {"application/yaml"}}
	if data != nil {
		h.Set("Content-Type", "application/yaml")
	}
	return c.DoWith(tb, method, path, data, h)
}

// MustNATS connects to keysd's embedded NATS server as role (bus.Roles),
// with the NKey seed keysd wrote in its data directory.
func MustNATS(tb testing.TB, k *keysd, role string) *nats.Conn {
	tb.Helper()
	nc, _ := MustConnectRole(tb, k, role)
	return nc
}

// MustEvents returns every event of the log, read as an audit consumer.
func MustEvents(tb testing.TB, k *keysd) []bus.Recorded {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := bus.AttachEventLog(ctx, MustNATS(tb, k, bus.RoleAudit))
	if err != nil {
		tb.Fatal(err)
	}
	var out []bus.Recorded
	if _, err := l.Replay(ctx, bus.ReplayOptions{}, func(r bus.Recorded) error {
		out = append(out, r)
		return nil
	}); err != nil {
		tb.Fatal(err)
	}
	return out
}

// MustLastSeq returns the sequence of the last event in the log.
func MustLastSeq(tb testing.TB, k *keysd) uint64 {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := bus.AttachEventLog(ctx, MustNATS(tb, k, bus.RoleAudit))
	if err != nil {
		tb.Fatal(err)
	}
	seq, err := l.LastSeq(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return seq
}

// keyPath is the path of the shared key name.
func keyPath(name string) string { return lmPrefix + "/shared/" + url.PathEscape(name) }

// privateKey is a private key in one PEM format, with its public half.
type privateKey struct {
	Format string
	PEM    string
	Public ssh.PublicKey
}

// AuthorizedLine is the public half as an OpenSSH line without comment.
func (p privateKey) AuthorizedLine() string {
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(p.Public)))
}

// MustPrivateKeys returns a fresh key in every private format keysd
// accepts: OpenSSH (ed25519, ECDSA, RSA), PKCS#1, PKCS#8 (ed25519, ECDSA,
// RSA) and SEC1 ("EC PRIVATE KEY").
func MustPrivateKeys(tb testing.TB) []privateKey {
	tb.Helper()
	ed := MustKey(tb)
	ec256, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	ec384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	rs := MustRSA(tb, 2048)
	rs2 := MustRSA(tb, 2048)
	var out []privateKey
	add := func(format string, key crypto.Signer, block *pem.Block) {
		out = append(out, privateKey{Format: format, PEM: string(pem.EncodeToMemory(block)), Public: MustSSHPublic(tb, key)})
	}
	openssh := func(key crypto.Signer) *pem.Block {
		b, err := ssh.MarshalPrivateKey(key, "")
		if err != nil {
			tb.Fatal(err)
		}
		return b
	}
	pkcs8 := func(key crypto.Signer) *pem.Block {
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			tb.Fatal(err)
		}
		return &pem.Block{Type: "PRIVATE KEY", Bytes: der}
	}
	sec1, err := x509.MarshalECPrivateKey(ec384)
	if err != nil {
		tb.Fatal(err)
	}
	add("OpenSSH-ed25519", ed, openssh(ed))
	add("OpenSSH-ECDSA", ec256, openssh(ec256))
	add("OpenSSH-RSA", rs, openssh(rs))
	add("PKCS1-RSA", rs2, &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rs2)})
	ed2, ec2, rs3 := MustKey(tb), MustECDSA(tb), MustRSA(tb, 3072)
	add("PKCS8-ed25519", ed2, pkcs8(ed2))
	add("PKCS8-ECDSA", ec2, pkcs8(ec2))
	add("PKCS8-RSA", rs3, pkcs8(rs3))
	add("SEC1-EC", ec384, &pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1})
	return out
}

// MustRSA returns a fresh RSA key.
func MustRSA(tb testing.TB, bits int) *rsa.PrivateKey {
	tb.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// MustECDSA returns a fresh P-256 key.
func MustECDSA(tb testing.TB) *ecdsa.PrivateKey {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return k
}

// MustOpenSSHPEM is key as an unencrypted OpenSSH private key.
func MustOpenSSHPEM(tb testing.TB, key crypto.Signer) string {
	tb.Helper()
	b, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		tb.Fatal(err)
	}
	return string(pem.EncodeToMemory(b))
}

// publicOf parses an OpenSSH public key line.
func publicOf(tb testing.TB, line string) ssh.PublicKey {
	tb.Helper()
	pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
	if err != nil {
		tb.Fatalf("parse public key %q: %v", line, err)
	}
	return pub
}

// publicOfPEM returns the public half of a PEM private key.
func publicOfPEM(tb testing.TB, text string) ssh.PublicKey {
	tb.Helper()
	raw, err := ssh.ParseRawPrivateKey([]byte(text))
	if err != nil {
		tb.Fatalf("parse private key: %v", err)
	}
	var pub crypto.PublicKey
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		pub = k.Public()
	case crypto.Signer:
		pub = k.Public()
	default:
		tb.Fatalf("private key of type %T", raw)
	}
	p, err := ssh.NewPublicKey(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// eventsOf returns the events of type typ in evs.
func eventsOf(evs []bus.Recorded, typ string) []bus.Recorded {
	var out []bus.Recorded
	for _, e := range evs {
		if e.Event.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// mustJSON marshals v.
func mustJSON(tb testing.TB, v any) []byte {
	tb.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return data
}
