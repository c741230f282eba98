package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/http/httpsig"
	"github.com/infrakeys/infrakeys/internal/testkit"
)

// keysd is a keysd started by run() in this process, on a free port, with
// an embedded NATS server in a temporary data directory.
type keysd struct {
	URL     string
	DataDir string
	Env     map[string]string
	Admin   *client
	cancel  context.CancelFunc
	done    chan error
	stderr  *syncBuffer
}

// syncBuffer is a bytes.Buffer safe for the server's log writes.
type syncBuffer = testkit.LockedBuffer

// MustStart starts keysd with an operator account "admin" bootstrapped
// from a fresh ed25519 key. env adds or overrides environment variables.
func MustStart(tb testing.TB, env map[string]string) *keysd {
	tb.Helper()
	dir := tb.TempDir()
	adminKey := MustKey(tb)
	pubPath := filepath.Join(dir, "admin.pub")
	if err := os.WriteFile(pubPath, ssh.MarshalAuthorizedKey(MustSSHPublic(tb, adminKey)), 0o600); err != nil {
		tb.Fatal(err)
	}
	full := map[string]string{
		"KEYSD_DATA_DIR":          filepath.Join(dir, "data"),
		"KEYSD_BOOTSTRAP_ACCOUNT": "admin",
		"KEYSD_BOOTSTRAP_KEY":     pubPath,
		"KEYSD_LOG_LEVEL":         "debug",
	}
	for k, v := range env {
		full[k] = v
	}
	k := &keysd{DataDir: full["KEYSD_DATA_DIR"], Env: full}
	k.start(tb)
	k.Admin = k.Client(tb, "admin", adminKey)
	tb.Cleanup(func() { k.Stop(tb) })
	return k
}

// start runs keysd on a free port and waits for /healthz.
func (k *keysd) start(tb testing.TB) {
	tb.Helper()
	k.Env["KEYSD_HTTP_ADDR"] = freeAddr(tb)
	k.URL = "http://" + k.Env["KEYSD_HTTP_ADDR"]
	ctx, cancel := context.WithCancel(context.Background())
	k.cancel = cancel
	k.done = make(chan error, 1)
	k.stderr = &syncBuffer{}
	env := k.Env
	go func() { k.done <- run(ctx, nil, func(n string) string { return env[n] }, io.Discard, k.stderr) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-k.done:
			k.cancel = nil
			tb.Fatalf("keysd exited: %v\n%s", err, k.stderr)
		default:
		}
		resp, err := http.Get(k.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("keysd not healthy after 30s\n%s", k.stderr)
}

// Stop shuts keysd down gracefully and checks it exited cleanly.
func (k *keysd) Stop(tb testing.TB) {
	tb.Helper()
	if k.cancel == nil {
		return
	}
	// A connection the client dialed but never used counts as busy for
	// five seconds in http.Server.Shutdown; close those first.
	http.DefaultClient.CloseIdleConnections()
	k.cancel()
	k.cancel = nil
	select {
	case err := <-k.done:
		if err != nil {
			tb.Errorf("keysd exited with %v", err)
		}
	case <-time.After(60 * time.Second):
		tb.Fatalf("keysd did not stop within 60s")
	}
}

// Restart stops keysd and starts it again on the same data directory.
func (k *keysd) Restart(tb testing.TB) {
	tb.Helper()
	k.Stop(tb)
	k.start(tb)
	for _, c := range []*client{k.Admin} {
		c.base = k.URL
	}
}

func freeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// MustKey returns a fresh ed25519 private key.
func MustKey(tb testing.TB) crypto.Signer {
	tb.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return priv
}

// processEnv is the environment of a keysd process with a data directory
// of its own under dir and the operator account "admin", bootstrapped with
// the returned key.
func processEnv(tb testing.TB, dir string) (map[string]string, crypto.Signer) {
	tb.Helper()
	adminKey := MustKey(tb)
	pubPath := filepath.Join(dir, "admin.pub")
	if err := os.WriteFile(pubPath, ssh.MarshalAuthorizedKey(MustSSHPublic(tb, adminKey)), 0o600); err != nil {
		tb.Fatal(err)
	}
	return map[string]string{
		"KEYSD_DATA_DIR":          filepath.Join(dir, "data"),
		"KEYSD_BOOTSTRAP_ACCOUNT": "admin",
		"KEYSD_BOOTSTRAP_KEY":     pubPath,
	}, adminKey
}

// MustSSHPublic returns the SSH public key of priv.
func MustSSHPublic(tb testing.TB, priv crypto.Signer) ssh.PublicKey {
	tb.Helper()
	pub, err := ssh.NewPublicKey(priv.Public())
	if err != nil {
		tb.Fatal(err)
	}
	return pub
}

// AuthorizedKey is priv's public key as an OpenSSH line with comment.
func AuthorizedKey(tb testing.TB, priv crypto.Signer, comment string) string {
	tb.Helper()
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(MustSSHPublic(tb, priv))))
	if comment != "" {
		line += " " + comment
	}
	return line
}

// client signs requests as one account's key, or sends an API token.
type client struct {
	k      *keysd
	base   string
	login  string
	signer *httpsig.Signer
	token  string
}

// Client returns a client signing as login with priv.
func (k *keysd) Client(tb testing.TB, login string, priv crypto.Signer) *client {
	tb.Helper()
	return &client{k: k, base: k.URL, login: login, signer: &httpsig.Signer{
		KeyID: httpsig.KeyIDFor(login, MustSSHPublic(tb, priv)),
		Key:   priv,
	}}
}

// response is a finished HTTP exchange.
type response struct {
	*http.Response
	Body []byte
}

// JSON decodes the body into v.
func (r *response) JSON(tb testing.TB, v any) {
	tb.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		tb.Fatalf("decode %s: %v", r.Body, err)
	}
}

// ErrorBody decodes a CloudAPI error body.
func (r *response) ErrorBody(tb testing.TB) (code, message string) {
	tb.Helper()
	var e struct{ Code, Message string }
	r.JSON(tb, &e)
	return e.Code, e.Message
}

// Do sends a signed request, or one with the client's token (body: nil,
// string or any JSON value), checks the response against the OpenAPI
// document and the headers every CloudAPI response carries, and returns it.
func (c *client) Do(tb testing.TB, method, path string, body any) *response {
	tb.Helper()
	return c.send(tb, newRequest(tb, method, c.base+path, body))
}

// send adds the client's credentials to req and sends it.
func (c *client) send(tb testing.TB, req *http.Request) *response {
	tb.Helper()
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	if c.signer != nil {
		if err := c.signer.Sign(req); err != nil {
			tb.Fatal(err)
		}
	}
	return send(tb, req)
}

func newRequest(tb testing.TB, method, url string, body any) *http.Request {
	tb.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			tb.Fatal(err)
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		tb.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	return req
}

// send performs req and checks the response against the OpenAPI document
// and CloudAPI's header rules.
func send(tb testing.TB, req *http.Request) *response {
	tb.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	r := &response{Response: resp, Body: body}
	checkHeaders(tb, req, r)
	checkOpenAPI(tb, req, r)
	return r
}

// checkHeaders asserts the headers CloudAPI sends on every response
// (docs/api.md, "Headers").
func checkHeaders(tb testing.TB, req *http.Request, r *response) {
	tb.Helper()
	for _, h := range []string{"Date", "Api-Version", "Request-Id", "Response-Time", "Server"} {
		if r.Header.Get(h) == "" {
			tb.Errorf("%s %s: response lacks %s", req.Method, req.URL.Path, h)
		}
	}
	if len(r.Body) > 0 || (req.Method == http.MethodHead && r.Header.Get("Content-Length") != "" && r.Header.Get("Content-Length") != "0") {
		for _, h := range []string{"Content-Type", "Content-Length", "Content-MD5"} {
			if r.Header.Get(h) == "" {
				tb.Errorf("%s %s: response with a body lacks %s", req.Method, req.URL.Path, h)
			}
		}
	}
	if len(r.Body) > 0 {
		if got, want := r.Header.Get("Content-MD5"), contentMD5(r.Body); got != want {
			tb.Errorf("%s %s: Content-MD5 = %q, want %q", req.Method, req.URL.Path, got, want)
		}
		if got, want := r.Header.Get("Content-Length"), fmt.Sprint(len(r.Body)); got != want {
			tb.Errorf("%s %s: Content-Length = %q, want %q", req.Method, req.URL.Path, got, want)
		}
	}
}

var (
	specOnce   sync.Once
	specRouter routers.Router
	specErr    error
)

// checkOpenAPI validates the response against http/openapi.yaml, the
// document keysd serves.
func checkOpenAPI(tb testing.TB, req *http.Request, r *response) {
	tb.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		var doc *openapi3.T
		doc, specErr = loader.LoadFromFile("../../http/openapi.yaml")
		if specErr != nil {
			return
		}
		if specErr = doc.Validate(context.Background()); specErr != nil {
			return
		}
		doc.Servers = nil
		specRouter, specErr = gorillamux.NewRouter(doc)
	})
	if specErr != nil {
		tb.Fatalf("openapi document: %v", specErr)
	}
	route, params, err := specRouter.FindRoute(req)
	if err != nil {
		if r.StatusCode == http.StatusNotFound || r.StatusCode == http.StatusMethodNotAllowed {
			return // routes the document does not describe
		}
		tb.Errorf("%s %s: not in the OpenAPI document: %v", req.Method, req.URL.Path, err)
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req, PathParams: params, Route: route,
			Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc},
		},
		Status: r.StatusCode,
		Header: r.Header,
		Body:   io.NopCloser(bytes.NewReader(r.Body)),
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil && !errors.Is(err, io.EOF) {
		tb.Errorf("%s %s: response does not match the OpenAPI document: %v", req.Method, req.URL.Path, err)
	}
}

func contentMD5(b []byte) string {
	sum := md5.Sum(b)
	return base64.StdEncoding.EncodeToString(sum[:])
}
