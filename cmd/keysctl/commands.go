package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
)

// parseCommand parses a subcommand's flags, which may follow its
// positional arguments ("account create bob --operator").
func parseCommand(fs *flag.FlagSet, args []string, positional int) ([]string, error) {
	var pos []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) > 0 {
			pos = append(pos, args[0])
			args = args[1:]
		}
	}
	if len(pos) != positional {
		return nil, fmt.Errorf("%s: want %d argument(s), got %d", fs.Name(), positional, len(pos))
	}
	return pos, nil
}

// commandFlags is the flag set of a command: asked for help, it prints
// the command's synopsis and flags.
func commandFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() { commandUsage(fs) }
	return fs
}

// commandUsage prints the synopsis of fs's command, from keysctl's usage,
// and its flags.
func commandUsage(fs *flag.FlagSet) {
	w := fs.Output()
	fmt.Fprintln(w, "Usage:")
	for _, line := range strings.Split(usage, "\n") {
		if strings.Contains(line+" ", " "+fs.Name()+" ") && strings.HasPrefix(strings.TrimSpace(line), "keysctl ") {
			fmt.Fprintln(w, line)
		}
	}
	fs.PrintDefaults()
}

// cmdAccountCreate creates an account, optionally an operator, optionally
// with its first key.
func cmdAccountCreate(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("account create")
	operator := fs.Bool("operator", false, "make the account an operator")
	keyFile := fs.String("key", "", "OpenSSH public key file: the account's first key")
	name := fs.String("name", "", "name of the first key (default: its comment)")
	expires := fs.String("expires", "", "when the first key expires by itself, an RFC 3339 time such as 2030-01-02T15:04:05Z (default: never)")
	pos, err := parseCommand(fs, args, 1)
	if err != nil {
		return err
	}
	body := map[string]any{"login": pos[0], "operator": *operator}
	if *keyFile != "" {
		if body["key"], err = readKeyFile(*keyFile); err != nil {
			return err
		}
		if *name != "" {
			body["name"] = *name
		}
		if *expires != "" {
			body["expires"] = *expires
		}
	} else if *name != "" || *expires != "" {
		return errors.New("--name and --expires need --key")
	}
	var out any
	if err := c.call(ctx, "POST", "/--admin/accounts", body, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// cmdAccountGet shows an account, its policy and its keys.
func cmdAccountGet(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	pos, err := parseCommand(commandFlags("account get"), args, 1)
	if err != nil {
		return err
	}
	var out any
	if err := c.call(ctx, "GET", "/--admin/accounts/"+url.PathEscape(pos[0]), nil, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// cmdAccountPolicy replaces an account's key policy; flags left out are
// off or default.
func cmdAccountPolicy(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("account policy")
	keys := fs.Bool("require-attested-keys", false, "new keys must carry a hardware attestation")
	signing := fs.Bool("require-attested-signing", false, "requests must be signed with an attested key")
	mfa := fs.Bool("require-multifactor-signing", false, "requests must be signed with an attested key that needs a PIN or touch")
	certs := fs.Bool("require-attested-certificates", false, "user certificates only for attested keys")
	var principals listFlag
	fs.Var(&principals, "certificate-principal", "a principal user certificates may name (repeat; default: the login alone)")
	maxValidity := fs.Duration("certificate-max-validity", 0, "the longest validity of a user certificate (default 1h, at most 168h)")
	pos, err := parseCommand(fs, args, 1)
	if err != nil {
		return err
	}
	body := map[string]any{"requireAttestedKeys": *keys, "requireAttestedSigning": *signing, "requireMultifactorSigning": *mfa,
		"requireAttestedCertificates": *certs, "certificatePrincipals": []string(principals), "certificateMaxValidity": int64(maxValidity.Seconds())}
	var out any
	if err := c.call(ctx, "PUT", "/--admin/accounts/"+url.PathEscape(pos[0])+"/policy", body, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// cmdKeyAdd adds a key to an account (an operator giving an account a key).
func cmdKeyAdd(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("key add")
	name := fs.String("name", "", "name of the key (default: its comment)")
	expires := fs.String("expires", "", "when the key expires by itself, an RFC 3339 time such as 2030-01-02T15:04:05Z (default: never)")
	pos, err := parseCommand(fs, args, 2)
	if err != nil {
		return err
	}
	key, err := readKeyFile(pos[1])
	if err != nil {
		return err
	}
	body := map[string]any{"key": key}
	if *name != "" {
		body["name"] = *name
	}
	if *expires != "" {
		body["expires"] = *expires
	}
	var out any
	if err := c.call(ctx, "POST", "/"+url.PathEscape(pos[0])+"/keys", body, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// cmdKeyList lists an account's keys.
func cmdKeyList(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("key list")
	pos, err := parseCommand(fs, args, 1)
	if err != nil {
		return err
	}
	var out any
	if err := c.call(ctx, "GET", "/"+url.PathEscape(pos[0])+"/keys", nil, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// cmdProjectionsRebuild rebuilds one projection, or all of them, from the
// event log.
func cmdProjectionsRebuild(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	fs := commandFlags("projections rebuild")
	if err := fs.Parse(args); err != nil {
		return err
	}
	names := fs.Args()
	if len(names) == 0 {
		if err := c.call(ctx, "GET", "/--admin/projections", nil, &names); err != nil {
			return err
		}
	}
	for _, n := range names {
		var out map[string]string
		if err := c.call(ctx, "POST", "/--admin/projections/"+url.PathEscape(n)+"/rebuild", nil, &out); err != nil {
			return fmt.Errorf("rebuild %s: %w", n, err)
		}
		fmt.Fprintf(stdout, "%s: %s\n", n, out["status"])
	}
	return nil
}
