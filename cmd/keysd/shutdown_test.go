package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/infrakeys/infrakeys/http/httpsig"
)

// TestSIGTERMFinishesInFlight sends SIGTERM to a keysd process while a
// CreateKey request is in its handler, its body only half sent: keysd must
// stop accepting connections, yet finish that request with a 201, exit
// cleanly, and have the key after a restart.
//
// The request says "Expect: 100-continue", so the client learns exactly
// when the handler starts reading the body: net/http answers 100 Continue
// then, not before.
func TestSIGTERMFinishesInFlight(t *testing.T) {
	env, adminKey := processEnv(t, t.TempDir())
	cmd, url := startProcess(t, env)
	signer := &httpsig.Signer{KeyID: httpsig.KeyIDFor("admin", MustSSHPublic(t, adminKey)), Key: adminKey}

	body, err := json.Marshal(map[string]string{"name": "inflight", "key": AuthorizedKey(t, MustKey(t), "")})
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	req, err := http.NewRequest(http.MethodPost, url+"/admin/keys", pr)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = int64(len(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Expect", "100-continue")
	if err := signer.Sign(req); err != nil {
		t.Fatal(err)
	}
	reading := make(chan struct{})
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		Got100Continue: func() { close(reading) },
	}))
	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		tr := &http.Transport{ExpectContinueTimeout: time.Minute}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		done <- result{status: resp.StatusCode, body: string(b), err: err}
	}()

	select {
	case <-reading:
	case r := <-done:
		t.Fatalf("request ended before its body was read: %+v", r)
	case <-time.After(30 * time.Second):
		t.Fatal("the handler never read the body")
	}
	half := len(body) / 2
	if _, err := pw.Write(body[:half]); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Shutdown has begun once the listener is closed.
	addr := strings.TrimPrefix(url, "http://")
	eventually(t, 30*time.Second, "keysd stops accepting connections", func() bool {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return true
		}
		c.Close()
		return false
	})
	if _, err := pw.Write(body[half:]); err != nil {
		t.Fatal(err)
	}
	pw.Close()

	r := <-done
	if r.err != nil || r.status != http.StatusCreated {
		t.Fatalf("in-flight request: %d %s %v, want 201", r.status, r.body, r.err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("keysd exit after SIGTERM: %v", err)
	}

	_, url = startProcess(t, env)
	admin := &client{base: url, login: "admin", signer: signer}
	got := admin.Do(t, "GET", "/admin/keys/inflight", nil)
	if got.StatusCode != http.StatusOK {
		t.Errorf("after restart: %d %s", got.StatusCode, got.Body)
	}
}
