package main

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/infrakeys/infrakeys/sealing"
)

// cmdTokenCreate issues an API token for the infrastructure keys API and
// prints it alone on stdout: it is shown this once, only its hash is
// stored.
func cmdTokenCreate(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("token create")
	roles := fs.String("roles", "", "comma-separated roles: keys:read, keys:manage, keys:private")
	pos, err := parseCommand(fs, args, 1)
	if err != nil {
		return err
	}
	var out struct {
		ID    string   `json:"id"`
		Roles []string `json:"roles"`
		Token string   `json:"token"`
	}
	body := map[string]any{"name": pos[0], "roles": splitRoles(*roles)}
	if err := c.call(ctx, "POST", "/--admin/tokens", body, &out); err != nil {
		return err
	}
	// The token alone on stdout, so that TOKEN=$(keysctl token create ...)
	// works; what it is, on stderr.
	fmt.Fprintf(stderr, "token %s (%s) for %s; it is shown only now, store it in a secret store:\n", out.ID, pos[0], strings.Join(out.Roles, ", "))
	fmt.Fprintln(stdout, out.Token)
	return nil
}

func splitRoles(s string) []string {
	out := []string{}
	for _, r := range strings.Split(s, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// cmdTokenList lists tokens (never their secrets).
func cmdTokenList(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	if _, err := parseCommand(commandFlags("token list"), args, 0); err != nil {
		return err
	}
	var out any
	if err := c.call(ctx, "GET", "/--admin/tokens", nil, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// cmdTokenRevoke revokes a token by id.
func cmdTokenRevoke(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	pos, err := parseCommand(commandFlags("token revoke"), args, 1)
	if err != nil {
		return err
	}
	if err := c.call(ctx, "DELETE", "/--admin/tokens/"+url.PathEscape(pos[0]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "token %s revoked\n", pos[0])
	return nil
}

// cmdMasterKeyRewrap re-wraps every data key under keysd's current master
// key (step 3 of a rotation, see docs/operations.md).
func cmdMasterKeyRewrap(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	if _, err := parseCommand(commandFlags("master-key rewrap"), args, 0); err != nil {
		return err
	}
	var out any
	if err := c.call(ctx, "POST", "/--admin/master-key/rewrap", nil, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// masterKeyGenerate writes a new master key file (mode 0600); it talks to
// no server.
func masterKeyGenerate(args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("master-key generate")
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	args = fs.Args()
	if len(args) != 1 {
		return fmt.Errorf("master-key generate: want the path of the new key file")
	}
	if _, err := os.Stat(args[0]); err == nil {
		return fmt.Errorf("master-key generate: %s exists; refusing to overwrite a master key", args[0])
	}
	m, created, err := sealing.LoadOrCreateMasterKeyFile(args[0])
	if err != nil {
		return err
	}
	if !created {
		return fmt.Errorf("master-key generate: %s appeared meanwhile; not overwritten", args[0])
	}
	fmt.Fprintf(stdout, "wrote %s (%s), mode 0600\n", args[0], m)
	return nil
}
