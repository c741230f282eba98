package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
)

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }

func (l *listFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}

// cmdCACreate creates a key of the user or host CA; it signs from now on.
func cmdCACreate(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ca create", flag.ContinueOnError)
	typ := fs.String("type", "", "key type: ed25519 (default), ecdsa-p256, ecdsa-p384, rsa-3072, rsa-4096")
	pos, err := parseCommand(fs, args, 1)
	if err != nil {
		return err
	}
	body := map[string]any{}
	if *typ != "" {
		body["keyType"] = *typ
	}
	var out any
	if err := c.call(ctx, "POST", "/--admin/cas/"+url.PathEscape(pos[0]), body, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// cmdCAList lists the keys of both CAs, retired ones included.
func cmdCAList(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	if _, err := parseCommand(flag.NewFlagSet("ca list", flag.ContinueOnError), args, 0); err != nil {
		return err
	}
	var out any
	if err := c.call(ctx, "GET", "/--admin/cas", nil, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// cmdCARetire retires a CA key (by id or SHA256 fingerprint).
func cmdCARetire(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	pos, err := parseCommand(flag.NewFlagSet("ca retire", flag.ContinueOnError), args, 2)
	if err != nil {
		return err
	}
	var out any
	if err := c.call(ctx, "DELETE", "/--admin/cas/"+url.PathEscape(pos[0])+"/keys/"+url.PathEscape(pos[1]), nil, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// cmdCAPublic prints a CA's trusted public keys: a TrustedUserCAKeys file
// (user CA), or known_hosts lines with --known-hosts (host CA).
func cmdCAPublic(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("ca public", flag.ContinueOnError)
	known := fs.Bool("known-hosts", false, `print "@cert-authority * <key>" lines for known_hosts`)
	pos, err := parseCommand(fs, args, 1)
	if err != nil {
		return err
	}
	path := "/--cas/" + url.PathEscape(pos[0])
	if *known {
		path += "?format=known_hosts"
	}
	data, err := c.send(ctx, "GET", path, nil)
	if err != nil {
		return err
	}
	_, err = stdout.Write(data)
	return err
}

// certFlags are the flags of a certificate request.
type certFlags struct {
	principals, extensions listFlag
	noExtensions           *bool
	validity, forceCommand *string
	sourceAddress, out     *string
}

func newCertFlags(fs *flag.FlagSet, user bool) *certFlags {
	f := &certFlags{}
	fs.Var(&f.principals, "principal", "a principal (repeat for several); user default: all the policy allows")
	f.validity = fs.String("validity", "", `how long from now, e.g. "15m" (default: 1h for users, 30 days for hosts)`)
	f.out = fs.String("out", "", "write the certificate to this file (and print its details) instead of printing it")
	if user {
		fs.Var(&f.extensions, "extension", "a permit-* extension (repeat; default: all five)")
		f.noExtensions = fs.Bool("no-extensions", false, "no extensions at all")
		f.forceCommand = fs.String("force-command", "", "the force-command critical option")
		f.sourceAddress = fs.String("source-address", "", "the source-address critical option (addresses and CIDRs, comma-separated)")
	}
	return f
}

func (f *certFlags) body() (map[string]any, error) {
	body := map[string]any{}
	if len(f.principals) > 0 {
		body["principals"] = []string(f.principals)
	}
	if *f.validity != "" {
		body["validity"] = *f.validity
	}
	if f.noExtensions != nil {
		switch {
		case *f.noExtensions && len(f.extensions) > 0:
			return nil, errors.New("--no-extensions and --extension exclude each other")
		case *f.noExtensions:
			body["extensions"] = []string{}
		case len(f.extensions) > 0:
			body["extensions"] = []string(f.extensions)
		}
		if *f.forceCommand != "" {
			body["forceCommand"] = *f.forceCommand
		}
		if *f.sourceAddress != "" {
			body["sourceAddress"] = *f.sourceAddress
		}
	}
	return body, nil
}

// emit prints the certificate line, or writes it to --out and prints the
// certificate's details.
func (f *certFlags) emit(stdout io.Writer, cert map[string]any) error {
	line, _ := cert["certificate"].(string)
	if *f.out == "" {
		_, err := fmt.Fprintln(stdout, line)
		return err
	}
	if err := os.WriteFile(*f.out, []byte(line+"\n"), 0o644); err != nil {
		return err
	}
	delete(cert, "certificate")
	return printJSON(stdout, cert)
}

// cmdCertSign signs a user certificate for an account's key (the
// operator's own, or any account's).
func cmdCertSign(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	return signCert(ctx, c, "cert sign", true, args, stdout, func(owner, key string) string {
		return "/" + url.PathEscape(owner) + "/keys/" + url.PathEscape(key) + "/certificates"
	})
}

// cmdCertHost signs a host certificate for an instance's key.
func cmdCertHost(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	return signCert(ctx, c, "cert host", false, args, stdout, func(owner, key string) string {
		return "/api/resource-manager/infrastructure-keys/instances/" + url.PathEscape(owner) + "/keys/" + url.PathEscape(key) + "/certificate"
	})
}

// signCert runs a signing verb: its two arguments (the key's owner and
// name) give the path, its flags the request's body (user certificates
// take the user-only flags).
func signCert(ctx context.Context, c *client, name string, user bool, args []string, stdout io.Writer, path func(owner, key string) string) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	f := newCertFlags(fs, user)
	pos, err := parseCommand(fs, args, 2)
	if err != nil {
		return err
	}
	body, err := f.body()
	if err != nil {
		return err
	}
	var cert map[string]any
	if err := c.call(ctx, "POST", path(pos[0], pos[1]), body, &cert); err != nil {
		return err
	}
	return f.emit(stdout, cert)
}

// cmdCertList lists an account's certificates that have not expired.
func cmdCertList(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("cert list", flag.ContinueOnError)
	key := fs.String("key", "", "only the certificates of this key")
	pos, err := parseCommand(fs, args, 1)
	if err != nil {
		return err
	}
	path := "/" + url.PathEscape(pos[0]) + "/certificates"
	if *key != "" {
		path = "/" + url.PathEscape(pos[0]) + "/keys/" + url.PathEscape(*key) + "/certificates"
	}
	var out any
	if err := c.call(ctx, "GET", path, nil, &out); err != nil {
		return err
	}
	return printJSON(stdout, out)
}

// cmdCertRevoke revokes an account's certificate by serial.
func cmdCertRevoke(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error {
	pos, err := parseCommand(flag.NewFlagSet("cert revoke", flag.ContinueOnError), args, 2)
	if err != nil {
		return err
	}
	if err := c.call(ctx, "DELETE", "/"+url.PathEscape(pos[0])+"/certificates/"+url.PathEscape(pos[1]), nil, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "certificate %s revoked\n", pos[1])
	return nil
}
