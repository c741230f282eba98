package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/nats-io/nats.go"

	"github.com/infrakeys/infrakeys/bus"
)

// natsFlags are the connection flags of the verbs that speak NATS as one
// of keysd's roles (audit, driver, manager).
type natsFlags struct {
	url, nkey, creds string
}

const natsFlagsUsage = `  --nats-url URL     keysd's NATS (KEYSCTL_NATS_URL, default nats://127.0.0.1:4222)
  --nkey FILE        NKey seed of the role, <data-dir>/nats/<role>.nk (KEYSCTL_NATS_NKEY)
  --creds FILE       or a credentials file, on an external cluster (KEYSCTL_NATS_CREDS)
`

func (f *natsFlags) register(fs *flag.FlagSet, env *environ) {
	fs.StringVar(&f.url, "nats-url", env.or("KEYSCTL_NATS_URL", "nats://127.0.0.1:4222"), "")
	fs.StringVar(&f.nkey, "nkey", env.get("KEYSCTL_NATS_NKEY"), "")
	fs.StringVar(&f.creds, "creds", env.get("KEYSCTL_NATS_CREDS"), "")
}

// connect dials NATS as role, with the role's inbox prefix. The server
// refuses what a role may not do with an asynchronous error, and the
// request behind it would only time out: the returned context ends at
// once, with the refusal as its cause.
func (f *natsFlags) connect(ctx context.Context, role string, stderr io.Writer) (*nats.Conn, context.Context, context.CancelCauseFunc, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	opts := []nats.Option{
		nats.Name("keysctl-" + role),
		nats.CustomInboxPrefix(bus.InboxPrefix(role)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				cancel(fmt.Errorf("%w (does the credential belong to the %s role?)", err, role))
				return
			}
			fmt.Fprintln(stderr, "keysctl:", err)
		}),
	}
	fail := func(err error) (*nats.Conn, context.Context, context.CancelCauseFunc, error) {
		cancel(nil)
		return nil, nil, nil, err
	}
	switch {
	case f.nkey != "" && f.creds != "":
		return fail(errors.New("give --nkey or --creds, not both"))
	case f.nkey != "":
		o, err := nats.NkeyOptionFromSeed(f.nkey)
		if err != nil {
			return fail(fmt.Errorf("nkey: %w", err))
		}
		opts = append(opts, o)
	case f.creds != "":
		opts = append(opts, nats.UserCredentials(f.creds))
	}
	nc, err := nats.Connect(f.url, opts...)
	if errors.Is(err, nats.ErrAuthorization) {
		return fail(fmt.Errorf("connect to %s: %w: give the %s role's NKey seed with --nkey or KEYSCTL_NATS_NKEY (keysd writes it to <data-dir>/nats/%s.nk)", f.url, err, role, role))
	}
	if err != nil {
		return fail(fmt.Errorf("connect to %s: %w", f.url, err))
	}
	return nc, ctx, cancel, nil
}

// refused returns the reason ctx ended, if the server refused something
// (connect's cause), else err.
func refused(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return cause
	}
	return err
}
