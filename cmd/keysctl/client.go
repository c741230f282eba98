package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/infrakeys/infrakeys/http/httpsig"
)

// client calls keysd's API as one account.
type client struct {
	base   string
	signer *httpsig.Signer
	http   *http.Client
	// signedAs says who signs, for a 401: keysd's answer does not say
	// which part of a signature it refused (on purpose: it tells an
	// attacker nothing), but the one who signed may know.
	signedAs string
}

func newClient(base, account, keyFile string) (*client, error) {
	s, err := httpsig.NewSignerFromFile("", keyFile)
	if err != nil {
		return nil, err
	}
	pub, err := ssh.NewPublicKey(s.Key.Public())
	if err != nil {
		return nil, err
	}
	s.KeyID = httpsig.KeyIDFor(account, pub)
	signedAs := fmt.Sprintf("signed as account %q with the key %s (%s) from %s", account, ssh.FingerprintSHA256(pub), ssh.FingerprintLegacyMD5(pub), keyFile)
	return &client{base: strings.TrimRight(base, "/"), signer: s, http: &http.Client{Timeout: 5 * time.Minute}, signedAs: signedAs}, nil
}

// apiError is an error answered by keysd, in CloudAPI's format.
type apiError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	// Hint is keysctl's own explanation, added to keysd's message.
	Hint string `json:"-"`
}

func (e *apiError) Error() string {
	msg := fmt.Sprintf("%s (%d): %s", e.Code, e.Status, e.Message)
	if e.Hint != "" {
		msg += "\n" + e.Hint
	}
	return msg
}

// call sends a signed request with body (nil or a JSON value) and decodes
// a JSON answer into out (if not nil).
func (c *client) call(ctx context.Context, method, path string, body, out any) error {
	data, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	if out != nil && len(data) > 0 {
		return json.Unmarshal(data, out)
	}
	return nil
}

// send sends a signed request with body (nil or a JSON value) and returns
// the answer's body; an error status is an *apiError.
func (c *client) send(ctx context.Context, method, path string, body any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if err := c.signer.Sign(req); err != nil {
		return nil, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		e := responseError(resp, data)
		if resp.StatusCode == http.StatusUnauthorized {
			e.Hint = "keysctl " + c.signedAs + ": is the account right (--account, KEYSCTL_ACCOUNT), and is this key one of its keys (--key-file, KEYSCTL_KEY_FILE)?"
		}
		return nil, e
	}
	return data, nil
}

// responseError reads keysd's error answer, in either surface's format.
func responseError(resp *http.Response, data []byte) *apiError {
	e := &apiError{Status: resp.StatusCode}
	var lm struct {
		LocalizedMessage string `json:"localizedMessage"`
	}
	switch {
	case json.Unmarshal(data, e) == nil && e.Code != "":
	case json.Unmarshal(data, &lm) == nil && lm.LocalizedMessage != "":
		// The Lifecycle Manager surface's error body.
		e.Code, e.Message = http.StatusText(resp.StatusCode), lm.LocalizedMessage
	default:
		e.Code, e.Message = resp.Status, strings.TrimSpace(string(data))
	}
	return e
}

// readKeyFile reads an OpenSSH public key file.
func readKeyFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(data)), nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
