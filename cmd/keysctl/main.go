// Command keysctl is the operator, audit, driver and resource manager CLI
// of infrakeys. It talks to keysd's API, signing each request with an
// operator's SSH key exactly as the triton CLI does, and to keysd's NATS
// with a role's NKey.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/infrakeys/infrakeys/bus"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return // help was asked for, and given
		}
		var status exitStatus
		if errors.As(err, &status) {
			os.Exit(int(status))
		}
		fmt.Fprintln(os.Stderr, "keysctl:", err)
		os.Exit(1)
	}
}

const usage = `keysctl: operate infrakeys

Usage:
  keysctl [connection flags] account create LOGIN [--operator] [--key FILE.pub] [--name NAME] [--expires RFC3339-TIME]
  keysctl [connection flags] account get LOGIN
  keysctl [connection flags] account policy LOGIN [--require-attested-keys] [--require-attested-signing] [--require-multifactor-signing]
                             [--require-attested-certificates] [--certificate-principal P]... [--certificate-max-validity 8h]
  keysctl [connection flags] key add LOGIN FILE.pub [--name NAME] [--expires RFC3339-TIME]
  keysctl [connection flags] key list LOGIN
  keysctl [connection flags] projections rebuild [NAME]
  keysctl [connection flags] token create NAME --roles keys:read,keys:manage,keys:private
  keysctl [connection flags] token list
  keysctl [connection flags] token revoke ID
  keysctl [connection flags] master-key rewrap
  keysctl [connection flags] ca create user|host [--type ed25519|ecdsa-p256|ecdsa-p384|rsa-3072|rsa-4096]
  keysctl [connection flags] ca list
  keysctl [connection flags] ca retire user|host ID
  keysctl [connection flags] ca public user|host [--known-hosts]
  keysctl [connection flags] cert sign LOGIN KEY [--principal P]... [--validity 15m] [--force-command CMD]
                             [--source-address CIDRS] [--extension E]... [--no-extensions] [--out FILE]
  keysctl [connection flags] cert host INSTANCE KEY --principal HOST... [--validity 720h] [--out FILE]
  keysctl [connection flags] cert list LOGIN [--key KEY]
  keysctl [connection flags] cert revoke LOGIN SERIAL
  keysctl master-key generate FILE
  keysctl [--url URL] authorized-keys LOGIN [--timeout 10s]   (no account: for sshd's AuthorizedKeysCommand)
  keysctl [--url URL] krl fetch FILE    (no account needed; exit status 0: FILE changed, 3: it was current)

Over NATS, with a role's NKey (see keysctl events --help, keysctl driver --help):
  keysctl events [--from-seq N | --since T] [--type T] [--owner K/ID] [--key K] [--follow]
  keysctl events stats                                  (audit role)
  keysctl driver publish-key INSTANCE --name NAME [--public-key FILE] [--private-key FILE]
  keysctl driver remove-instance INSTANCE
  keysctl driver outcome INSTANCE (--msg-id ID | --seq N)
  keysctl manager remove-instance INSTANCE
  keysctl manager outcome INSTANCE (--msg-id ID | --seq N)

Connection flags (and environment), for the HTTP API:
  --url URL          keysd's address (KEYSCTL_URL, default http://127.0.0.1:8080)
  --account LOGIN    the operator account to sign as (KEYSCTL_ACCOUNT)
  --key-file FILE    its private SSH key, unencrypted (KEYSCTL_KEY_FILE, default ~/.ssh/id_ed25519)

keysctl <command> --help describes a command. keysctl's variables are its
own (KEYSCTL_*); the former KEYSD_URL, KEYSD_ACCOUNT, KEYSD_KEY_FILE and
KEYSD_NATS_NKEY still work, with a warning.
`

// command is one keysctl subcommand.
type command func(ctx context.Context, c *client, args []string, stdout, stderr io.Writer) error

var commands = map[string]command{
	"account create":      cmdAccountCreate,
	"account get":         cmdAccountGet,
	"account policy":      cmdAccountPolicy,
	"key add":             cmdKeyAdd,
	"key list":            cmdKeyList,
	"projections rebuild": cmdProjectionsRebuild,
	"token create":        cmdTokenCreate,
	"token list":          cmdTokenList,
	"token revoke":        cmdTokenRevoke,
	"master-key rewrap":   cmdMasterKeyRewrap,
	"ca create":           cmdCACreate,
	"ca list":             cmdCAList,
	"ca retire":           cmdCARetire,
	"ca public":           cmdCAPublic,
	"cert sign":           cmdCertSign,
	"cert host":           cmdCertHost,
	"cert list":           cmdCertList,
	"cert revoke":         cmdCertRevoke,
}

// run parses the connection flags, then dispatches to a subcommand.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("keysctl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	env := newEnviron(getenv, stderr)
	home := getenv("HOME")
	url := fs.String("url", env.or("KEYSCTL_URL", "http://127.0.0.1:8080"), "")
	account := fs.String("account", env.get("KEYSCTL_ACCOUNT"), "")
	keyFile := fs.String("key-file", env.or("KEYSCTL_KEY_FILE", home+"/.ssh/id_ed25519"), "")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rest := fs.Args()
	if len(rest) >= 1 {
		switch rest[0] {
		case "help":
			fs.Usage()
			return flag.ErrHelp
		case "authorized-keys":
			// Unsigned: sshd runs it with no credentials at hand.
			return authorizedKeysCmd(ctx, *url, rest[1:], stdout, stderr)
		case "events":
			return eventsCmd(ctx, rest[1:], env, stdout, stderr)
		case "driver":
			return intakeCmd(ctx, bus.RoleDriver, rest[1:], env, stdout, stderr)
		case "manager":
			return intakeCmd(ctx, bus.RoleManager, rest[1:], env, stdout, stderr)
		case "krl":
			return krlCmd(ctx, *url, rest[1:], stdout, stderr)
		}
	}
	if len(rest) >= 2 && rest[0] == "master-key" && rest[1] == "generate" {
		return masterKeyGenerate(rest[2:], stdout, stderr)
	}
	if len(rest) < 2 {
		fs.Usage()
		return errors.New("missing command")
	}
	cmd, ok := commands[rest[0]+" "+rest[1]]
	if !ok {
		fs.Usage()
		return fmt.Errorf("unknown command %q", rest[0]+" "+rest[1])
	}
	if slices.ContainsFunc(rest[2:], isHelp) {
		// Every command parses its flags before it calls keysd: asked for
		// help, it answers ErrHelp with no client, nor account, needed.
		return cmd(ctx, nil, []string{"-h"}, stdout, stderr)
	}
	if *account == "" {
		return errors.New("no account to sign as: set --account or KEYSCTL_ACCOUNT")
	}
	c, err := newClient(*url, *account, *keyFile)
	if err != nil {
		return err
	}
	return cmd(ctx, c, rest[2:], stdout, stderr)
}
