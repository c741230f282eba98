package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxAuthorizedKeys bounds the answer read: far more than an account's
// keys and its CA lines take, and little enough for a login to wait on.
const maxAuthorizedKeys = 1 << 20

// authorizedKeysCmd prints the authorized_keys of an account, as sshd's
// AuthorizedKeysCommand expects: the lines on stdout and exit status 0,
// or nothing on stdout, the reason on stderr and a non-zero status.
// sshd reads whatever reaches stdout as keys, even from a command that
// then fails, so the answer is checked whole (an OpenSSH key on every
// line) before a byte of it is written. It signs nothing: keysd serves
// public keys to anyone, and sshd's machine need hold no credential.
func authorizedKeysCmd(ctx context.Context, base string, args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("authorized-keys")
	fs.SetOutput(stderr)
	timeout := fs.Duration("timeout", 10*time.Second, "give up after this long (sshd waits for the command while the user waits for sshd)")
	pos, err := parseCommand(fs, args, 1)
	if err != nil {
		return err
	}
	if *timeout <= 0 {
		return fmt.Errorf("authorized-keys: --timeout must be positive, got %s", *timeout)
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/"+url.PathEscape(pos[0])+"/authorized_keys", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAuthorizedKeys+1))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("authorized-keys %s: %w", pos[0], responseError(resp, data))
	}
	if len(data) > maxAuthorizedKeys {
		return fmt.Errorf("authorized-keys %s: the answer is over %d bytes", pos[0], maxAuthorizedKeys)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/plain" {
		return fmt.Errorf("authorized-keys %s: the answer is %q, not text/plain: is %s keysd?", pos[0], resp.Header.Get("Content-Type"), base)
	}
	if err := checkAuthorizedKeys(data); err != nil {
		return fmt.Errorf("authorized-keys %s: %w", pos[0], err)
	}
	_, err = stdout.Write(data)
	return err
}

// checkAuthorizedKeys checks that every line of data is an OpenSSH
// authorized_keys line.
func checkAuthorizedKeys(data []byte) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, maxAuthorizedKeys)
	for n := 1; sc.Scan(); n++ {
		if _, _, _, _, err := ssh.ParseAuthorizedKey(sc.Bytes()); err != nil {
			return fmt.Errorf("line %d of the answer is not an authorized_keys line: %v", n, err)
		}
	}
	return sc.Err()
}
